"""The SDK training engines use to push metrics. Imports no server code and no torch."""

from .client import AsyncMetricsClient, AsyncRun, FlushResult, MetricsClient, Run
from .delivery import SyncReport, upload_spool
from .errors import InvalidValueError, MetricsError, ServerError, ServerUnavailableError, SessionClosedError
from .spool import Spool, default_spool_dir

__all__ = [
    "AsyncMetricsClient",
    "AsyncRun",
    "FlushResult",
    "InvalidValueError",
    "MetricsClient",
    "MetricsError",
    "Run",
    "ServerError",
    "ServerUnavailableError",
    "SessionClosedError",
    "Spool",
    "SyncReport",
    "default_spool_dir",
    "upload_spool",
]
