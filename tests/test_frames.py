"""Frames built once per batch, lazily: a batch nobody watches is never framed."""

from __future__ import annotations

import orjson

from bot.frames import FrameRun, iso


def test_a_frame_run_builds_the_envelope_around_each_item() -> None:
    live = FrameRun("training_metrics", 'odd "id"', 41, iso(1.5), ['{"episode":1}', '{"episode":2}'])
    assert live._frames is None and len(live) == 2  # nothing built yet
    assert [seq for seq, _, _ in live] == [41, 42] and live[-1] == list(live)[-1]
    assert orjson.loads(live[0][2]) == {
        "type": "training_metrics",
        "session_id": 'odd "id"',
        "seq": 41,
        "timestamp": iso(1.5),
        "data": {"episode": 1},
    }
