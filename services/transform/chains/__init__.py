"""Task chains (after Datanectar): dependency-based, idempotent tasks whose targets live in S3.

Chains live in ``services/transform/chains/<type>/<name>_chain.py``; their task classes end with ``Task``. A task's
target is ``chains/<type>/<chain>/<Task>/<md5 of canonical params>/`` (``out.*``, ``log.txt``, ``params.json``) in
the chains bucket; a task whose ``out.*`` exists is complete and is never run again, so a failed chain resumes at
the failed task.
"""
