"""Log lines: no secret in any of them (a room password or a token given in a URL's query, as a browser's
WebSocket must, is masked in uvicorn's connection and access lines, and in ours), and, with
`--log-format json`, one JSON object per line for a log collector."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import orjson

SECRET_NAMES = frozenset({"password", "token", "access_token", "api_key", "key"})
# A query's `name=value`: the name as sent (percent-encoded or not), the value up to the next `&` or space,
# whatever it holds (quotes too), as the server reads it.
QUERY_PAIR = re.compile(r"(?<![\w%.+~-])([\w%.+~-]+)=([^&\s]*)")


def _mask(pair: re.Match[str]) -> str:
    name = pair.group(1)
    return f"{name}=***" if unquote_plus(name).lower() in SECRET_NAMES else pair.group(0)


def redact(text: str) -> str:
    """Masks the value of every query parameter that the server reads as a secret: its name is decoded as
    the server decodes it (`pass%77ord` is `password`)."""
    return QUERY_PAIR.sub(_mask, text) if "=" in text else text


class RedactSecrets(logging.Filter):
    """Masks secrets in the message and in each string argument (uvicorn's access formatter reads its
    arguments by position, so they are kept, masked, rather than merged into the message)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


class ClientFaults(logging.Filter):
    """uvicorn logs a client's protocol error as an error of its own, with a traceback: a text frame that is
    not UTF-8 (the client gets 1007). It is the client's fault, as a bad request is: a warning, one line."""

    MESSAGES = frozenset({"Invalid UTF-8 sequence received from client."})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("uvicorn.error") and record.msg in self.MESSAGES and record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
            record.exc_info = record.exc_text = None
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
