"""A password-protected room's data over REST: its password, in `X-Room-Password`, grants read access to
that one session (details, history, series, graphs), as it does on the WebSocket; nothing else does.

A right password is remembered (a digest of it, with the room's stored hash) so that a page reading a
room's charts pays for one 16 MiB scrypt, not one per request, and so that no back-off ever refuses it;
wrong ones count toward the guessing client's back-off for that room (RoomPasswordGuard: each attempt is
counted before its check, a right one given back after it). The WebSocket
checks a room's password the same way (try_room_password).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import Header, HTTPException, Request

from bot.server.edge.rate_limits import RoomPasswordGuard, client_key
from bot.server.services import TrainingService

REMEMBERED_PASSWORDS = 10_000


class VerifiedPasswords:
    """Right passwords, at most REMEMBERED_PASSWORDS, the one used longest ago forgotten first."""

    def __init__(self) -> None:
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()

    def known(self, stored_hash: str, password: str) -> bool:
        key = (stored_hash, _digest(password))
        if key not in self._known:
            return False
        self._known.move_to_end(key)
        return True

    def remember(self, stored_hash: str, password: str) -> None:
        key = (stored_hash, _digest(password))
        self._known[key] = None
        self._known.move_to_end(key)
        if len(self._known) > REMEMBERED_PASSWORDS:
            self._known.popitem(last=False)


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8", "replace")).hexdigest()


RoomPassword = Annotated[
    str | None,
    Header(alias="X-Room-Password", max_length=128, description="a protected room's password"),
]


async def room_password_grants(request: Request, session_id: str, password: str | None, needed: bool) -> bool:
    """True when `session_id` is a protected room and `password` is its password. For a session that is no
    protected room: `not needed` (with auth off, anyone reads it). Raises 401 (a protected room, no
    password), 403 (a wrong one) or 429 (this client's back-off for the room)."""
    service: TrainingService = request.state.service
    stored_hash = await service.room_password_hash(session_id)
    if stored_hash is None:
        return not needed
    if not password:
        if needed:
            return False
        raise HTTPException(401, "this session is a password-protected room: send its password in X-Room-Password")
    who = client_key(None, request.client.host if request.client else None)
    try:
        wait = await try_room_password(request.state, session_id, stored_hash, password, who)
    except WrongPasswordError as exc:
        raise HTTPException(403, str(exc)) from None
    if wait is not None:
        why = f"too many wrong passwords for this room: retry in {wait:g} s"
        raise HTTPException(429, why, {"Retry-After": str(int(wait) + 1)})
    return True


class WrongPasswordError(Exception):
    pass


async def try_room_password(state: Any, room: str, stored_hash: str, password: str, who: str) -> float | None:
    """None if `password` opens `room`, the seconds `who` must wait before its password is checked, or
    WrongPasswordError. A password that was right before is taken without a check and whatever the back-off
    (a digest comparison): the back-off slows guessers, never the room's spectators."""
    verified: VerifiedPasswords = state.verified_passwords
    if verified.known(stored_hash, password):
        return None
    guard: RoomPasswordGuard = state.room_passwords
    if (wait := await guard.attempt(room, who)) is not None:
        return wait
    service: TrainingService = state.service
    if not await service.check_room_password(password, stored_hash):
        raise WrongPasswordError("wrong room password")
    await guard.succeeded(room, who)
    verified.remember(stored_hash, password)
    return None
