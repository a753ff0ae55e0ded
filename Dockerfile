# The server alone: SQLite by default; set DATABASE_URL and REDIS_URL for PostgreSQL and Redis.
# It listens on every interface of the container, so authentication is on: make the first key with
#   docker exec <container> bot keys create --scope admin
# (or publish the port on 127.0.0.1 only and set TMS_ENABLE_AUTH=0, as docker-compose.yml does).
# Reached by another name than localhost, list it: TMS_ALLOWED_HOSTS=metrics.example.org (DNS rebinding guard).
# Slim and non-root. A database made by an older version is refused until `bot db upgrade` runs
# (docker-compose.yml runs it once, before the servers), or with TMS_AUTO_MIGRATE=1.
# Training jobs and the daemon run in the image (the train extra). Pass PyTorch's CPU wheel index (the pip
# command on PyTorch's "Get Started" page, compute platform CPU, names it) as TORCH_INDEX_URL to keep the image
# small; without it pip takes the default wheel of torch 2.13.0, with its CUDA libraries (about 2.7 GB).
FROM python:3.11-slim

ARG TORCH_INDEX_URL=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TRAINING_METRICS_HOST=0.0.0.0 \
    TMS_ENABLE_AUTH=1 \
    TRAINING_METRICS_PORT=8000

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY config ./config
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0; fi \
    && pip install ".[redis,postgres,train]" && mkdir -p /app/data /app/models \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin metrics \
    && chown metrics /app/data /app/models
USER 10001
# The user has no home: a job's SDK spool (~/.cache by default) goes on the data volume instead.
ENV TMS_MODELS_DIR=/app/models \
    TMS_SPOOL_DIR=/app/data/spool
VOLUME ["/app/data", "/app/models"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health').status != 200)"
CMD ["bot", "serve"]
