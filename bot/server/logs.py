"""Log lines: no secret in any of them (a room password or a token given in a URL's query, as a browser's
WebSocket must, is masked in uvicorn's connection and access lines, and in ours), and, with
`--log-format json`, one JSON object per line for a log collector."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import orjson

SECRET_IN_QUERY = re.compile(r"\b(password|token|access_token|api_key|key)=[^&\s\"']*", re.IGNORECASE)


def redact(text: str) -> str:
    return SECRET_IN_QUERY.sub(r"\1=***", text)


class RedactSecrets(logging.Filter):
    """Masks secrets in the message and in each string argument (uvicorn's access formatter reads its
    arguments by position, so they are kept, masked, rather than merged into the message)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


CONTEXT_FIELDS = ("session_id", "job_id", "run_id", "spectator_id")  # passed as `extra=` where an event has them


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...}`: the context fields the event carries, and for an
    access line its client, method, path and status."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if (value := getattr(record, name, None)) is not None:
                line[name] = value
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _, status = record.args
            line |= {"client": client, "method": method, "path": path, "status": status}
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()
