"""The spectator endpoint `/ws/{session_id}?user_name=&types=&since=&epoch=`.

Lifecycle: accept → check the session and the limits → register with the hub (so nothing published
from now on is missed) → welcome (`connection_status`), optional `reset`, `snapshot` → replay from the
store after `since` → live. One sender task per spectator is the only writer to the socket; the
handler reads client messages (`ping`, `subscribe`, `unsubscribe`) and answers through the same queue.
The join (from taking a slot until welcome, snapshot and replay have left the server's buffers) has a
deadline, `ws_join_timeout`: a client that never reads is closed like a slow one and cut off when the close
cannot get out, and from the moment it holds a slot, shutdown and the slow-spectator timer can cut it off too.

Who may watch: ws_access.py. Close codes: 4400 bad query parameter, 4401 no or bad credentials (or a
token that expired, a key revoked), 4403 not allowed, room password missing or wrong, 4404 unknown session,
4429 session full, or too many wrong passwords for the room lately, or this client over a rate limit
(connections, messages, password attempts; `retry_after` in the `error` before the close),
1013 server full or too many connections at once (a retry delay in the reason), 4008 too slow (or the join
not taken within `ws_join_timeout`),
4410 session deleted, 1008 too many invalid messages, 1001 server shutting down,
1011 server error (logged with the spectator's and the session's id).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.websockets import WebSocketDisconnect

from bot.config import Settings
from bot.frames import close_reason, control_frame, error_frame
from bot.schemas import INT64_MAX, MESSAGE_TYPES
from bot.server.api.bodies import ECHO_LIMIT, echoed
from bot.server.edge.rate_limits import RateLimits, client_key
from bot.server.live.closes import (
    CLOSE_BAD_QUERY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_POLICY,
    CLOSE_RATE_LIMITED,
    CLOSE_SLOW,
    CLOSE_TRY_AGAIN_LATER,
)
from bot.server.live.direct import (
    DirectWriter,
    WireFrames,
    cap_send_buffer,
    closing,
    drained,
    forget_handshake,
    forget_headers,
    transport_of,
)
from bot.server.live.hub import Hub, HubFullError
from bot.server.live.shared_reads import JoinReads
from bot.server.live.spectator import ABUSE_GRACE_SECONDS, CONTROL, Spectator, subscribed
from bot.server.live.ws_access import Credentials, CredentialWatch, Refusal, admit
from bot.server.services import TrainingService
from bot.store import SessionNotFoundError

logger = logging.getLogger(__name__)

router = APIRouter()

REPLAY_PAGE = 1000
REPLAY_PASSES = 8
MAX_INVALID_MESSAGES = 100
YIELD_EVERY = 32  # client messages handled before the receiver lets the other tasks run
REPLY_WAIT_STEP = 0.05  # seconds between looks at the queue of a client that does not read its replies
MAX_PING_DATA = 256  # bytes of a ping's `data` echoed in its pong: a client cannot make us hold more
# A snapshot's graphs carry this many newest points per series (a chart's width; GET .../graphs has them
# all): a join then costs the same whatever the graphs hold, and the spectators already there never wait.
SNAPSHOT_GRAPH_POINTS = 1000
ABUSIVE_CLOSES = frozenset({CLOSE_RATE_LIMITED, CLOSE_POLICY})  # closes whose client gets no further reading


class BadParameterError(ValueError):
    pass


def parse_types(raw: Any) -> set[str]:
    types = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise BadParameterError(f"types must be a non-empty list of message types, got {raw!r}")
    cleaned = {t.strip() for t in types if t.strip()}
    unknown = sorted(cleaned - set(MESSAGE_TYPES))
    if unknown or not cleaned:
        raise BadParameterError(
            f"types: unknown message type {unknown[0] if unknown else raw!r}; "
            f"expected any of {', '.join(MESSAGE_TYPES)}"
        )
    return cleaned


class SpectatorQuery(BaseModel):
    """The query string of `/ws/{session_id}`, parsed on one typed path: a bad value closes with 4400 and
    an `error` naming it. Unknown parameters are ignored (a page may add its own)."""

    model_config = ConfigDict(extra="ignore")

    since: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = None
    epoch: Annotated[str, StringConstraints(max_length=64)] | None = None
    types: Annotated[str, StringConstraints(max_length=256)] | None = None
    user_name: Annotated[str, StringConstraints(max_length=128)] | None = None
    password: Annotated[str, StringConstraints(max_length=128)] | None = None


def parse_query(params: Any) -> tuple[int | None, str | None, frozenset[str], str | None]:
    try:
        query = SpectatorQuery.model_validate(dict(params))
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"])
        raise BadParameterError(f"{name}: {first['msg']}, got {first.get('input')!r}") from None
    types = subscribed(parse_types(query.types) if query.types else MESSAGE_TYPES)  # shared: spectate keeps it
    return query.since, query.epoch, types, query.user_name


async def refuse(websocket: WebSocket, session_id: str, code: int, error: str, reason: str, **details: Any) -> None:
    """Send the refusal's `error` and close. The session id comes from the path unchecked (any length): the
    frame shows at most half of ECHO_LIMIT characters of it, as an HTTP 404 does."""
    with contextlib.suppress(Exception):
        await websocket.send_text(error_frame(echoed(session_id, ECHO_LIMIT // 2), error, reason, **details))
        await websocket.close(code, close_reason(reason))


async def _refuse_busy(websocket: WebSocket, session_id: str, why: str, retry_after: float) -> None:
    with contextlib.suppress(Exception):
        shown = echoed(session_id, ECHO_LIMIT // 2)
        await websocket.send_text(error_frame(shown, "try_again_later", why, retry_after=retry_after))
        await websocket.close(CLOSE_TRY_AGAIN_LATER, close_reason(why))


# Its route is the endpoint in the app's routes; live/shortcut.py sends spectators to it past FastAPI's layers.
@router.websocket("/ws/{session_id}")
async def spectate(websocket: WebSocket, session_id: str) -> None:
    """`session_id` may also be a room code; a protected room needs its password (ws_access.py)."""
    service: TrainingService = websocket.state.service
    hub: Hub = websocket.state.hub
    settings: Settings = websocket.state.settings
    await websocket.state.joins.turnstile.through()  # a storm's accepts, a few per loop turn
    await websocket.accept()
    forget_handshake(websocket.scope)
    if (retry_after := websocket.state.connect_rate.admit()) is not None:
        why = f"too many connections at once: try again later, retry in {retry_after:g} s"
        return await _refuse_busy(websocket, session_id, why, retry_after)
    limits: RateLimits = websocket.state.rate_limits
    address = websocket.client.host if websocket.client else None
    presented = Credentials(websocket)
    await presented.verify()  # a connection counts against a verified credential, else the address
    if (wait := await limits.check("ws_connect", client_key(presented.principal, address))) is not None:
        why = f"too many connections from this client: retry in {wait:g} s"
        return await refuse(websocket, session_id, CLOSE_RATE_LIMITED, "rate_limited", why, retry_after=wait)
    cap_send_buffer(websocket.scope, settings.ws_send_buffer)
    try:
        since, epoch, types, user_name = parse_query(websocket.query_params)
    except BadParameterError as exc:
        return await refuse(websocket, session_id, CLOSE_BAD_QUERY, "invalid_parameter", str(exc))
    try:
        await presented.complete(websocket)  # before any lookup (ws_access.py)
        try:
            session = await websocket.state.joins.find_spectated(session_id)
        except SessionNotFoundError as exc:
            raise presented.unknown_session(exc) from None
        session_id = session["session_id"]
        principal = await admit(websocket, session, presented, client_key(None, address))
    except Refusal as exc:
        return await refuse(websocket, session_id, exc.code, exc.error, exc.reason, **exc.details)
    except WebSocketDisconnect:
        return  # it left while its credentials were waited for: nothing went wrong here
    who = client_key(principal, address)  # its messages count against the credential it was let in with
    incarnation = (session["created_at"], session["epoch"])
    spectator = Spectator(session_id, user_name, settings.max_backlog, types, incarnation, settings.max_backlog_bytes)
    spectator.direct = DirectWriter.attach(websocket.scope, service.stats)
    try:
        hub.add(spectator, limit=session["max_spectators"])
    except HubFullError as exc:
        return await refuse(websocket, session_id, exc.code, exc.error, exc.reason)
    if (transport := transport_of(websocket.scope)) is not None:
        spectator.cut_off = transport.abort  # _serve adds its tasks; until then shutdown and timers can cut it off
    join_timeout = settings.ws_join_timeout
    overdue = asyncio.get_running_loop().call_later(join_timeout, _join_overdue, spectator, join_timeout)
    credentials: CredentialWatch = websocket.state.credential_watch
    credentials.add(spectator, principal)
    forget_headers(websocket.scope)  # let in: nothing reads them again
    try:
        await hub.watch(spectator)
        await _serve(websocket, spectator, service, hub, since, epoch, who, overdue.cancel)
    except (WebSocketDisconnect, SessionNotFoundError):
        pass
    except Exception as exc:
        context = {"session_id": session_id, "spectator_id": spectator.id}
        if closing(websocket.scope):  # the client broke the protocol (or left) under a send: its close is out
            logger.debug("spectator %s of session %r: %r on a closing connection", spectator.id, session_id, exc)
            return
        # A broker or store failure, or a bug: said in the log with who it hit, and to the spectator.
        logger.exception("spectator %s of session %r failed", spectator.id, session_id, extra=context)
        why = f"server error ({type(exc).__name__}); reconnect with since= to resume"
        await refuse(websocket, session_id, CLOSE_INTERNAL_ERROR, "internal_error", why)
    finally:
        overdue.cancel()
        credentials.discard(spectator)
        await hub.remove(spectator)


def _join_overdue(spectator: Spectator, timeout: float) -> None:
    """The join deadline ran out: the spectator is closed like a slow one, and cut off when the close cannot get
    out (it does not read), so a client that never reads its welcome, snapshot or replay holds no slot."""
    sid = spectator.session_id
    context = {"session_id": sid, "spectator_id": spectator.id}
    logger.info(
        "spectator %s of session %r did not take its join within %g s", spectator.id, sid, timeout, extra=context
    )
    why = f"too slow: the join (welcome, snapshot, replay) was not read within {timeout:g} s; resume with since="
    spectator.request_close(CLOSE_SLOW, why)


async def _serve(
    websocket: WebSocket,
    spectator: Spectator,
    service: TrainingService,
    hub: Hub,
    since: int | None,
    epoch: str | None,
    who: str,
    joined: Callable[[], object],
) -> None:
    """`joined` is called once the join is over (the join deadline is then lifted)."""
    since = await _greet(websocket, spectator, service, hub, since, epoch)
    sender = asyncio.create_task(_send(websocket, spectator, service, since is not None, joined))
    receiver = asyncio.create_task(_receive(websocket, spectator, hub.slow_timeout, websocket.state.rate_limits, who))
    transport = transport_of(websocket.scope)

    def cut_off() -> None:
        """A spectator asked to close whose close cannot get out (a peer that stopped reading): the
        connection is aborted, unsent data and all, so it frees its slot and its socket now."""
        if transport is not None:
            transport.abort()
        sender.cancel()
        receiver.cancel()

    spectator.cut_off = cut_off
    try:
        await _either(sender, receiver)
    finally:
        for task in (sender, receiver):
            task.cancel()
        outcomes = await asyncio.gather(sender, receiver, return_exceptions=True)
        if spectator.close_request is not None and not (transport is not None and transport.is_closing()):
            # The sender could not deliver the close: try once more, briefly.
            with contextlib.suppress(Exception):
                code, reason = spectator.close_request
                await asyncio.wait_for(websocket.close(code, close_reason(reason)), 1.0)
    for outcome in outcomes:
        if isinstance(outcome, Exception) and not isinstance(outcome, WebSocketDisconnect | OSError):
            if closing(websocket.scope):
                # A send after the server answered a client's protocol error with its close (1002, 1007, 1009)
                # fails with the server's RuntimeError: the client's doing, not ours.
                return
            raise outcome


async def _either(first: asyncio.Task[None], second: asyncio.Task[None]) -> None:
    """Until either task is done: asyncio.wait's set, waiter and callbacks, a kilobyte held for a spectator's
    whole life, made small."""
    either = asyncio.get_running_loop().create_future()

    def done(_: object) -> None:
        if not either.done():
            either.set_result(None)

    first.add_done_callback(done)
    second.add_done_callback(done)
    try:
        await either
    finally:
        first.remove_done_callback(done)
        second.remove_done_callback(done)


async def _greet(
    websocket: WebSocket, spectator: Spectator, service: TrainingService, hub: Hub, since: int | None, epoch: str | None
) -> int | None:
    """Welcome, optional reset, snapshot; returns the `since` to replay from (None: live only).

    A function of its own so that the snapshot it reads is freed, not kept for the connection's life.
    """
    # Read the state after registering with the hub: the snapshot and the live stream meet with no gap.
    state = await websocket.state.joins.state(spectator.session_id)
    session = {**state.session, "spectators": hub.count(spectator.session_id)}
    if "max_spectators" in session:  # as enforced, as GET shows it
        session["max_spectators"] = hub.room_limit(session["max_spectators"])
    sid = spectator.session_id
    frames = [
        control_frame(
            "connection_status",
            sid,
            {
                "event": "connected",
                "spectator_id": spectator.id,
                "user_name": spectator.user_name,
                "spectator_count": session["spectators"],
                "epoch": session["epoch"],
                "last_seq": session["last_seq"],
                "types": sorted(spectator.queue.types),
            },
        )
    ]
    if since is not None and ((epoch is not None and epoch != session["epoch"]) or since > session["last_seq"]):
        why = (
            "epoch changed: the session id was deleted and created again"
            if epoch is not None and epoch != session["epoch"]
            else (f"since={since} is beyond this session's last seq {session['last_seq']}")
        )
        frames.append(control_frame("reset", sid, {"epoch": session["epoch"], "reason": why}))
        since = 0
    snapshot = {
        "session": session,
        "latest_metrics": state.latest_metrics,
        "latest_decision": state.latest_decision,
        "graphs": state.graphs,
    }
    frames.append(control_frame("snapshot", sid, snapshot))
    if not await _send_at_once(websocket, spectator, frames):
        for frame in frames:
            await websocket.send_text(frame)
    spectator.delivered_through = session["last_seq"] if since is None else since
    return since


async def _replay(websocket: WebSocket, spectator: Spectator, service: TrainingService) -> None:
    """Everything after `since` from the store; again while live frames overflowed the queue meanwhile.
    Pages are read once for all the spectators of the session replaying at the same time (a reconnect storm)."""
    joins: JoinReads = websocket.state.joins
    for _ in range(REPLAY_PASSES):
        more = True
        while more:
            types = sorted(spectator.queue.types)
            page, more = await joins.replay_page(spectator.session_id, types, spectator.delivered_through)
            frames = page.after(spectator.delivered_through)
            if spectator.close_request is not None:
                return  # closed meanwhile (the join deadline, a shutdown): its close goes out next
            direct, since = spectator.direct, spectator.delivered_through
            if frames and direct is not None and direct.write_wire(page.wire_after(since), len(frames)):
                # The page's frames in one write, framed once for every spectator of a storm (a third of the
                # server's time had gone to a write per frame); the next write waits for this one to drain.
                spectator.delivered_through = frames[-1][0]
                await drained(websocket.scope)
                continue
            for seq, _type, frame in frames:
                if spectator.close_request is not None:
                    return
                await websocket.send_text(frame)
                spectator.delivered_through = seq
            service.stats.messages_out += len(frames)
        queue = spectator.queue
        if not queue.dropped or queue.dropped_last <= spectator.delivered_through:
            return


async def _send_at_once(websocket: WebSocket, spectator: Spectator, frames: list[str]) -> bool:
    """The welcome and snapshot in one write, where the connection can take them now; False when they must go
    one by one through ASGI. The next write waits until this one has drained below the high-water mark."""
    if spectator.direct is None or not spectator.direct.write(frames, WireFrames()):
        return False
    await drained(websocket.scope)
    return True


async def _send(
    websocket: WebSocket, spectator: Spectator, service: TrainingService, replay: bool, joined: Callable[[], object]
) -> None:
    if replay:
        await _replay(websocket, spectator, service)
    # The join is over once its frames have left the server's buffers: a snapshot is handed over in one write
    # that returns at once, and a peer that never reads would otherwise be taken for live.
    await drained(websocket.scope)
    joined()
    queue, sid = spectator.queue, spectator.session_id
    while spectator.close_request is None:
        if len(queue.items) > 1 and spectator.write_queued(WireFrames()):
            await drained(websocket.scope)
            continue
        item = queue.pop()
        if item is None:
            spectator.wake.clear()
            spectator.idle = True  # the hub may now write to the socket itself (Spectator.settle)
            try:
                await spectator.wake.wait()
            finally:
                spectator.idle = False
            continue
        seq, frame = item
        if seq != CONTROL:
            if seq <= spectator.delivered_through:
                continue  # already sent by the replay
            lag = queue.take_lag(spectator.delivered_through)
            if lag is not None:
                await websocket.send_text(control_frame("lag", sid, lag.as_data()))
            spectator.delivered_through = seq
        await websocket.send_text(frame)
        service.stats.messages_out += 1
    lag = queue.take_lag(spectator.delivered_through)
    if lag is not None:
        await websocket.send_text(control_frame("lag", sid, lag.as_data()))
    for seq, frame in queue.items:  # replies still queued (the `error` that says why it closes among them)
        if seq == CONTROL:
            await websocket.send_text(frame)
    code, reason = spectator.close_request
    await websocket.close(code, close_reason(reason))
    if code in ABUSIVE_CLOSES and (transport := transport_of(websocket.scope)) is not None:
        # uvicorn reads on, for the peer's close reply; a client flooding us would be parsed frame by frame
        # until it is cut off. It gets no more reading: its close and its `error` are on their way.
        transport.pause_reading()
    spectator.close_request = None


async def _receive(
    websocket: WebSocket, spectator: Spectator, slow_timeout: float, limits: RateLimits, who: str
) -> None:
    """Client messages, answered through the queue; `who` is the client as the rate limits count it."""
    invalid = 0
    for received in itertools.count(1):
        if received % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # uvicorn hands over queued messages without a pause: let others run
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if limits.enabled and (wait := await limits.check("ws_message", who)) is not None:
            why = f"too many messages from this client: retry in {wait:g} s"
            spectator.offer(CONTROL, "reply", error_frame(spectator.session_id, "rate_limited", why, retry_after=wait))
            spectator.request_close(CLOSE_RATE_LIMITED, why, ABUSE_GRACE_SECONDS)
            return
        raw = message.get("text") if message.get("text") is not None else message.get("bytes")
        reply, ok = handle_client_message(spectator, raw)
        if not ok:
            invalid += 1
            if invalid > MAX_INVALID_MESSAGES:
                spectator.request_close(
                    CLOSE_POLICY, f"more than {MAX_INVALID_MESSAGES} invalid messages", ABUSE_GRACE_SECONDS
                )
                return
        spectator.offer(CONTROL, "reply", reply)
        spectator.settle(asyncio.get_running_loop().time(), slow_timeout, WireFrames())
        if len(spectator.queue.items) >= spectator.queue.maxsize:
            await _wait_for_room(spectator, slow_timeout, lambda: closing(websocket.scope))


async def _wait_for_room(spectator: Spectator, slow_timeout: float, gone: Callable[[], bool]) -> None:
    """A client that sends faster than it reads the replies is read no further until they have gone out:
    its messages back up in its own buffers, not the server's. If it does not catch up within the slow
    timeout, its connection is aborted at once: a close could not get out to a peer that does not read,
    and while the close handshake waited, the protocol would go on reading and discarding its flood."""
    queue, waited = spectator.queue, 0.0
    while len(queue.items) > queue.maxsize // 2 and spectator.close_request is None:
        if gone():
            return  # the connection is going (a protocol error): its disconnect is the next message to read
        if waited >= slow_timeout:
            spectator.request_close(CLOSE_SLOW, "too slow: it sends messages and does not read the replies")
            if spectator.cut_off is not None:
                spectator.cut_off()
            return
        await asyncio.sleep(REPLY_WAIT_STEP)
        waited += REPLY_WAIT_STEP


def _json_size(value: Any) -> int:
    """Its size as JSON; a value orjson cannot write (nested past 255 levels) counts as too big."""
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return MAX_PING_DATA + 1


def handle_client_message(spectator: Spectator, raw: str | bytes | None) -> tuple[str, bool]:
    """Answer one client message: (reply, valid). Never raises on bad input; the connection stays up."""
    sid = spectator.session_id
    try:
        message = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return error_frame(sid, "invalid_json", "message is not valid JSON; expected an object with a 'type'"), False
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return error_frame(sid, "invalid_message", "message must be a JSON object with a string 'type'"), False
    kind = message["type"]
    if kind == "ping":
        echo = message.get("data")
        if echo is not None and _json_size(echo) > MAX_PING_DATA:
            return error_frame(
                sid, "ping_too_big", f"a ping's data is echoed back: at most {MAX_PING_DATA} bytes"
            ), False
        return control_frame("pong", sid, {"echo": echo}), True
    if kind == "auth":  # credentials come first (ws_access.py); once in, or with auth off, there is nothing to do
        return control_frame("auth", sid, {"status": "not needed: already admitted"}), True
    if kind in ("subscribe", "unsubscribe"):
        try:
            types = parse_types(message.get("types"))
        except BadParameterError as exc:
            return error_frame(sid, "invalid_types", str(exc)), False
        if kind == "subscribe":
            spectator.queue.types |= types
        else:
            spectator.queue.types -= types
        return control_frame("subscriptions", sid, {"types": sorted(spectator.queue.types)}), True
    message_text = f"unknown message type {kind!r}; expected ping, subscribe, unsubscribe or auth"
    return error_frame(sid, "unknown_message_type", message_text), False
