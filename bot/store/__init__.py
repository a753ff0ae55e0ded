"""Persistence: SQLAlchemy 2 tables, read queries, write jobs and the group-commit Store."""

from bot.store.errors import (
    IdempotencyConflictError,
    SessionExistsError,
    SessionNotFoundError,
    StoreError,
    StoreRejectedError,
    StoreUnavailableError,
)
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
