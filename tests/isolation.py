"""Each test run (each pytest process, each xdist worker) gets services of its own, so two runs on one
machine, or a run and a developer's own data, never meet:

- a PostgreSQL database made for the run (`tms_test_<token>`, from the `TEST_DATABASE_URL` server), dropped
  at its end; each test still gets a schema of its own inside it;
- a Redis database claimed for the run: the first of 15, 14, ..., 1 (of `TEST_REDIS_URL`'s server) whose
  claim key it can set (SET NX with an expiry), emptied before use and released at the end;
- a spool directory of the run's own (TMS_SPOOL_DIR), never the user's ~/.cache/training-metrics/spool.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

CLAIM_KEY = "tms:test-run:claim"
CLAIM_SECONDS = 3 * 3600  # a run that died leaves its claim this long at most
REDIS_DATABASES = range(15, 0, -1)


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


@contextlib.contextmanager
def run_database(server_url: str) -> Iterator[str]:
    """A PostgreSQL database of this run's own, on the server of `server_url`; its URL."""
    import psycopg

    name = f"tms_test_{secrets.token_hex(5)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield _with_path(server_url, f"/{name}")
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def run_redis(server_url: str) -> Iterator[str]:
    """A Redis database claimed for this run, emptied; its URL."""
    import redis

    token = secrets.token_hex(8)
    for db in REDIS_DATABASES:
        url = _with_path(server_url, f"/{db}")
        client = redis.Redis.from_url(url)
        try:
            if client.set(CLAIM_KEY, token, nx=True, ex=CLAIM_SECONDS):
                for key in client.scan_iter(count=1000):
                    if key != CLAIM_KEY.encode():
                        client.delete(key)
                try:
                    yield url
                finally:
                    if client.get(CLAIM_KEY) == token.encode():
                        client.flushdb()
                return
        finally:
            client.close()
    raise RuntimeError(f"no free Redis database on {server_url}: every one of 1-15 is claimed by a test run")
