"""The spectator message codec: every frame is JSON text built once and sent as-is to each spectator.

The envelope is `{"type", "session_id", "seq", "timestamp", "data"}`. Data frames are assembled from
pre-encoded JSON pieces (no parse, no re-encode); control frames (`connection_status`, `lag`, `error`,
`reset`, `snapshot`, `pong`) have `seq: null` because they are not part of the stored stream.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson


def iso(ts: float) -> str:
    """ISO 8601 UTC with microseconds and a Z, as pydantic writes datetimes."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def data_frames(message_type: str, session_id: str, first_seq: int, timestamp: str, data: list[str]) -> list[str]:
    """Frames for consecutive seqs from `first_seq`, around each item's JSON; the envelope is built once."""
    head = f'{{"type":"{message_type}","session_id":{orjson.dumps(session_id).decode()},"seq":'
    tail = f',"timestamp":"{timestamp}","data":'
    return [f"{head}{first_seq + i}{tail}{item}}}" for i, item in enumerate(data)]


def control_frame(message_type: str, session_id: str, data: dict[str, Any], ts: float | None = None) -> str:
    envelope = {
        "type": message_type,
        "session_id": session_id,
        "seq": None,
        "timestamp": iso(ts if ts is not None else datetime.now(UTC).timestamp()),
        "data": data,
    }
    return orjson.dumps(envelope, option=orjson.OPT_NON_STR_KEYS).decode()


def error_frame(session_id: str, code: str, message: str, **details: Any) -> str:
    return control_frame("error", session_id, {"code": code, "message": message, **details})
