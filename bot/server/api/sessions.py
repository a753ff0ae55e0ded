"""Training sessions: create, list, read, update status and metadata, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from bot.schemas import SessionCreate, SessionStatus, SessionUpdate, Tag
from bot.server.api.access import Admin, Reader, ReadsSession, Writer, reads_session
from bot.server.api.bodies import body_schema, errors, read_model
from bot.server.api.deps import HubDep, ServiceDep
from bot.server.api.params import Offset, parse_word_list, word_list
from bot.server.api.rooms import RoomPassword
from bot.server.edge.auth import Principal
from bot.store.reads import ACTIVE_STATUSES

router = APIRouter(prefix="/api/training/sessions", tags=["sessions"], responses=errors(401, 403))

STATUS_FILTERS = [s.value for s in SessionStatus] + ["active", "all"]


def _with_spectators(session: dict[str, Any], hub: HubDep) -> dict[str, Any]:
    """The session with its spectator count, and its room's `max_spectators` as the hub enforces it: a room
    stored before max_connections_per_session was lowered takes no more than that (hub.add)."""
    shown = {**session, "spectators": hub.count(session["session_id"])}
    if "max_spectators" in session:
        shown["max_spectators"] = hub.room_limit(session["max_spectators"])
    return shown


def _room_within(spec: SessionCreate, limit: int) -> SessionCreate:
    """The spec with a room no bigger than the server lets one session be (max_connections_per_session), so
    that what the room shows is what is enforced. A size asked for past it is a 422 naming both numbers; the
    default (none asked for) becomes the server's limit where that is lower."""
    room = spec.room
    if room is None or room.max_spectators <= limit:
        return spec
    if "max_spectators" not in room.model_fields_set:
        return spec.model_copy(update={"room": room.model_copy(update={"max_spectators": limit})})
    why = f"max_spectators {room.max_spectators} is over this server's max_connections_per_session ({limit})"
    error = {"type": "less_than_equal", "loc": ("body", "room", "max_spectators"), "msg": why}
    raise RequestValidationError([{**error, "input": room.max_spectators}])


@router.post(
    "", status_code=201, openapi_extra=body_schema(SessionCreate, many=False), responses=errors(409, 413, 422, 503)
)
async def create_session(
    request: Request, service: ServiceDep, hub: HubDep, principal: Principal = Writer
) -> dict[str, Any]:
    """Create a session; `training_id`, when given, becomes its id (409 if taken)."""
    spec = _room_within(await read_model(request, SessionCreate), hub.max_per_session)
    if principal.session_id is not None and spec.training_id != principal.session_id:
        raise HTTPException(403, f"this credential may only create session {principal.session_id!r}")
    return _with_spectators(await service.create_session(spec), hub)


@router.get("", responses=errors(422))
async def list_sessions(
    service: ServiceDep,
    hub: HubDep,
    status: Annotated[
        str,
        word_list(STATUS_FILTERS, "comma-separated statuses, 'active' (default: created, running, paused) or 'all'"),
    ] = "active",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
    tag: Annotated[
        list[Tag],
        Query(max_length=20, description="only the sessions with this tag (repeat: with every one of them)"),
    ] = [],  # noqa: B006
    principal: Principal = Reader,
) -> dict[str, Any]:
    """Newest first. Active means created, running or paused. A credential limited to one session lists
    that session only. A password-protected room is listed with its `session_id`, `name`, `status`,
    `created_at`, `updated_at`, `ended_at` and `password_protected`; every other field (`metadata`,
    `algorithm`, `model_generation`, `total_episodes`, `current_episode`, `last_seq`, `message_count`,
    `epoch`, `room_code`, `max_spectators`, `spectators`) is null: its details need its password
    (`X-Room-Password` on `GET /api/training/sessions/{session_id}`), and a list takes none."""
    wanted = parse_word_list("status", status, STATUS_FILTERS) or []
    statuses: list[str] | None = []
    for s in wanted:
        if s == "all":
            statuses = None
            break
        statuses.extend(ACTIVE_STATUSES if s == "active" else [s])  # type: ignore[union-attr]
    sessions, total = await service.list_sessions(statuses, limit, offset, principal.session_id, tag)
    listed = [_as_listed(_with_spectators(s, hub)) for s in sessions]
    return {"sessions": listed, "total": total, "limit": limit, "offset": offset}


LISTED_OF_PROTECTED = frozenset(
    ("session_id", "name", "status", "created_at", "updated_at", "ended_at", "password_protected")
)


def _as_listed(session: dict[str, Any]) -> dict[str, Any]:
    """A protected room's entry keeps only what says which room it is; the rest is null. A list takes no
    password (and is the same for every credential), so it never shows what the room's password guards: its
    configuration, progress, code and audience. Kept by name, so a field added later is hidden by default."""
    if not session.get("password_protected"):
        return session
    return _naming_only(session)


def _naming_only(session: dict[str, Any]) -> dict[str, Any]:
    return {key: value if key in LISTED_OF_PROTECTED else None for key, value in session.items()}


@router.get("/{session_id}", responses=errors(404, 429), dependencies=[ReadsSession])
async def get_session(session_id: str, service: ServiceDep, hub: HubDep) -> dict[str, Any]:
    return _with_spectators(await service.get_session(session_id), hub)


@router.put(
    "/{session_id}",
    openapi_extra=body_schema(SessionUpdate, many=False),
    responses=errors(404, 413, 422, 503),
    dependencies=[Writer],
)
async def update_session(
    session_id: str, request: Request, service: ServiceDep, hub: HubDep, password: RoomPassword = None
) -> dict[str, Any]:
    """Change status, metadata and/or tags; a status change reaches spectators as `training_status`. The
    answer is the session as GET shows it to a caller who may read it (a credential with `read`, or a
    protected room's password); to another writer, only what a list shows of a protected room."""
    update = await read_model(request, SessionUpdate)
    try:  # before the change: a password guess held back (429) changes nothing
        await reads_session(session_id, request, password)
        may_read = True
    except HTTPException as exc:
        if exc.status_code not in (401, 403):
            raise
        may_read = False
    session = _with_spectators(await service.update_session(session_id, update), hub)
    return (
        session if may_read else {key: value if key in LISTED_OF_PROTECTED else None for key, value in session.items()}
    )


@router.delete("/{session_id}", responses=errors(404, 503), dependencies=[Admin])
async def delete_session(session_id: str, service: ServiceDep) -> dict[str, Any]:
    """Remove the session and all its data; its spectators are closed with code 4410."""
    await service.delete_session(session_id)
    return {"session_id": session_id, "deleted": True}


@router.post("/{session_id}/heartbeat", responses=errors(404, 503), dependencies=[Writer])
async def heartbeat(session_id: str, service: ServiceDep) -> dict[str, Any]:
    """The engine is alive. A session silent for `stale_timeout_seconds` turns `stale`; this wakes it."""
    await service.heartbeat(session_id)
    return {"session_id": session_id, "alive": True}
