"""Who is asking, checked at the edge (`security.enable_auth`; off by default, on 127.0.0.1).

Credentials travel as `Authorization: Bearer <key or token>` (on a spectator's WebSocket also in its first
message, so a browser never puts one in a URL):
- API keys (`bot keys create`): random, shown once, stored as a SHA-256 and looked up by it. A key seen
  recently is taken from memory for KEY_CACHE_SECONDS, so a revoked key stops working within that on every
  instance (connected spectators are re-checked as often: see ws.py).
- JWTs signed with JWT_SECRET_KEY (PyJWT): HS256 always, whatever the token's header says; `exp` and `sub`
  required, `aud` checked (and `iss` when configured); `scope` space-separated as in OAuth; `session`, when
  present, limits the token to that session.

Scopes: `read` (history, spectating), `write` (create a session, push into it, change its status),
`admin` (everything: delete sessions, training jobs, the daemon, /metrics). A credential limited to one
session may touch no other: lists show it its own session and jobs only, and the routes about the whole
server (the daemon, starting and stopping jobs) refuse it. Decision: `write` may create a session (a
trainer's SDK creates the session it pushes to); only `admin` deletes one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from bot.config import Settings
from bot.store import Store
from bot.store.keys import find_key

SCOPES = ("read", "write", "admin")
KEY_CACHE_SECONDS = 2.0
KEY_CACHE_SIZE = 10_000


class AuthError(Exception):
    """401 (no or bad credentials) or 403 (the credentials do not allow this): `status` says which."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    scopes: frozenset[str]
    session_id: str | None = None  # the one session this credential may touch, if limited
    expires_at: float | None = None  # a JWT's exp
    key_id: str | None = None  # an API key's id, for revocation

    def allows(self, scope: str, session_id: str | None = None) -> bool:
        if "admin" not in self.scopes and scope not in self.scopes:
            return False
        return self.session_id is None or session_id is None or session_id == self.session_id

    def require(self, scope: str, session_id: str | None = None) -> None:
        if "admin" not in self.scopes and scope not in self.scopes:
            raise AuthError(403, f"this credential lacks the {scope!r} scope")
        if self.session_id is not None and session_id is not None and session_id != self.session_id:
            raise AuthError(403, f"this credential is limited to session {self.session_id!r}")

    def require_whole_server(self) -> None:
        """For routes about no one session (the daemon, starting and stopping jobs): a credential limited to a
        session may not use them, whatever its scopes."""
        if self.session_id is not None:
            why = f"this credential is limited to session {self.session_id!r}; this route is about the whole server"
            raise AuthError(403, why)


ANYONE = Principal("anonymous", frozenset(SCOPES))


class Authenticator:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.enabled = settings.enable_auth
        self.secret = settings.jwt_secret_key
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.store = store
        self.failures = 0  # for /metrics
        self._keys: dict[str, tuple[float, Principal | None]] = {}

    async def principal(self, authorization: str | None) -> Principal:
        """Who the Authorization header (or a WebSocket's first message) says; raises AuthError(401)."""
        if not self.enabled:
            return ANYONE
        scheme, _, credential = (authorization or "").strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            self.failures += 1
            raise AuthError(401, "credentials needed: Authorization: Bearer <API key or token>")
        try:
            return self._token(credential) if credential.count(".") == 2 else await self._key(credential)
        except AuthError:
            self.failures += 1
            raise

    def _token(self, token: str) -> Principal:
        if not self.secret:
            raise AuthError(401, "tokens are not accepted: the server has no JWT_SECRET_KEY")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],  # fixed here: the token's own `alg` is never trusted
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub", "aud"] + (["iss"] if self.issuer else [])},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"invalid token: {exc}") from None
        scopes = claims.get("scope", "")
        session = claims.get("session")
        if not isinstance(scopes, str) or (session is not None and not isinstance(session, str)):
            raise AuthError(401, "invalid token: `scope` must be a string of space-separated scopes")
        return Principal(str(claims["sub"]), frozenset(scopes.split()), session, float(claims["exp"]))

    async def _key(self, key: str) -> Principal:
        now = time.monotonic()
        cached = self._keys.get(key)
        if cached is None or now - cached[0] > KEY_CACHE_SECONDS:
            row = await self.store.read(find_key, key)
            found = None
            if row is not None:
                found = Principal(f"key:{row.key_id}", frozenset(row.scopes.split()), row.session_id, None, row.key_id)
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.clear()
            cached = self._keys[key] = (now, found)
        if cached[1] is None:
            raise AuthError(401, "unknown or revoked API key")
        return cached[1]
