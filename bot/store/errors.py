"""Store errors. The tree:

StoreError
├── SessionNotFoundError   the session id names no session (HTTP 404)
├── SessionExistsError     a session with that id already exists (HTTP 409)
├── IdempotencyConflictError  the key was used for another body (HTTP 409)
├── JobLimitError          a training job past the limits of every instance on this database (HTTP 400)
├── StoreUnavailableError  the commit failed; nothing of the request was stored (HTTP 503, retry)
└── StoreRejectedError     the database refused a value of this request alone; nothing was stored (HTTP 422)
"""

from __future__ import annotations


class StoreError(Exception):
    pass


class SessionNotFoundError(StoreError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} not found")
        self.session_id = session_id


class SessionExistsError(StoreError):
    def __init__(self, session_id: str, why: str = "already exists") -> None:
        super().__init__(f"session id {session_id!r} {why}; choose another training_id (or delete that session)")
        self.session_id = session_id


class IdempotencyConflictError(StoreError):
    def __init__(self, key: str, message_type: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used for another {message_type} body in this session; "
            "a retry must send the same body, new data needs a new key"
        )
        self.key = key


class StoreUnavailableError(StoreError):
    pass


class StoreRejectedError(StoreError):
    """A value passed validation but the database refused it; retrying the same request cannot succeed.

    `kind` and `input` fill the 422's `detail` entry, of the shape every 422 has."""

    kind = "value_refused"

    def __init__(self, message: str, input: object = None) -> None:
        super().__init__(message)
        self.input = input


class SessionLimitError(StoreRejectedError):
    """The batch would take a session past one of its bounds (bot/store/bounds.py); nothing was written.
    `input` is the first name it would add."""

    kind = "session_limit"


class JobLimitError(StoreError):
    """A new training job would pass max_concurrent_jobs, or run a scenario already training, counting the jobs
    of every instance on this database (its checks ran in the transaction that would have stored it)."""
