"""How a spectator's join finds its session (bot/store/reads.py), on both backends."""

from __future__ import annotations

from sqlalchemy import insert

from bot.store import Store
from bot.store.reads import get_session_by_room_or_id
from bot.store.tables import sessions


async def test_a_room_code_is_found_first_then_a_session_id_in_one_read(store: Store) -> None:
    """A session named like another's room code loses to the room, whatever the case of the key."""
    row = {"epoch": "0" * 16, "status": "created", "metadata": "{}", "tags": "[]", "created_at": 1.0, "updated_at": 1.0}
    with store.writer.begin() as conn:
        conn.execute(insert(sessions).values(session_id="QWERTY", last_seq=0, message_count=0, **row))
        conn.execute(insert(sessions).values(session_id="room", room_code="QWERTY", last_seq=0, message_count=0, **row))
    for key, found in (("qwerty", "room"), ("QWERTY", "room"), ("room", "room"), ("nope", None)):
        session = await store.read(get_session_by_room_or_id, key)
        assert (session.session_id if session else None) == found, key
