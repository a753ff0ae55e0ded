"""Frames: a stored message is rebuilt to the very text spectators received live."""

from __future__ import annotations

import time

import orjson

from bot.frames import FrameRun, iso, stored_frames


def test_stored_rows_rebuild_the_live_frames_byte_for_byte() -> None:
    now = time.time()
    data = ['{"episode":1,"current_reward":"NaN"}', '{"episode":2,"note":"a \\"quoted\\" word"}']
    live = FrameRun("training_metrics", 'odd "id"', 41, iso(now), data)
    rows = [(41, "training_metrics", now, data[0]), (42, "training_metrics", now, data[1])]
    assert stored_frames('odd "id"', rows) == list(live)
    assert len(live) == 2 and live[1][0] == 42 and live[-1] == list(live)[-1]
    envelope = orjson.loads(live[0][2])
    assert envelope == {
        "type": "training_metrics",
        "session_id": 'odd "id"',
        "seq": 41,
        "timestamp": iso(now),
        "data": {"episode": 1, "current_reward": "NaN"},
    }


def test_rows_of_several_types_and_times_keep_their_own_envelopes() -> None:
    rows = [(1, "bot_decision", 1.5, "{}"), (2, "training_status", 2.5, '{"status":"running"}')]
    frames = [orjson.loads(frame) for _, _, frame in stored_frames("s", rows)]
    assert [(f["type"], f["timestamp"]) for f in frames] == [("bot_decision", iso(1.5)), ("training_status", iso(2.5))]
