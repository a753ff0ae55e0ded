"""Which WebSocket paths go straight to the spectators' handler (bot/server/live/shortcut.py): those the
router's `/ws/{session_id}` would match, with or without a proxy's root path; the rest go to the router."""

from __future__ import annotations

import pytest

from bot.server.live.shortcut import spectated


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/ws/abc", "", "abc"),
        ("/ws/run %s é", "", "run %s é"),  # already percent-decoded by the server
        ("/tms/ws/ROOM42", "/tms", "ROOM42"),
        ("/ws/", "", None),
        ("/ws", "", None),
        ("/ws/a/b", "", None),
        ("/wss/abc", "", None),
        ("/api/ws/abc", "", None),
        ("/tms/api/x", "/tms", None),
    ],
)
def test_the_paths_a_spectator_comes_by(path: str, root_path: str, expected: str | None) -> None:
    assert spectated({"type": "websocket", "path": path, "root_path": root_path}) == expected
