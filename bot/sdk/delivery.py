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
from pathlib import Path
from typing import Any

import httpx
import orjson

from .spool import Spool, locked, read_spool, rewrite

logger = logging.getLogger(__name__)

SESSIONS = "/api/training/sessions"
PATHS = {"training_metrics": "metrics", "bot_decision": "bot_decision", "graph_update": "graph_update"}


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # the server is away or failing: keep the record and try later
    REJECTED = "rejected"  # the server refused it (4xx): dead-letter, never retry


@dataclass
class Result:
    outcome: Outcome
    reason: str = ""
    answer: Any = None  # the server's JSON answer when delivered: for data, first_seq and last_seq


OnDelivered = Callable[[dict[str, Any], Any], None]


def _json(body: Any) -> bytes:
    return orjson.dumps(body)


def _post(http: httpx.Client, path: str, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    return http.post(path, content=_json(body), headers=headers)


def _ensure_session(http: httpx.Client, session_id: str, spec: dict[str, Any] | None) -> Result:
    response = _post(http, SESSIONS, {**(spec or {}), "training_id": session_id})
    if response.status_code in (201, 409):  # 409: it exists already, which is all we need
        return Result(Outcome.DELIVERED)
    return _classify(response)


def _classify(response: httpx.Response) -> Result:
    if response.is_success:
        is_json = response.headers.get("content-type", "").startswith("application/json")
        return Result(Outcome.DELIVERED, answer=response.json() if is_json else None)
    if response.status_code in (408, 425, 429) or response.status_code >= 500:
        return Result(Outcome.RETRY, f"HTTP {response.status_code}")
    return Result(Outcome.REJECTED, f"HTTP {response.status_code}: {response.text[:2000]}")


def deliver(http: httpx.Client, record: dict[str, Any]) -> Result:
    """Send one record; network errors and 5xx are RETRY, other 4xx are REJECTED."""
    try:
        return _deliver(http, record)
    except httpx.HTTPError as exc:
        return Result(Outcome.RETRY, f"{type(exc).__name__}: {exc}")


def _deliver(http: httpx.Client, record: dict[str, Any]) -> Result:
    session_id = record["session_id"]
    kind = record["kind"]
    if kind == "create":
        return _ensure_session(http, session_id, record.get("session"))
    if kind == "status":
        response = http.put(
            f"{SESSIONS}/{session_id}", content=_json(record["update"]), headers={"Content-Type": "application/json"}
        )
    else:
        path = f"{SESSIONS}/{session_id}/{PATHS[record['type']]}"
        response = _post(http, path, record["items"], record.get("key"))
    if response.status_code == 404 and record.get("session") is not None:
        # The session is gone (a new database, or a spool replayed elsewhere): create it, then again.
        created = _ensure_session(http, session_id, record["session"])
        if created.outcome is not Outcome.DELIVERED:
            return created
        return _deliver(http, {**record, "session": None})
    return _classify(response)


@dataclass
class SyncReport:
    delivered: int = 0
    rejected: int = 0
    torn: int = 0
    remaining: int = 0
    files: int = 0


def upload_spool(
    http: httpx.Client, spool: Spool, paths: list[Path] | None = None, on_delivered: OnDelivered | None = None
) -> SyncReport:
    """Deliver spooled records oldest first; stop at the first RETRY and keep what is left."""
    report = SyncReport()
    for path in paths if paths is not None else spool.files():
        with locked(path) as mine:
            if not mine:
                continue  # another client is writing or uploading it
            report.files += 1
            content = read_spool(path)
            report.torn += content.torn
            records = content.records
            index = 0
            while index < len(records):
                result = deliver(http, records[index])
                if result.outcome is Outcome.RETRY:
                    break
                if result.outcome is Outcome.REJECTED:
                    logger.error(
                        "server rejected a spooled batch for %s: %s", records[index]["session_id"], result.reason
                    )
                    spool.dead_letter(records[index], result.reason)
                    report.rejected += 1
                else:
                    report.delivered += 1
                    if on_delivered is not None:
                        on_delivered(records[index], result.answer)
                index += 1
            rewrite(path, records[index:])
            report.remaining += len(records) - index
            if index < len(records):
                break
    return report
