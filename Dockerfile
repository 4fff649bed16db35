# One image for every Headwater process. The command is chosen per container:
#   API:     uvicorn --factory services.<name>.app:create_app --host 0.0.0.0 --port 80xx
#   worker:  arq services.<name>.worker.WorkerSettings   (liveness: headwater worker-alive <name>)
#   one-shots: headwater migrate | headwater bootstrap
# No `# syntax=` line: the classic builder works offline (BuildKit would pull a frontend image first).
# Build: docker build --build-arg VERSION=$(...) --build-arg REVISION=$(git rev-parse HEAD) -t headwater:local .
# PYTHON_IMAGE is any Debian-like image with python3 + venv (python:3.11-slim, or the debootstrap base that
# tests/deploy builds offline).

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the locked dependencies first (a code change does not re-resolve them), then the project itself ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# binutils only for `strip` below; this stage is thrown away, so the runtime image carries no toolchain.
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/headwater
ENV PATH=/opt/headwater/bin:$PATH
WORKDIR /src
COPY requirements.lock ./
# Wheels only, every file checked against the lock's hashes: no compiler in the image, nothing unpinned.
RUN pip install --no-deps --require-hashes --only-binary=:all: -r requirements.lock \
    && site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
    # pyarrow parts Headwater never loads: Flight RPC, the S3/GCS/Azure/HDFS filesystems (pyarrow.fs imports each
    # only if present; Headwater reaches S3 through boto3), C++ headers, Cython sources and its tests.
    # pyarrow.lib links libarrow_substrait, so that stays.
    && rm -rf "$site"/pyarrow/include "$site"/pyarrow/tests "$site"/pyarrow/src \
       "$site"/pyarrow/libarrow_flight.so* "$site"/pyarrow/_flight*.so "$site"/pyarrow/flight.py \
       "$site"/pyarrow/libarrow_python_flight.so* "$site"/pyarrow/_pyarrow_cpp_tests*.so \
       "$site"/pyarrow/_s3fs*.so "$site"/pyarrow/libarrow_s3.so* "$site"/pyarrow/_gcsfs*.so \
       "$site"/pyarrow/_azurefs*.so "$site"/pyarrow/_hdfs*.so \
    # The wheel carries libarrow_python.so three times (no symlinks in a zip): keep one file, link the others.
    && for full in "$site"/pyarrow/lib*.so.*.*.*; do \
         soname=$(basename "${full%.*.*}"); ln -sf "$soname" "$full"; ln -sf "$soname" "${full%%.so.*}.so"; \
       done \
    && find "$site"/pyarrow \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \) -delete \
    # botocore's models of the AWS services Headwater calls (shared/aws.py and the services), not all ~400.
    && keep=" s3 sqs kinesis firehose dynamodb cloudwatch logs events glue emr ses sesv2 athena redshift \
redshift-data sts sso sso-oidc " \
    && for dir in "$site"/botocore/data/*/; do \
         name=$(basename "$dir"); case "$keep" in *" $name "*) ;; *) rm -rf "$dir" ;; esac; \
       done \
    # Wheels ship their extension modules with symbols (uvloop alone 13 MB of 14); stripped: about 70 MB less.
    && find /opt/headwater -name '*.so*' -type f -exec strip --strip-unneeded {} +
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY headwater ./headwater
# The project alone (its dependencies are all in place); pip and setuptools are not needed at run time.
RUN pip install --no-deps . \
    && pip uninstall --yes --quiet setuptools pip

# --- runtime: the virtualenv, a non-root user, nothing else ---
FROM ${PYTHON_IMAGE} AS runtime
ARG HEADWATER_UID=10001
ENV PATH=/opt/headwater/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEADWATER_DATA_DIR=/var/lib/headwater \
    HEADWATER_LOG_JSON=true
RUN groupadd --system --gid ${HEADWATER_UID} headwater \
    && useradd --system --uid ${HEADWATER_UID} --gid headwater --home-dir /var/lib/headwater \
       --no-create-home --shell /usr/sbin/nologin headwater \
    && install -d -o headwater -g headwater -m 0750 /var/lib/headwater
COPY --from=build /opt/headwater /opt/headwater
WORKDIR /var/lib/headwater
USER ${HEADWATER_UID}:${HEADWATER_UID}
EXPOSE 8001 8002 8003 8004 8005
CMD ["headwater", "--help"]
# Last, so that a new revision re-labels the image without invalidating the layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="headwater" \
      org.opencontainers.image.description="Headwater: an async, event-driven data pipeline mesh" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
