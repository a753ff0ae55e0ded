"""Access checks for the routes, as FastAPI dependencies (bot/server/edge/auth.py says who is who).

`Requires("write")` on a route: a credential with that scope (and, if it is limited to one session, the
route's `session_id`); with auth off, anyone. Reading a session (`ReadsSession`) is allowed as well to
someone with the room password of a protected room, for that room (bot/server/api/rooms.py), and a
protected room needs its password even with auth off.

Lists take the Principal and show only what it may see (sessions.py, training.py, health.py). `ServerReader`
and `ServerAdmin` guard routes about the whole server rather than one session (the daemon, starting and
stopping jobs): a session-limited credential gets 403 there, naming its session.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from bot.server.api.rooms import RoomPassword, room_password_grants
from bot.server.edge.auth import Authenticator, AuthError, Principal
from bot.store import SessionNotFoundError


def http_error(exc: AuthError) -> HTTPException:
    headers = {"WWW-Authenticate": 'Bearer realm="training-metrics-server"'} if exc.status == 401 else None
    return HTTPException(exc.status, exc.reason, headers)


async def principal_of(request: Request) -> Principal:
    auth: Authenticator = request.state.auth
    try:
        return await auth.principal(request.headers.get("authorization"))
    except AuthError as exc:
        raise http_error(exc) from None


def requires(scope: str, *, whole_server: bool = False) -> Any:  # a fastapi.params.Depends
    """`whole_server`: a route about no one session, refused to a credential limited to one."""

    async def check(request: Request) -> Principal:
        principal = await principal_of(request)
        try:
            principal.require(scope, request.path_params.get("session_id"))
            if whole_server:
                principal.require_whole_server()
        except AuthError as exc:
            raise http_error(exc) from None
        return principal

    return Depends(check)


async def reads_session(session_id: str, request: Request, password: RoomPassword = None) -> None:
    """A credential with `read` (for this session), or this protected room's password; a protected room
    needs its password even with auth off, unless a credential says otherwise."""
    auth: Authenticator = request.state.auth
    if auth.enabled and request.headers.get("authorization"):
        principal = await principal_of(request)
        try:
            principal.require("read", session_id)
        except AuthError as exc:
            raise http_error(exc) from None
        return
    missing = http_error(AuthError(401, "credentials needed: Authorization: Bearer <API key or token>"))
    if auth.enabled and not password:
        raise missing  # before any lookup: without credentials, not even whether the session exists
    try:
        if await room_password_grants(request, session_id, password, needed=auth.enabled):
            return
    except SessionNotFoundError:
        if auth.enabled:
            raise missing from None
        raise
    raise missing


Reader = requires("read")
Writer = requires("write")
Admin = requires("admin")
ServerReader = requires("read", whole_server=True)
ServerAdmin = requires("admin", whole_server=True)
ReadsSession = Depends(reads_session)
PrincipalDep = Annotated[Principal, Depends(principal_of)]
