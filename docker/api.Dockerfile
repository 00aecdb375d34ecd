# syntax=docker/dockerfile:1.7
# PoseAnimate API image: the FastAPI gateway (`poseanimate serve`) and, with another command, the
# torch-free webhook worker (`poseanimate worker --queues io`). The base package only: no torch,
# no diffusers (tests/deploy checks that neither this file nor the base dependencies bring torch
# in). The engine's source is copied for its torch-free leaves (pose format, input rules, model
# names), which the API uses to refuse bad jobs with exactly the engine's rules.
#
#   docker build -f docker/api.Dockerfile -t poseanimate-api .
#   docker run -p 8000:8000 -e POSEANIMATE_REDIS_URL=... poseanimate-api

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a self-contained virtualenv with the base package ---------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api ./api
COPY jobs ./jobs
COPY worker ./worker
COPY engine ./engine
COPY cli ./cli
COPY launch ./launch
COPY poseanimate_client ./poseanimate_client
# Base dependencies only (`.`, not `.[engine]`): no torch.
RUN pip install --upgrade "pip>=24" \
 && pip install . \
 && ! pip show torch >/dev/null 2>&1

# --- runtime -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# tini: PID 1 that forwards SIGTERM (graceful shutdown) and reaps children.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app
COPY --from=build /opt/venv /opt/venv
WORKDIR /home/app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["tini", "--", "poseanimate"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
