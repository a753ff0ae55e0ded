"""Persistence: SQLAlchemy 2 tables, read queries, write jobs and the group-commit Store.

`Store` loads on first use: an ingest worker imports `bot.store.batch` and should not pay for SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bot.store.errors import (
    IdempotencyConflictError,
    SessionExistsError,
    SessionNotFoundError,
    StoreError,
    StoreRejectedError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from bot.store.store import Store

__all__ = [
    "IdempotencyConflictError",
    "SessionExistsError",
    "SessionNotFoundError",
    "Store",
    "StoreError",
    "StoreRejectedError",
    "StoreUnavailableError",
]


def __getattr__(name: str) -> Any:
    if name != "Store":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module("bot.store.store").Store
