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


def quote(text: str) -> str:
    return orjson.dumps(text).decode()


def data_frame(message_type: str, quoted_session_id: str, seq: int, timestamp: str, data_json: str) -> str:
    return (
        f'{{"type":"{message_type}","session_id":{quoted_session_id},"seq":{seq},'
        f'"timestamp":"{timestamp}","data":{data_json}}}'
    )


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
