# Pare service image: the API (`pare serve`) and the GPU worker (`pare worker`) share it.
# CPU torch by default; the worker in docker-compose.yml builds with a CUDA wheel index.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/data/hf \
    HF_HUB_OFFLINE=1 \
    PARE_WORK_DIR=/data/work

RUN useradd --create-home --uid 1000 pare && mkdir -p /data/hf /data/work && chown -R pare /data
WORKDIR /srv/pare

# torch first, pinned, from the chosen wheel index (layer cached across code changes)
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

COPY pyproject.toml README.md* ./
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
COPY alembic.ini ./
# editable: alembic.ini and migrations/ are found beside the app package
RUN pip install -e .

USER pare
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["pare", "serve", "--host", "0.0.0.0", "--port", "8000"]
