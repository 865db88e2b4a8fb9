# One image for every digitflow process: the trainer API, the trainer worker and the inference
# service differ only by their command (see docker-compose.yml). The default command serves
# inference, because that is the one process that runs on its own (it needs no Redis).

# ---- build: install the project and its runtime dependencies into a virtualenv ----------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies first, from the metadata alone (empty package stubs, an empty README), so that a
# source or README change does not reinstall NumPy, pandas and friends: this layer is rebuilt only
# when pyproject.toml changes.
COPY pyproject.toml ./
RUN mkdir -p shared trainer_service inference_service \
    && touch README.md shared/__init__.py trainer_service/__init__.py inference_service/__init__.py \
    && pip install --no-cache-dir . \
    && rm -rf README.md shared trainer_service inference_service build ./*.egg-info

# Then the project itself (no test or bench extras: those never ship).
COPY README.md ./
COPY shared/ shared/
COPY trainer_service/ trainer_service/
COPY inference_service/ inference_service/
RUN pip install --no-cache-dir --no-deps --force-reinstall .

# ---- runtime ---------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="digitflow" \
      org.opencontainers.image.description="NumPy MNIST trainer (RQ) and inference service (Flask/gunicorn)" \
      org.opencontainers.image.licenses="MIT"

# - no .pyc writes (the code is read-only to the app user) and unbuffered logs for `docker logs`;
# - HOME (/app) is not writable: matplotlib's cache and gunicorn's control socket go to /tmp;
# - BLAS/OpenMP threads are deliberately not fixed image-wide: the gunicorn services run one BLAS
#   thread per worker process (set in docker-compose.yml and in their gunicorn.conf.py), while the
#   trainer worker uses every core it is given unless OMP_NUM_THREADS caps it (when scaling out).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_RUNTIME_DIR=/tmp \
    MODEL_REGISTRY_DIR=/models \
    DATA_DIR=/data \
    TRAINER_PORT=8001 \
    INFERENCE_PORT=8000

# The app user owns only what it must write: the model registry and the dataset cache. Named
# volumes mounted on these paths start out with this ownership.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app \
    && mkdir -p /models /data \
    && chown app:app /models /data

COPY --from=build /opt/venv /opt/venv

# The source tree stays in the working directory as well: the gunicorn config files are given by
# path (`-c trainer_service/api/gunicorn.conf.py`). It is owned by root, so the app cannot modify it.
WORKDIR /app
COPY shared/ shared/
COPY trainer_service/ trainer_service/
COPY inference_service/ inference_service/
# Imports come from this tree (the working directory is first on sys.path), and the app user may
# not write bytecode here: compile it once at build time so every start is fast.
RUN python -m compileall -q shared trainer_service inference_service

USER 10001:10001

EXPOSE 8000 8001

# No HEALTHCHECK here: the worker has no HTTP port, so each service's check lives in
# docker-compose.yml (python + urllib, since the slim image has no curl).
CMD ["gunicorn", "-c", "inference_service/gunicorn.conf.py", "inference_service.app:create_app()"]
