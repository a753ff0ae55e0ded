"""Errors the SDK raises to its caller. The tree:

MetricsError
├── InvalidValueError   a value the server would reject; raised at the log call, naming the field
├── SessionClosedError  logging into a run that has already ended
└── ServerError         a direct call (not a logged value) the server refused or could not take
    └── ServerUnavailableError  the server could not be reached (a network error or 5xx)

Network and server trouble never reaches a log call: the sender retries, then spools to disk. Only
calls that must answer now (creating a room, say) raise ServerError, never an httpx exception.
"""

from __future__ import annotations

from typing import Any


class MetricsError(Exception):
    pass


class InvalidValueError(MetricsError, ValueError):
    pass


class SessionClosedError(MetricsError, RuntimeError):
    pass


class ServerError(MetricsError):
    """The server refused a direct request; `status` is its HTTP status (None when it was not reached)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerUnavailableError(ServerError):
    pass


def raise_for_response(response: Any, what: str) -> None:
    """Translate an httpx response that is not a success into our own error tree."""
    if response.is_success:
        return
    error = ServerUnavailableError if response.status_code >= 500 else ServerError
    raise error(f"{what}: HTTP {response.status_code}: {response.text[:500]}", response.status_code)
