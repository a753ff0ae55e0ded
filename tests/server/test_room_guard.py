"""The back-off on wrong room passwords (bot/server/edge/rate_limits.py): per room and client, with a per-room
ceiling as the last resort against guessing from many addresses."""

from __future__ import annotations

import asyncio

from limits.aio.storage import MemoryStorage

from bot.server.api.rooms import REMEMBERED_PASSWORDS, VerifiedPasswords
from bot.server.edge.rate_limits import RoomPasswordGuard


async def test_a_guesser_waits_alone_until_the_room_ceiling() -> None:
    guard = RoomPasswordGuard(MemoryStorage(), timeout=1.0, failures_per_minute=2, room_ceiling_per_minute=3)
    for _ in range(2):
        assert await guard.attempt("room", "address:10.0.0.1") is None  # checked, and wrong
    assert (wait := await guard.attempt("room", "address:10.0.0.1")) is not None and 0 < wait <= 60
    assert await guard.attempt("other-room", "address:10.0.0.1") is None  # another room: checked
    assert await guard.attempt("room", "address:10.0.0.2") is None  # another client: the room's third this minute
    assert await guard.attempt("room", "address:10.0.0.3") is not None  # past the room's ceiling
    assert await guard.attempt("other-room", "address:10.0.0.3") is None


async def test_attempts_made_at_once_get_the_allowance_and_no_more() -> None:
    """Each attempt takes its place before its check: of 10 at once, 2 may be checked, whatever their order."""
    guard = RoomPasswordGuard(MemoryStorage(), timeout=1.0, failures_per_minute=2, room_ceiling_per_minute=100)
    waits = await asyncio.gather(*(guard.attempt("room", "address:10.0.0.1") for _ in range(10)))
    assert sum(wait is None for wait in waits) == 2


async def test_a_right_password_gives_its_place_back() -> None:
    """Only wrong passwords count: a right one's place is given back, so a client that typed it right can
    still get its allowance of wrong ones checked."""
    guard = RoomPasswordGuard(MemoryStorage(), timeout=1.0, failures_per_minute=2, room_ceiling_per_minute=100)
    assert await guard.attempt("room", "address:10.0.0.1") is None  # wrong
    assert await guard.attempt("room", "address:10.0.0.1") is None
    await guard.succeeded("room", "address:10.0.0.1")  # right
    assert await guard.attempt("room", "address:10.0.0.1") is None
    assert await guard.attempt("room", "address:10.0.0.1") is None
    assert await guard.attempt("room", "address:10.0.0.1") is not None


def test_remembered_passwords_drop_the_least_recently_used_not_all() -> None:
    """Past REMEMBERED_PASSWORDS, the password used longest ago is forgotten, not every one: emptying the set
    made every viewer of every room pay its 16 MiB scrypt again at the same moment."""
    verified = VerifiedPasswords()
    verified.remember("hash-of-busy-room", "busy")
    for n in range(REMEMBERED_PASSWORDS - 1):
        verified.remember(f"hash-{n}", "pw")
    assert verified.known("hash-of-busy-room", "busy")  # in use: now the most recent
    verified.remember("hash-new", "pw")  # one past the bound: hash-0 goes, the oldest
    assert verified.known("hash-of-busy-room", "busy") and verified.known("hash-new", "pw")
    assert not verified.known("hash-0", "pw") and verified.known("hash-1", "pw")
