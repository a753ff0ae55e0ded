"""The spectator message codec: every frame is JSON text built once and sent as-is to each spectator.

The envelope is `{"type", "session_id", "seq", "timestamp", "data"}`. Data frames are assembled from
pre-encoded JSON pieces (no parse, no re-encode); control frames (`connection_status`, `lag`, `error`,
`reset`, `snapshot`, `pong`) have `seq: null` because they are not part of the stored stream.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, overload

import orjson


def iso(ts: float) -> str:
    """ISO 8601 UTC with microseconds and a Z, as pydantic writes datetimes."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def json_number(value: float | None) -> float | str | None:
    """A float as the API sends it: NaN and ±Infinity as "NaN", "Infinity" and "-Infinity" (README,
    "Non-finite values"); orjson would write null."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def envelope_parts(quoted_session_id: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """A data frame is head[0] + type + head[1] + seq + tail[0] + timestamp + tail[1] + data + "}"."""
    return ('{"type":"', f'","session_id":{quoted_session_id},"seq":'), (',"timestamp":"', '","data":')


def data_frames(message_type: str, session_id: str, first_seq: int, timestamp: str, data: Sequence[str]) -> list[str]:
    """Frames for consecutive seqs from `first_seq`, around each item's JSON."""
    (h0, h1), (t0, t1) = envelope_parts(orjson.dumps(session_id).decode())
    head, tail = f"{h0}{message_type}{h1}", f"{t0}{timestamp}{t1}"
    return [f"{head}{first_seq + i}{tail}{item}}}" for i, item in enumerate(data)]


class FrameRun(Sequence[tuple[int, str, str]]):
    """(seq, type, frame) for a batch's consecutive seqs, built on first use: a session nobody watches on
    this instance (the memory broker drops its frames) never pays for them."""

    def __init__(self, message_type: str, session_id: str, first_seq: int, timestamp: str, data: list[str]) -> None:
        self._args = (message_type, session_id, first_seq, timestamp, data)
        self._frames: list[tuple[int, str, str]] | None = None

    def _built(self) -> list[tuple[int, str, str]]:
        if self._frames is None:
            message_type, _, first_seq, _, _ = self._args
            self._frames = [(first_seq + i, message_type, frame) for i, frame in enumerate(data_frames(*self._args))]
        return self._frames

    def __len__(self) -> int:
        return len(self._args[4])

    @overload
    def __getitem__(self, index: int) -> tuple[int, str, str]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[int, str, str]]: ...

    def __getitem__(self, index: int | slice) -> tuple[int, str, str] | list[tuple[int, str, str]]:
        return self._built()[index]

    def __iter__(self) -> Iterator[tuple[int, str, str]]:
        return iter(self._built())


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


CLOSE_REASON_BYTES = 123  # a close frame's payload is 125 bytes, two of them the code


def close_reason(reason: str) -> str:
    """The reason cut to what a close frame holds, in whole UTF-8 characters: a longer one makes the
    protocol fail the connection, so the peer would get no close frame at all."""
    encoded = reason.encode("utf-8", "replace")
    return encoded[:CLOSE_REASON_BYTES].decode("utf-8", "ignore") if len(encoded) > CLOSE_REASON_BYTES else reason
