# syntax=docker/dockerfile:1
# One image for every Headwater process. The command is chosen per container:
#   API:     uvicorn --factory services.<name>.app:create_app --host 0.0.0.0 --port 80xx
#   worker:  arq services.<name>.worker.WorkerSettings
#   one-shots: headwater migrate | headwater bootstrap

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: resolve and install the project into a virtualenv (compilers only live here) ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/headwater
ENV PATH=/opt/headwater/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY shared ./shared
COPY services ./services
COPY headwater ./headwater
RUN pip install --upgrade pip && pip install .

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
