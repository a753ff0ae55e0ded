"""Who may watch a session over the WebSocket, decided before the spectator is registered.

Credentials come in the `Authorization` header (any client but a browser), or in the first message,
`{"type": "auth", "token": "..."}` or `{"type": "auth", "password": "..."}`, so that a browser never puts
a secret in a URL: with auth on and nothing in the handshake, the server waits AUTH_WAIT_SECONDS for it (as it
does with `?auth=message`). A room's password may also come as `?password=` (it is masked in the logs).

Credentials are checked before the session is looked up: with auth on, a client without good ones gets the
same 4401 whether the session exists or not (a room password alone included: a session that is no
protected room, or none at all, answers alike). A client that leaves while it is waited for just leaves.

Close codes: 4401 no or bad credentials (or a token that expired, a key revoked, while watching), 4403 the
credential does not allow this session or the room password is wrong, 4404 no such session (to a verified
credential, or with auth off), 4429 too many attempts.
A spectator's credential is looked at again every few seconds (CredentialWatch), on every instance.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from fastapi import WebSocket

from bot.server.api.bodies import ECHO_LIMIT, echoed
from bot.server.api.rooms import VerifiedPasswords, WrongPasswordError, try_room_password
from bot.server.edge.auth import KEY_CACHE_SECONDS, Authenticator, AuthError, Principal
from bot.server.edge.rate_limits import RateLimits
from bot.server.live.closes import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_TOO_MANY, CLOSE_UNAUTHORIZED
from bot.server.live.spectator import Spectator
from bot.server.supervisor import Supervisor
from bot.store import SessionNotFoundError, Store
from bot.store.keys import revoked_among

logger = logging.getLogger(__name__)

AUTH_WAIT_SECONDS = 5.0


class Refusal(Exception):
    def __init__(self, code: int, error: str, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.code, self.error, self.reason, self.details = code, error, reason, details


CREDENTIALS_NEEDED = "credentials needed: an Authorization header or an auth message"


class Credentials:
    """What a spectator presents: an Authorization header or a room password in the handshake, or either in
    its first message. The header is verified as soon as the handshake is in (`verify`), so that the rate
    limits can count the connection against the credential, never against a header nobody checked; the
    rest (`complete`) before any lookup, so that no one without credentials learns which sessions exist."""

    def __init__(self, websocket: WebSocket) -> None:
        self.auth: Authenticator = websocket.state.auth
        self.authorization = websocket.headers.get("authorization")
        self.password = websocket.query_params.get("password")
        self.wants_message = websocket.query_params.get("auth") == "message"
        self.principal: Principal | None = None  # verified; None: none (yet), or auth is off
        self.refusal: Refusal | None = None  # what was wrong with the credential presented

    async def verify(self) -> None:
        """The credential presented so far, checked (auth on only: with auth off no header means anything)."""
        if not (self.auth.enabled and self.authorization):
            return
        try:
            self.principal = await self.auth.principal(self.authorization)
        except AuthError as exc:
            self.refusal = Refusal(CLOSE_UNAUTHORIZED, "unauthorized", exc.reason)

    async def complete(self, websocket: WebSocket) -> None:
        """The first message's credential when the handshake had none (auth on, or `?auth=message`),
        verified. With auth on, a bad credential, or neither a credential nor a room password, is Refusal
        (4401) here, before the session is looked up. WebSocketDisconnect if the client leaves meanwhile."""
        if self.authorization is None and self.password is None and (self.auth.enabled or self.wants_message):
            self.authorization, self.password = await _first_message(websocket)
            await self.verify()
        if self.refusal is not None:
            raise self.refusal
        if self.auth.enabled and self.principal is None and not self.password:
            raise Refusal(CLOSE_UNAUTHORIZED, "unauthorized", CREDENTIALS_NEEDED)

    def unknown_session(self, exc: SessionNotFoundError) -> Refusal:
        """The refusal for a session that does not exist: 4404 for a verified credential (or with auth off);
        with auth on and a room password alone, the one a session that is no protected room gets (admit)."""
        if self.auth.enabled and self.principal is None:
            return Refusal(CLOSE_UNAUTHORIZED, "unauthorized", CREDENTIALS_NEEDED)
        shown = echoed(exc.session_id, ECHO_LIMIT // 2)  # refuse() shows the other half: the frame's session_id
        return Refusal(CLOSE_NOT_FOUND, "session_not_found", str(exc).replace(repr(exc.session_id), repr(shown), 1))


async def admit(websocket: WebSocket, session: dict[str, Any], credentials: Credentials, who: str) -> Principal | None:
    """After Credentials.complete() and the lookup: the spectator's credential (None where none is needed),
    or Refusal. `who`: the client as the rate limits count it (its address: a room password is no credential)."""
    session_id = session["session_id"]
    if credentials.principal is not None:
        try:
            credentials.principal.require("read", session_id)
        except AuthError as exc:
            raise Refusal(CLOSE_FORBIDDEN, "forbidden", exc.reason) from None
        return credentials.principal
    if session["room_password_hash"] is not None:
        await _check_room_password(websocket, session_id, session["room_password_hash"], credentials.password, who)
        return None
    if credentials.auth.enabled:
        raise Refusal(CLOSE_UNAUTHORIZED, "unauthorized", CREDENTIALS_NEEDED)
    return None


async def _first_message(websocket: WebSocket) -> tuple[str | None, str | None]:
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), AUTH_WAIT_SECONDS)
        message = orjson.loads(raw)
    except (TimeoutError, KeyError, orjson.JSONDecodeError):
        message = None
    if not isinstance(message, dict) or message.get("type") != "auth":
        raise Refusal(CLOSE_UNAUTHORIZED, "unauthorized", 'send {"type": "auth", "token": ...} (or "password") first')
    token, password = message.get("token"), message.get("password")
    return (f"Bearer {token}" if isinstance(token, str) else None), (password if isinstance(password, str) else None)


async def _check_room_password(
    websocket: WebSocket, session_id: str, stored_hash: str, password: str | None, who: str
) -> None:
    if not password:
        raise Refusal(CLOSE_FORBIDDEN, "forbidden", "this room needs a password: add ?password=")
    limits: RateLimits = websocket.state.rate_limits
    verified: VerifiedPasswords = websocket.state.verified_passwords
    if not verified.known(stored_hash, password) and (wait := await limits.check("room_password", who)) is not None:
        why = f"too many room password attempts from this client: retry in {wait:g} s"
        raise Refusal(CLOSE_TOO_MANY, "rate_limited", why, retry_after=wait)
    try:
        wait = await try_room_password(websocket.state, session_id, stored_hash, password, who)
    except WrongPasswordError as exc:
        raise Refusal(CLOSE_FORBIDDEN, "forbidden", str(exc)) from None
    if wait is not None:
        why = f"too many wrong passwords for this room from this client: retry in {wait:g} s"
        raise Refusal(CLOSE_TOO_MANY, "too_many_attempts", why, retry_after=wait)


class CredentialWatch:
    """Spectators let in by an expiring token or a revocable key: every KEY_CACHE_SECONDS, those whose
    token expired or whose key was revoked (in the shared store: on any instance) are closed with 4401."""

    def __init__(self, store: Store, supervisor: Supervisor | None = None) -> None:
        self.store = store
        self.supervisor = supervisor or Supervisor()
        self.watched: dict[Spectator, Principal] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, spectator: Spectator, principal: Principal | None) -> None:
        if principal is not None and (principal.expires_at is not None or principal.key_id is not None):
            self.watched[spectator] = principal

    def discard(self, spectator: Spectator) -> None:
        self.watched.pop(spectator, None)

    async def __aenter__(self) -> CredentialWatch:
        self._task = self.supervisor.spawn("credential_watch", self._run)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            await self.supervisor.stop([self._task])

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(KEY_CACHE_SECONDS)
            try:
                await self.check()
            except Exception:
                logger.exception("checking spectators' credentials failed; trying again")

    async def check(self) -> None:
        now = time.time()
        for spectator, principal in list(self.watched.items()):
            if principal.expires_at is not None and principal.expires_at <= now:
                spectator.request_close(CLOSE_UNAUTHORIZED, "token expired: connect again with a new one")
        keys = sorted({p.key_id for p in self.watched.values() if p.key_id is not None})
        if not keys:
            return
        revoked = await self.store.read(revoked_among, keys)
        for spectator, principal in list(self.watched.items()):
            if principal.key_id in revoked:
                spectator.request_close(CLOSE_UNAUTHORIZED, "API key revoked")
