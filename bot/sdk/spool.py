"""The disk spool: batches the server could not take yet, kept until they are delivered.

One file per client process (`spool-<pid>-<token>.jsonl`), one record per line: `<crc32 hex> <json>`.
A line whose checksum does not match, or that has no newline (the process died mid-write), is a torn
record: it is dropped and counted, never a crash. Each record carries its idempotency key, so
uploading a spool twice (two clients, or a crash mid-upload) applies every batch once.
Records the server refused (4xx) go to `dead-letter.jsonl` with the reason and are never retried.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

logger = logging.getLogger(__name__)

DEAD_LETTER = "dead-letter.jsonl"


def default_spool_dir() -> Path:
    configured = os.environ.get("TMS_SPOOL_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "training-metrics" / "spool"


def encode_record(record: dict[str, Any]) -> bytes:
    body = orjson.dumps(record)
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode_line(line: bytes) -> dict[str, Any] | None:
    """The record on this line, or None when the line is torn."""
    if not line.endswith(b"\n") or len(line) < 10:
        return None
    crc, body = line[:8], line[9:-1]
    try:
        if int(crc, 16) != zlib.crc32(body):
            return None
        record: dict[str, Any] = orjson.loads(body)
        return record
    except (ValueError, orjson.JSONDecodeError):
        return None


@dataclass
class SpoolFile:
    """Records read from one file, and how many torn lines were dropped."""

    path: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    torn: int = 0


def read_spool(path: Path) -> SpoolFile:
    result = SpoolFile(path)
    with path.open("rb") as handle:
        for line in handle:
            record = decode_line(line)
            if record is None:
                result.torn += 1
            else:
                result.records.append(record)
    if result.torn:
        logger.warning("spool %s: dropped %d torn record(s)", path, result.torn)
    return result


class Spool:
    """This process's spool file; written only by the client's sender thread."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_spool_dir()
        self._handle: IO[bytes] | None = None
        self.written = 0

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self._handle is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"spool-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
            self._handle = path.open("ab")
            # Held while we write: another client's upload skips a file that is still growing.
            fcntl.flock(self._handle, fcntl.LOCK_EX)
        self._handle.write(b"".join(encode_record(r) for r in records))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.written += len(records)

    def close(self) -> None:
        """Release this process's file, so that it can be uploaded (by us or anyone)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def files(self) -> list[Path]:
        """Every spool file in the directory, oldest first (this process's own included)."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("spool-*.jsonl"), key=lambda p: p.stat().st_mtime)

    def dead_letter(self, record: dict[str, Any], reason: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / DEAD_LETTER).open("ab") as handle:
            handle.write(encode_record({**record, "rejected": reason}))


@contextlib.contextmanager
def locked(path: Path) -> Iterator[bool]:
    """An exclusive, non-blocking lock on a spool file: True when this process may upload it."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        yield False
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    """Keep only `records` in `path` (atomically), or remove it when none are left."""
    if not records:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(b"".join(encode_record(r) for r in records))
    os.replace(temporary, path)
