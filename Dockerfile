# The server alone: SQLite by default; set DATABASE_URL and REDIS_URL for PostgreSQL and Redis.
# It listens on every interface of the container, so authentication is on: make the first key with
#   docker exec <container> bot keys create --scope admin
# (or publish the port on 127.0.0.1 only and set TMS_ENABLE_AUTH=0, as docker-compose.yml does).
# Reached by another name than localhost, list it: TMS_ALLOWED_HOSTS=metrics.example.org (DNS rebinding guard).
# Slim and non-root. A database made by an older version is refused until `bot db upgrade` runs
# (docker-compose.yml runs it once, before the servers), or with TMS_AUTO_MIGRATE=1.
FROM python:3.11-slim

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
RUN pip install ".[redis,postgres]" && mkdir -p /app/data \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin metrics && chown metrics /app/data
USER 10001
VOLUME ["/app/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health').status != 200)"
CMD ["bot", "serve"]
