"""The SDK training engines use to push metrics. Imports no server code and no torch."""

from .client import AsyncMetricsClient, AsyncRun, MetricsClient, Run
from .delivery import SyncReport, upload_spool
from .errors import InvalidValueError, MetricsError, SessionClosedError
from .spool import Spool, default_spool_dir

__all__ = [
    "AsyncMetricsClient",
    "AsyncRun",
    "InvalidValueError",
    "MetricsClient",
    "MetricsError",
    "Run",
    "SessionClosedError",
    "Spool",
    "SyncReport",
    "default_spool_dir",
    "upload_spool",
]
