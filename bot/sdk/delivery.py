"""Delivering one record to the server, and a whole spool: shared by the sender thread and `bot sync`.

A record is what the sender forms from log calls and what the spool stores:
`{"kind": "create", "session_id", "session": {...}}`,
`{"kind": "data", "session_id", "type", "key", "items": [...], "session": {...}}` or
`{"kind": "status", "session_id", "update": {...}}`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx
import orjson

from .spool import Spool

logger = logging.getLogger(__name__)

SESSIONS = "/api/training/sessions"
PATHS = {"training_metrics": "metrics", "bot_decision": "bot_decision", "graph_update": "graph_update"}


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # the server is away or failing: keep the record and try later
    UNAUTHORIZED = "unauthorized"  # 401: no credential, or one not valid (unknown, revoked, expired): keep it
    FORBIDDEN = "forbidden"  # 403: this credential may not write this session (its scope or session): keep it
    REJECTED = "rejected"  # the server refused the data (other 4xx): dead-letter, never retry


@dataclass
class Result:
    outcome: Outcome
    reason: str = ""
    answer: Any = None  # the server's JSON answer when delivered: for data, first_seq and last_seq
    retry_after: float | None = None  # seconds the server asked for (503 and 429 with Retry-After)


OnDelivered = Callable[[dict[str, Any], Any], None]


def _json(body: Any) -> bytes:
    return orjson.dumps(body)


def _post(http: httpx.Client, path: str, body: Any, key: str | None, timeout: Any) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    return http.post(path, content=_json(body), headers=headers, timeout=timeout)


def _ensure_session(http: httpx.Client, session_id: str, spec: dict[str, Any] | None, timeout: Any) -> Result:
    response = _post(http, SESSIONS, {**(spec or {}), "training_id": session_id}, None, timeout)
    if response.status_code in (201, 409):  # 409: it exists already, which is all we need
        return Result(Outcome.DELIVERED)
    return _classify(response)


def _classify(response: httpx.Response) -> Result:
    if response.is_success:
        is_json = response.headers.get("content-type", "").startswith("application/json")
        return Result(Outcome.DELIVERED, answer=response.json() if is_json else None)
    if response.status_code in (408, 425, 429) or response.status_code >= 500:
        return Result(Outcome.RETRY, f"HTTP {response.status_code}", retry_after=_retry_after(response))
    if response.status_code in (401, 403):
        # The caller's credential, not the data: the write routes answer 403 for a scope or a session the key
        # lacks, never for a room password. A good key sends the record as it is, so it is kept for one.
        outcome = Outcome.UNAUTHORIZED if response.status_code == 401 else Outcome.FORBIDDEN
        return Result(outcome, f"HTTP {response.status_code}: {_detail(response)}")
    return Result(Outcome.REJECTED, f"HTTP {response.status_code}: {response.text[:2000]}")


def _detail(response: httpx.Response) -> str:
    """The server's own words for a refusal (its JSON `detail`), short enough for one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail[:200] if isinstance(detail, str) else response.text[:200]


def _retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (the HTTP-date form is rare from this server and ignored)."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 3600 else None


def deliver(http: httpx.Client, record: dict[str, Any], timeout: float | None = None) -> Result:
    """Send one record (each request within `timeout` seconds, default the client's); network errors and
    5xx are RETRY, 401 and 403 UNAUTHORIZED and FORBIDDEN, other 4xx REJECTED."""
    try:
        return _deliver(http, record, httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
    except httpx.HTTPError as exc:
        return Result(Outcome.RETRY, f"{type(exc).__name__}: {exc}")


def _deliver(http: httpx.Client, record: dict[str, Any], timeout: Any) -> Result:
    session_id = record["session_id"]
    kind = record["kind"]
    if kind == "create":
        return _ensure_session(http, session_id, record.get("session"), timeout)
    if kind == "status":
        headers = {"Content-Type": "application/json"}
        response = http.put(
            f"{SESSIONS}/{session_id}", content=_json(record["update"]), headers=headers, timeout=timeout
        )
    else:
        path = f"{SESSIONS}/{session_id}/{PATHS[record['type']]}"
        response = _post(http, path, record["items"], record.get("key"), timeout)
    if response.status_code == 404 and record.get("session") is not None:
        # The session is gone (a new database, or a spool replayed elsewhere): create it, then again.
        created = _ensure_session(http, session_id, record["session"], timeout)
        if created.outcome is not Outcome.DELIVERED:
            return created
        return _deliver(http, {**record, "session": None}, timeout)
    return _classify(response)


@dataclass
class SyncReport:
    """What an upload of the spool did: delivered, refused (now dead letters), still waiting."""

    delivered: int = 0
    rejected: int = 0
    remaining: int = 0
    held: int = 0  # of `remaining`, kept for another credential: all after a 401, a 403's session's records
    refused_credential: str = ""  # why the server refused the credential (401 or 403), if it did
    busy: bool = False  # another process was uploading this server's records: left to it
    retry_after: float | None = None
    stopped: bool = False  # `should_stop` said so between two records: the rest waits, nothing failed


Timeout = float | Callable[[], float | None] | None


def upload_spool(
    http: httpx.Client,
    spool: Spool,
    url: str,
    on_delivered: OnDelivered | None = None,
    timeout: Timeout = None,
    should_stop: Callable[[], bool] | None = None,
) -> SyncReport:
    """Deliver the records spooled for the server at `url` (which `http` talks to), oldest first; stop at
    the first RETRY and keep what is left. Records for other servers are never touched. A 401 stops the upload
    too (no record goes with that credential); a 403 keeps that session's records, in order, and the others go
    on: a key limited to one session (a job's) must not wait behind another session's records forever.

    `timeout` is seconds per request, or a function asked before each (a deadline drawing nearer);
    `should_stop` is asked between two records: a sender that is closing, or has newer records to put
    in the spool first, does not wait for the whole spool to go (it may hold hours of another run)."""
    report = SyncReport()
    if not spool.pending(url):
        return report
    if not spool.claim(url):
        return SyncReport(remaining=spool.pending(url), busy=True)
    held: set[str] = set()  # sessions this credential may not write
    try:
        after = 0
        while rows := spool.oldest(url, 100, after):
            for row_id, record in rows:
                after = row_id
                if record["session_id"] in held:
                    report.held += 1
                    continue
                if should_stop is not None and should_stop():
                    report.remaining, report.stopped = spool.pending(url), True
                    return report
                result = deliver(http, record, timeout() if callable(timeout) else timeout)
                if result.outcome in (Outcome.UNAUTHORIZED, Outcome.FORBIDDEN):
                    report.refused_credential = result.reason  # the caller says it: once, not per record
                if result.outcome is Outcome.UNAUTHORIZED:
                    report.remaining = report.held = spool.pending(url)
                    return report
                if result.outcome is Outcome.FORBIDDEN:
                    held.add(record["session_id"])
                    report.held += 1
                    continue
                if result.outcome is Outcome.RETRY:
                    report.remaining, report.retry_after = spool.pending(url), result.retry_after
                    return report
                if result.outcome is Outcome.REJECTED:
                    logger.error("server rejected a spooled batch for %s: %s", record["session_id"], result.reason)
                    spool.dead_letter(record, url, result.reason, row_id)
                    report.rejected += 1
                else:
                    spool.remove(row_id)
                    report.delivered += 1
                    if on_delivered is not None:
                        on_delivered(record, result.answer)
            spool.claim(url)  # renewed while the upload goes on
    finally:
        spool.release(url)
    report.remaining = spool.pending(url)  # what the credential may not send (and what came meanwhile)
    return report
