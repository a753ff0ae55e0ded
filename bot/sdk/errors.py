"""Errors the SDK raises to its caller. The tree:

MetricsError
├── InvalidValueError   a value the server would reject; raised at the log call, naming the field
└── SessionClosedError  logging into a run that has already ended

Network and server trouble never reaches the caller: the sender retries, then spools to disk.
"""

from __future__ import annotations


class MetricsError(Exception):
    pass


class InvalidValueError(MetricsError, ValueError):
    pass


class SessionClosedError(MetricsError, RuntimeError):
    pass
