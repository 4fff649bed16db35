"""Statically find the AWS client calls a service's code can make and the IAM actions they need.

A service's code is services/<name>/** plus every shared/ module it imports (transitively): the shared
helpers (queues, kinesis, health checks) call AWS on the service's behalf. `bootstrap` is the one-shot
setup job (headwater/setup_steps.py and shared/bootstrap.py).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# boto3 client method -> the IAM actions it needs (paginators map through their operation name).
ACTIONS: dict[str, tuple[str, ...]] = {
    "put_object": ("s3:PutObject",),
    "upload_fileobj": ("s3:PutObject",),
    "upload_file": ("s3:PutObject",),
    "copy": ("s3:GetObject", "s3:PutObject"),
    "generate_presigned_url": ("s3:GetObject",),  # the URL acts with the signer's permissions
    "get_object": ("s3:GetObject",),
    "head_object": ("s3:GetObject",),
    "copy_object": ("s3:GetObject", "s3:PutObject"),
    "delete_object": ("s3:DeleteObject",),
    "delete_objects": ("s3:DeleteObject",),
    "list_objects_v2": ("s3:ListBucket",),
    "head_bucket": ("s3:ListBucket",),
    "create_bucket": ("s3:CreateBucket",),
    "put_bucket_notification_configuration": ("s3:PutBucketNotification",),
    "send_message": ("sqs:SendMessage",),
    "receive_message": ("sqs:ReceiveMessage",),
    "delete_message": ("sqs:DeleteMessage",),
    "change_message_visibility": ("sqs:ChangeMessageVisibility",),
    "get_queue_url": ("sqs:GetQueueUrl",),
    "get_queue_attributes": ("sqs:GetQueueAttributes",),
    "create_queue": ("sqs:CreateQueue",),
    "set_queue_attributes": ("sqs:SetQueueAttributes",),
    "put_records": ("kinesis:PutRecords",),
    "put_record": ("kinesis:PutRecord",),
    "get_records": ("kinesis:GetRecords",),
    "get_shard_iterator": ("kinesis:GetShardIterator",),
    "list_shards": ("kinesis:ListShards",),
    "describe_stream_summary": ("kinesis:DescribeStreamSummary",),
    "create_stream": ("kinesis:CreateStream",),
    "put_metric_data": ("cloudwatch:PutMetricData",),
    "batch_write_item": ("dynamodb:BatchWriteItem",),
    "query": ("dynamodb:Query",),
    "create_table": ("dynamodb:CreateTable",),
    "describe_table": ("dynamodb:DescribeTable",),
    "add_job_flow_steps": ("elasticmapreduce:AddJobFlowSteps",),
    "run_job_flow": ("elasticmapreduce:RunJobFlow", "iam:PassRole"),
    "list_steps": ("elasticmapreduce:ListSteps",),
    "describe_step": ("elasticmapreduce:DescribeStep",),
    "get_job": ("glue:GetJob",),
    "update_job": ("glue:UpdateJob", "iam:PassRole"),
    "create_job": ("glue:CreateJob", "iam:PassRole"),
    "start_job_run": ("glue:StartJobRun",),
    "get_job_run": ("glue:GetJobRun",),
    "get_log_events": ("logs:GetLogEvents",),
    "send_email": ("ses:SendEmail",),
    "verify_email_identity": ("ses:VerifyEmailIdentity",),
    "send_raw_email": ("ses:SendRawEmail",),
    "put_record_batch": ("firehose:PutRecordBatch",),
    "create_delivery_stream": ("firehose:CreateDeliveryStream", "iam:PassRole"),
    "describe_delivery_stream": ("firehose:DescribeDeliveryStream",),
    "get_database": ("glue:GetDatabase",),
    "create_database": ("glue:CreateDatabase",),
    "get_table": ("glue:GetTable",),
    "update_table": ("glue:UpdateTable",),
    "create_partition": ("glue:CreatePartition",),
    "update_partition": ("glue:UpdatePartition",),
    # Athena acts with the caller's permissions: the catalog it reads, the result objects it writes and reads.
    "start_query_execution": (
        "athena:StartQueryExecution",
        "glue:GetDatabase",
        "glue:GetTable",
        "glue:GetPartitions",
        "s3:GetBucketLocation",
        "s3:PutObject",
    ),
    "get_query_execution": ("athena:GetQueryExecution",),
    "get_query_results": ("athena:GetQueryResults", "s3:GetObject"),
    "stop_query_execution": ("athena:StopQueryExecution",),
    "create_work_group": ("athena:CreateWorkGroup",),
    "put_dashboard": ("cloudwatch:PutDashboard",),
}
# Methods whose name two services share: the receiver tells which (glue.create_table is not DynamoDB's).
RECEIVER_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("glue", "create_table"): ("glue:CreateTable",),
}
# Receivers that name an AWS client in this code base: every method called on one must be in ACTIONS.
CLIENT_NAMES = {
    "s3",
    "sqs",
    "kinesis",
    "cloudwatch",
    "_cloudwatch",
    "dynamodb",
    "emr",
    "glue",
    "athena",
    "logs",
    "ses",
    "firehose",
}
# Methods called on a variable named like a client that are not AWS calls (a dict named s3 in an S3 event).
NOT_AWS = {"get_paginator", "paginate", "get"}
SERVICES = ("ingest", "transform", "loader", "replay", "poller")


def _module_file(module: str) -> Path | None:
    path = ROOT / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _shared_imports(file: Path) -> set[Path]:
    found: set[Path] = set()
    for node in ast.walk(ast.parse(file.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] == "shared" and (target := _module_file(name)):
                found.add(target)
    return found


def code_files(service: str) -> set[Path]:
    """Return the service's own files plus the shared modules they reach through imports."""
    if service == "bootstrap":
        todo = {ROOT / "headwater/setup_steps.py", ROOT / "shared/bootstrap.py"}
    else:
        todo = {p for p in (ROOT / "services" / service).rglob("*.py")}
    seen: set[Path] = set()
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        todo |= {f for f in _shared_imports(file) if f not in seen}
    return seen


def client_calls(files: set[Path]) -> tuple[set[str], set[str]]:
    """Return (mapped AWS method names called, unmapped methods called on an AWS client variable)."""
    methods: set[str] = set()
    unknown: set[str] = set()
    for file in files:
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = node.func.attr
            receiver = node.func.value
            receiver_name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", None)
            if name == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                methods.add(node.args[0].value)
            elif (receiver_name, name) in RECEIVER_ACTIONS:
                methods.add(f"{receiver_name}.{name}")
            elif name in ACTIONS and receiver_name in CLIENT_NAMES:
                methods.add(name)
            elif receiver_name in CLIENT_NAMES and name not in NOT_AWS:
                unknown.add(f"{file.relative_to(ROOT)}:{receiver_name}.{name}")
    # Calls made through a wrapper whose receiver is not a client variable (e.g. self.aws.put_records).
    for file in files:
        for match in re.finditer(r"\.(put_records|put_metric_data|get_records)\(", file.read_text()):
            methods.add(match.group(1))
    return methods, unknown


def required_actions(service: str) -> dict[str, str]:
    """Return each IAM action the service's code needs, with one method that needs it."""
    methods, _ = client_calls(code_files(service))
    return {action: method for method in sorted(methods) for action in _actions(method)}


def _actions(method: str) -> tuple[str, ...]:
    receiver, _, name = method.rpartition(".")
    return RECEIVER_ACTIONS.get((receiver, name), ()) if receiver else ACTIONS.get(method, ())
