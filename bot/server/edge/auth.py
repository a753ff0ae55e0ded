"""Who is asking, checked at the edge (`security.enable_auth`; off by default, on 127.0.0.1).

Credentials travel as `Authorization: Bearer <key or token>` (on a spectator's WebSocket also in its first
message, so a browser never puts one in a URL):
- API keys (`bot keys create`): random, shown once, stored as a SHA-256 and looked up by it. A key seen
  recently is taken from memory for KEY_CACHE_SECONDS, so a revoked key stops working within that on every
  instance (connected spectators are re-checked as often: see ws.py). Memory holds the SHA-256 of known keys
  only, at most KEY_CACHE_BYTES of them (KeyCache): an unknown key is never kept, so made-up keys, however
  many and however long, cost a lookup and no memory (issue #25.7: 9,990 made-up 60 KB keys were kept,
  600 MB). A key longer than any `bot keys create` makes is refused without a lookup.
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
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from bot.config import Settings
from bot.store import Store
from bot.store.keys import find_key_by_hash, key_hash

SCOPES = ("read", "write", "admin")
KEY_CACHE_SECONDS = 2.0
KEY_CACHE_BYTES = 1 << 20  # about 2,000 keys; a deployment has tens
KEY_ENTRY_BYTES = 400  # what an entry costs beyond its strings: the dict slot, the tuple, the Principal
MAX_KEY_LENGTH = 256  # `bot keys create` makes 47 characters: a longer key is no key of ours


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


class KeyCache:
    """Known API keys by the SHA-256 of the key (never the key itself) for KEY_CACHE_SECONDS, at most
    `max_bytes` of them: past that, the least recently used go first."""

    def __init__(self, max_bytes: int = KEY_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[float, Principal, int]] = OrderedDict()

    def get(self, digest: str, now: float) -> Principal | None:
        """The principal of a key seen less than KEY_CACHE_SECONDS ago, else None (look it up)."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if now - entry[0] > KEY_CACHE_SECONDS:
            self._drop(digest)
            return None
        self._entries.move_to_end(digest)
        return entry[1]

    def put(self, digest: str, principal: Principal, now: float) -> None:
        self._drop(digest)
        size = KEY_ENTRY_BYTES + len(digest) + len(principal.subject) + len(principal.session_id or "")
        size += sum(len(scope) for scope in principal.scopes)
        self._entries[digest] = (now, principal, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, digest: str) -> None:
        entry = self._entries.pop(digest, None)
        if entry is not None:
            self.bytes -= entry[2]


class Authenticator:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.enabled = settings.enable_auth
        self.secret = settings.jwt_secret_key
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.store = store
        self.failures = 0  # for /metrics
        self.key_cache = KeyCache()

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
        if not isinstance(claims["sub"], str) or not claims["sub"].strip():
            raise AuthError(401, "invalid token: `sub` must name who it is for (a non-empty string)")
        scopes = claims.get("scope", "")
        session = claims.get("session")
        if not isinstance(scopes, str) or (session is not None and not isinstance(session, str)):
            raise AuthError(401, "invalid token: `scope` must be a string of space-separated scopes")
        return Principal(claims["sub"], frozenset(scopes.split()), session, float(claims["exp"]))

    async def _key(self, key: str) -> Principal:
        if len(key) > MAX_KEY_LENGTH:
            raise AuthError(401, "unknown or revoked API key")
        digest = key_hash(key)
        now = time.monotonic()
        found = self.key_cache.get(digest, now)
        if found is None:
            row = await self.store.read(find_key_by_hash, digest)
            if row is None:
                raise AuthError(401, "unknown or revoked API key")  # not kept: made-up keys cost no memory
            found = Principal(f"key:{row.key_id}", frozenset(row.scopes.split()), row.session_id, None, row.key_id)
            self.key_cache.put(digest, found, now)
        return found
