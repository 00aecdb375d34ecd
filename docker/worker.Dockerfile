# syntax=docker/dockerfile:1.7
# PoseAnimate GPU worker image: `poseanimate worker` with the engine (torch CUDA build, diffusers)
# and the offline pose detector (`engine,detect` extras). One container per GPU.
#
#   docker build -f docker/worker.Dockerfile -t poseanimate-worker .
#   docker run --gpus '"device=0"' -v poseanimate-models:/models -e POSEANIMATE_REDIS_URL=... poseanimate-worker
#
# Pins: the CUDA base and torch are build arguments with tested-together defaults. PyPI's Linux
# x86_64 torch wheel is the CUDA build and carries its own CUDA libraries; the base image brings
# the NVIDIA container settings and the driver check. For another CUDA line, e.g. 12.8:
#   --build-arg CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 \
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04

# --- build: the virtualenv with torch (CUDA) + the package and its engine extras ---------------
FROM ${CUDA_IMAGE} AS build
ARG TORCH_INDEX_URL=
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
# The torch pin is defined once, in pyproject.toml's `engine` extra; install that exact version from
# the CUDA index first, so the extras below find it satisfied.
RUN pip install --upgrade "pip>=24" \
 && torch_pin=$(python -c "import tomllib; extra = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['engine']; print(next(r for r in extra if r.startswith('torch==')))") \
 && pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$torch_pin"
COPY api ./api
COPY jobs ./jobs
COPY worker ./worker
COPY engine ./engine
COPY cli ./cli
COPY launch ./launch
COPY poseanimate_client ./poseanimate_client
# torch is already there at the pinned version; the extras pin the same one.
RUN pip install ".[engine,detect]" \
 && python -c "import torch, diffusers, engine, worker.tasks; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# --- runtime -----------------------------------------------------------------------------------
FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/models/huggingface \
    POSEANIMATE_MODEL_CACHE_DIR=/models/poseanimate \
    POSEANIMATE_DEVICE=cuda \
    TOKENIZERS_PARALLELISM=false
# python3 for the venv; libgl1/libglib2.0 for OpenCV (mediapipe's detector); tini as PID 1.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgl1 libglib2.0-0t64 tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app \
 && mkdir -p /models/huggingface /models/poseanimate \
 && chown -R app:app /models
COPY --from=build /opt/venv /opt/venv
WORKDIR /home/app
USER 10001:10001
# Model weights (Hugging Face cache + the tiny model): mount a volume so restarts don't re-download.
VOLUME ["/models"]
EXPOSE 9101
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9101/metrics', timeout=4).status != 200)"]
# SIGTERM = warm shutdown: the running job finishes (up to --shutdown-timeout), then the worker exits.
# Give the container a stop grace period above POSEANIMATE_HARD_TIME_LIMIT_S (compose: stop_grace_period;
# Kubernetes: terminationGracePeriodSeconds).
ENTRYPOINT ["tini", "--", "poseanimate", "worker"]
CMD ["--queues", "gpu", "--shutdown-timeout", "3660"]
