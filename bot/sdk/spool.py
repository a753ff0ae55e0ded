"""The disk spool: batches the server could not take yet, kept until they are delivered to *their* server.

One SQLite file, `spool.db` in the spool directory (WAL, `synchronous=FULL`), shared by every client
on the machine. Each row is one record with the URL of the server it is for, so a client uploads only
its own server's batches and `bot sync` sends each to where it was going. A record is written in one
transaction: a process killed mid-write, or a power loss that tears the log's tail, loses at most that
transaction, never a committed one, and never leaves a half record. Each record carries its
idempotency key, so uploading one twice (a crash mid-upload) applies it once. Records the server
refused (4xx) move to the `dead_letters` table with the reason and are never retried; a refused credential
(401, 403) is not a refusal of the record, which stays here for a key that may send it.

A server's URL is kept as `server_url()` writes it, so `http://Host:8000/` and `http://host:8000` are one
server; rows an older version kept as they were given are rewritten so when the spool is opened.

One uploader per server URL at a time (a claim row that expires after CLAIM_SECONDS, should its
holder die): records of a server are delivered in the order they were written.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

logger = logging.getLogger(__name__)

FILENAME = "spool.db"
CLAIM_SECONDS = 60.0
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY, url TEXT NOT NULL, record BLOB NOT NULL, "
    "created REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS batches_url ON batches (url, id)",
    "CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY, url TEXT NOT NULL, record BLOB NOT NULL, "
    "reason TEXT NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS claims (url TEXT PRIMARY KEY, owner TEXT NOT NULL, until REAL NOT NULL)",
)


def server_url(url: str) -> str:
    """`url` as the spool keys servers: scheme and host in lower case, no trailing slash, the rest as given."""
    parts = urlsplit(url.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))


def default_spool_dir() -> Path:
    configured = os.environ.get("TMS_SPOOL_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "training-metrics" / "spool"


class Spool:
    """The spool in `directory` (default TMS_SPOOL_DIR or ~/.cache/training-metrics/spool); thread-safe."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_spool_dir()
        self.path = self.directory / FILENAME
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.written = 0
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        """The connection, opened on first use (a client whose server never goes away never creates a file)."""
        if self._conn is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            try:
                self._conn = _open(self.path)
            except sqlite3.DatabaseError as exc:
                # Never a crash: a file that is not a database (damaged beyond SQLite's own recovery) is
                # moved aside, said in the log, and a new spool starts.
                aside = self.path.with_name(f"{FILENAME}.damaged-{int(time.time())}")
                logger.error("spool %s is damaged (%s); moved to %s, starting a new one", self.path, exc, aside)
                for suffix in ("", "-wal", "-shm"):
                    source = Path(f"{self.path}{suffix}")
                    if source.exists():
                        source.replace(Path(f"{aside}{suffix}"))
                self._conn = _open(self.path)
        return self._conn

    def append(self, records: list[dict[str, Any]], url: str) -> None:
        """Keep `records` for the server at `url`, in one transaction."""
        if not records:
            return
        url, now = server_url(url), time.time()
        with self._lock, self._db() as conn:
            conn.executemany(
                "INSERT INTO batches (url, record, created) VALUES (?, ?, ?)",
                [(url, orjson.dumps(record), now) for record in records],
            )
        self.written += len(records)

    def pending(self, url: str | None = None) -> int:
        """Records waiting for the server at `url` (any server when None)."""
        if not self.path.exists() and self._conn is None:
            return 0
        where, params = ("WHERE url = ?", (server_url(url),)) if url is not None else ("", ())
        with self._lock:
            return int(self._db().execute(f"SELECT count(*) FROM batches {where}", params).fetchone()[0])

    def urls(self) -> list[str]:
        """Every server some record is waiting for."""
        if not self.path.exists() and self._conn is None:
            return []
        with self._lock:
            return [url for (url,) in self._db().execute("SELECT DISTINCT url FROM batches ORDER BY url")]

    def claim(self, url: str) -> bool:
        """Become the one uploader of `url`'s records (until release(), or CLAIM_SECONDS without renewal)."""
        url, now = server_url(url), time.time()
        with self._lock, self._db() as conn:
            row = conn.execute("SELECT owner, until FROM claims WHERE url = ?", (url,)).fetchone()
            if row is not None and row[0] != self.owner and row[1] > now:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO claims (url, owner, until) VALUES (?, ?, ?)",
                (url, self.owner, now + CLAIM_SECONDS),
            )
            return True

    def release(self, url: str) -> None:
        with self._lock, self._db() as conn:
            conn.execute("DELETE FROM claims WHERE url = ? AND owner = ?", (server_url(url), self.owner))

    def oldest(self, url: str, limit: int, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """Up to `limit` of `url`'s records after row `after`, oldest first, with their row ids."""
        query = "SELECT id, record FROM batches WHERE url = ? AND id > ? ORDER BY id LIMIT ?"
        with self._lock:
            rows = self._db().execute(query, (server_url(url), after, limit)).fetchall()
        return [(row_id, orjson.loads(record)) for row_id, record in rows]

    def remove(self, row_id: int) -> None:
        """A record the server took (or refused): gone from the spool."""
        with self._lock, self._db() as conn:
            conn.execute("DELETE FROM batches WHERE id = ?", (row_id,))

    def dead_letter(self, record: dict[str, Any], url: str, reason: str, row_id: int | None = None) -> None:
        """Keep a record the server refused, with why; it leaves the spool (`row_id`) in the same transaction."""
        with self._lock, self._db() as conn:
            conn.execute(
                "INSERT INTO dead_letters (url, record, reason, created) VALUES (?, ?, ?, ?)",
                (server_url(url), orjson.dumps(record), reason, time.time()),
            )
            if row_id is not None:
                conn.execute("DELETE FROM batches WHERE id = ?", (row_id,))

    def dead_letters(self) -> list[tuple[str, dict[str, Any], str]]:
        """(url, record, reason) of every refused record."""
        with self._lock:
            rows = self._db().execute("SELECT url, record, reason FROM dead_letters ORDER BY id").fetchall()
        return [(url, orjson.loads(record), reason) for url, record, reason in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _open(path: Path) -> sqlite3.Connection:
    # Autocommit off (`with conn:` is a transaction); one connection shared by the client's threads.
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        for statement in SCHEMA:
            conn.execute(statement)
        for (url,) in conn.execute("SELECT DISTINCT url FROM batches").fetchall():
            if server_url(url) != url:  # kept as given by an older version: one server, one URL
                conn.execute("UPDATE batches SET url = ? WHERE url = ?", (server_url(url), url))
        conn.commit()
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn
