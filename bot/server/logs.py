"""No secret in any log line: a room password or a token given in a URL's query (a browser's WebSocket
cannot send headers) is masked in uvicorn's connection and access lines, and in ours."""

from __future__ import annotations

import logging
import re

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
