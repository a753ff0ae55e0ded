"""The server: `create_app(settings)` for ASGI servers and tests, `TrainingMetricsServer` to run one.

Its names load on first use: an ingest worker (`python -m bot.server.ingest.worker`) imports a few modules
of this package, and should not pay for the whole app (over a second of CPU at every start).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.config import ServerConfig, ServerConfiguration, Settings
    from bot.server.app import TrainingMetricsServer, create_app

_HOMES = {
    "ServerConfig": "bot.config",
    "ServerConfiguration": "bot.config",
    "Settings": "bot.config",
    "TrainingMetricsServer": "bot.server.app",
    "create_app": "bot.server.app",
}

__all__ = ["ServerConfig", "ServerConfiguration", "Settings", "TrainingMetricsServer", "create_app"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
