"""The background sender: batches log calls and delivers them, so the training loop never waits.

The caller only appends to a deque (no lock, no wake-up per call). This thread wakes every
`flush_interval`, or when a batch is full, turns what was logged into records (one per session and
message type, at most `batch_size` items, each with its own idempotency key), and delivers them over
one kept-alive connection. When the server is away it retries with exponential backoff and jitter,
and once more than `max_pending` points wait in memory it spills them to the disk spool, which is
uploaded first when the server is back.

An exit (leaving a run's block, closing the client) settles within one deadline: it delivers until then,
and what is still in memory is written to the spool before it. While older records wait in the spool
(they go first: a server's records keep their order), the new ones join them there at once, so an upload
of another run's hours of data can delay the new run's, never lose it.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import count
from typing import Any

import httpx

from .delivery import OnDelivered, Outcome, deliver, upload_spool
from .spool import Spool

SPILL_MARGIN = 0.25  # of an exit's time, kept for writing what is left to the spool
SPILL_GRACE = 10.0  # past an exit's deadline, waited for a spool write still under way: late, never lost

logger = logging.getLogger(__name__)

Op = tuple[Any, ...]  # ("create", sid, spec) | ("data", sid, type, item) | ("status", sid, update)


class Sender:
    def __init__(
        self,
        http: httpx.Client,
        spool: Spool,
        url: str,
        *,
        batch_size: int,
        flush_interval: float,
        max_pending: int,
        max_backoff: float = 5.0,
        heartbeat_interval: float = 10.0,
        on_delivered: OnDelivered | None = None,
    ) -> None:
        self.http = http
        self.spool = spool
        self.url = url  # the server: spooled records carry it, and only its records are uploaded from here
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.max_backoff = max_backoff
        self.ops: deque[Op] = deque()
        self.outbox: deque[dict[str, Any]] = deque()
        self.sessions: dict[str, dict[str, Any]] = {}  # session id -> spec, to re-create a lost session
        self.open_runs: set[str] = set()  # sessions inside their `with` block: they get heartbeats
        self.heartbeat_interval = heartbeat_interval
        self.on_delivered = on_delivered
        self._last_heartbeat = time.monotonic()
        self._keys = count(1)
        self._token = secrets.token_hex(6)
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._stop = threading.Event()
        self._busy = False
        self._retry_at = 0.0
        self._server_wait = 0.0  # monotonic time before which the server asked us not to send (Retry-After)
        self._backoff = 0.0
        self._deadline: float | None = None  # set while an exit settles: no request may run past it
        self.exit_deadline: float | None = None  # the last settle's: a close right after keeps to it
        self.left_in_spool = 0  # this server's records in the spool when the thread stopped
        self.delivered = 0
        self.rejected = 0
        self.last_rejection: str | None = None  # the server's reason for the latest refused batch
        self.credential_refused: str | None = None  # why the server refuses our credential, while it does
        self._held = 0  # this server's spooled records that our credential may not send (a 401 or 403)
        self._spool_retry_at = 0.0  # monotonic time before which those are not asked about again
        self.server_up = True
        self._thread = threading.Thread(target=self._run, name="tms-sdk-sender", daemon=True)
        self._thread.start()

    # -- called from the training loop ---------------------------------------------------------------

    def put(self, op: Op) -> None:
        self.ops.append(op)  # deque.append is atomic: no lock on the caller's path
        if len(self.ops) >= self.batch_size or op[0] != "data":
            self._wake.set()  # a full batch, or a create or status change: rare, and awaited by spectators

    def pending(self) -> int:
        return len(self.ops) + sum(len(r.get("items", ())) or 1 for r in list(self.outbox)) + self._busy

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything logged so far is delivered; False when `timeout` ran out first. A wait the
        server asked for (Retry-After) is honoured, within `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._retry_at = self._server_wait  # a flush tries now, not after our own backoff
        self._spool_retry_at = 0.0
        self._wake.set()
        return self._wait(lambda: not self.pending(), deadline)

    def settle(self, deadline: float) -> bool:
        """An exit: deliver everything for this server, what was logged and what waits in the spool, until
        `deadline` (a monotonic time); what is still in memory by then is in the spool when this returns, so
        nothing is lost whatever the process does next. True when everything was delivered."""
        try:
            return self._settle(deadline)
        finally:
            self._deadline = None

    def close(self, flush_timeout: float) -> int:
        """Settle, then stop: the sender thread, the only writer of the spool, writes what is left there.
        Right after a run's exit, with nothing logged since, it keeps to that exit's deadline: leaving the
        block and then the interpreter takes flush_timeout in all, not twice. Returns how many records for
        this server wait in the spool."""
        deadline = time.monotonic() + flush_timeout
        if self.exit_deadline is not None and not self.pending():
            deadline = min(deadline, self.exit_deadline)
        self._settle(deadline)
        self._stop.set()
        self._wake.set()
        self._wait_for_spill(lambda: not self.running, deadline)
        if self.running:
            if self.pending():
                logger.warning("metrics sender did not stop in time; records still in memory are lost at exit")
            return self.spool.written
        return self.left_in_spool

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _settle(self, deadline: float) -> bool:
        self.exit_deadline = deadline
        self._deadline = deadline - SPILL_MARGIN  # requests from now on end before it
        self._retry_at = self._server_wait  # try now, not after our own backoff
        self._spool_retry_at = 0.0
        self._wake.set()
        if self._wait(self._settled, self._deadline):
            return True
        self._wake.set()  # the sending time is over: the thread writes what is in memory to the spool
        self._wait_for_spill(lambda: not self.pending(), deadline)
        return False

    def _wait_for_spill(self, done: Callable[[], bool], deadline: float) -> None:
        """Until `done()`: by `deadline`, or later on a machine too loaded to write the spool in the margin
        kept for it. The deadline bounds the network; a local write is waited for (up to SPILL_GRACE), since
        returning before it would lose the run's end to a kill -9 or to the interpreter's exit."""
        if self._wait(done, deadline) or not self.running:
            return
        logger.warning("metrics: writing the spool takes longer than the exit's deadline; waiting for it")
        if not self._wait(done, deadline + SPILL_GRACE):
            logger.warning("metrics: the spool was not written within %.0f s more", SPILL_GRACE)

    def _settled(self) -> bool:
        """Everything delivered, but for spooled records that wait for another credential: no sooner for waiting."""
        return not self.pending() and self.spool.pending(self.url) <= self._held

    def _wait(self, done: Callable[[], bool], deadline: float | None) -> bool:
        """Until `done()`, or False at `deadline` (a monotonic time; None: no end)."""
        with self._idle:
            while not done():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(0.05 if remaining is None else min(remaining, 0.05))
        return True

    # -- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self._cycle()
            except Exception:  # never let the sender die: the training loop relies on it
                logger.exception("metrics sender: unexpected error; retrying")
                self._fail("unexpected error")
            with self._idle:
                self._idle.notify_all()
        # Stopping: this thread is the only writer of the spool, so what is left is written here, never by
        # the thread that called close() while a request of ours may still be in flight.
        self._spill()
        self.left_in_spool = self.spool.pending(self.url)
        self.spool.close()
        with self._idle:
            self._idle.notify_all()

    def _request_timeout(self) -> float | None:
        """No request outlives an exit's deadline (None: the client's own timeout)."""
        deadline = self._deadline  # read once: settle() clears it from another thread
        return None if deadline is None else max(0.05, deadline - time.monotonic())

    def _past_deadline(self) -> bool:
        deadline = self._deadline
        return deadline is not None and time.monotonic() >= deadline

    def _upload_should_stop(self) -> bool:
        """Asked between two spooled records. An upload may hold hours of another run: it gives way to a
        stop, to the end of an exit's sending time, to an exit's new records (they join the spool first),
        and to memory past its bound (spilled behind it)."""
        if self._stop.is_set() or self._past_deadline():
            return True
        if self._deadline is not None:
            return bool(self.ops or self.outbox)
        return len(self.ops) > self.max_pending

    def _cycle(self) -> None:
        self._form_records()
        settling = self._deadline is not None
        if self._past_deadline():
            self._spill()  # the exit's sending time is over: what is left goes to the spool now
            return
        if settling and self.outbox and self.spool.pending(self.url):
            self._spill()  # an exit behind older spooled records: the new ones are kept first, behind them
        if time.monotonic() < self._retry_at:
            self._spill_if_over_bound()
            return
        # What we (or an earlier run) spilled for this server goes first.
        if self.spool.pending(self.url) and time.monotonic() >= self._spool_retry_at:
            self._spill_if_over_bound()
            report = upload_spool(
                self.http, self.spool, self.url, self.on_delivered, self._request_timeout, self._upload_should_stop
            )
            if report.stopped:
                self._wake.set()  # the next cycle at once: it handles what stopped the upload
                return
            if report.remaining > report.held:
                self._fail("server unavailable while uploading the spool", report.retry_after)
                return
            self._hold(report.held, report.refused_credential)
        while self.outbox and not self._stop.is_set() and not self._past_deadline():
            record = self.outbox[0]
            self._busy = True
            try:
                result = deliver(self.http, record, self._request_timeout())
            finally:
                self._busy = False
            if result.outcome in (Outcome.UNAUTHORIZED, Outcome.FORBIDDEN):
                self._refused(result.reason)
            if result.outcome in (Outcome.RETRY, Outcome.UNAUTHORIZED, Outcome.FORBIDDEN):
                self._fail(result.reason, result.retry_after)
                self._spill_if_over_bound()
                return
            self.outbox.popleft()
            if result.outcome is Outcome.REJECTED:
                self.rejected += 1
                self.last_rejection = result.reason
                logger.error(
                    "metrics server rejected a %s batch for %r: %s",
                    record.get("type", record["kind"]),
                    record["session_id"],
                    result.reason,
                )
                self.spool.dead_letter(record, self.url, result.reason)
            else:
                self.delivered += len(record.get("items", ())) or 1
                if self.on_delivered is not None:
                    self.on_delivered(record, result.answer)
            self._ok()
        self._heartbeat()

    def _heartbeat(self) -> None:
        """Tell the server the engine is alive, so an idle but healthy run is not marked stale."""
        now = time.monotonic()
        if now - self._last_heartbeat < self.heartbeat_interval or self.outbox or self._stop.is_set():
            return
        self._last_heartbeat = now
        timeout = self._request_timeout()
        for session_id in list(self.open_runs):
            try:
                self.http.post(
                    f"/api/training/sessions/{session_id}/heartbeat",
                    timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
                )
            except httpx.HTTPError as exc:
                logger.debug("heartbeat for %r failed: %s", session_id, exc)

    def _ok(self) -> None:
        if not self.server_up:
            logger.info("metrics server reachable again")
        self.server_up = True
        self.credential_refused = None
        self._backoff = 0.0

    def _refused(self, reason: str) -> None:
        """The server refuses our credential (401 or 403): said once, as an error, since retrying cannot help
        until the key changes; the batches are kept (memory, then the spool) and retried with the back-off of
        an absent server, for a later client with a good key to deliver if this one never can."""
        if self.credential_refused is None:
            logger.error(
                "metrics server at %s refused the credential (%s): set TMS_API_KEY or api_key= to a key with the "
                "write scope; the batches are kept",
                self.url,
                reason,
            )
        self.credential_refused = reason
        self.server_up = False  # this error says it all: no "unavailable" warning on top

    def _hold(self, held: int, reason: str) -> None:
        """Spooled records our credential may not send wait for another one (`bot sync` with a key that may):
        asked about again after the longest back-off, not every cycle, and this run's own records go on."""
        if held and held != self._held:
            logger.warning("metrics: %d spooled batch(es) for %s wait for another key (%s)", held, self.url, reason)
        self._held = held
        self._spool_retry_at = time.monotonic() + self.max_backoff if held else 0.0

    def _fail(self, reason: str, retry_after: float | None = None) -> None:
        if self.server_up:
            logger.warning("metrics server unavailable (%s); retrying in the background", reason)
        self.server_up = False
        self._backoff = min(self.max_backoff, max(0.1, self._backoff * 2))
        now = time.monotonic()
        self._server_wait = now + retry_after if retry_after is not None else 0.0
        self._retry_at = max(now + self._backoff * (0.5 + random.random() / 2), self._server_wait)

    def _spill(self) -> None:
        """Everything in memory to the spool, in one transaction, in the order it was logged."""
        self._form_records()
        self._move_outbox_to_spool()

    def _spill_if_over_bound(self) -> None:
        self._form_records()
        if sum(len(r.get("items", ())) for r in self.outbox) > self.max_pending:
            spilled = self._move_outbox_to_spool()
            logger.warning("metrics server away: spilled %d batches to %s", spilled, self.spool.path)

    def _move_outbox_to_spool(self) -> int:
        """The records leave memory once they are written: until then they count as pending, so an exit
        waiting for the spool waits for the write, not for the records to leave the outbox."""
        records = list(self.outbox)
        self.spool.append(records, self.url)
        self._spool_retry_at = 0.0  # ours go before anything newer: the next cycle uploads them
        for _ in records:
            self.outbox.popleft()
        return len(records)

    def _form_records(self) -> None:
        """Turn logged ops into records: data grouped per (session, type) between creates and statuses."""
        open_records: dict[tuple[str, str], dict[str, Any]] = {}
        while self.ops:
            op = self.ops.popleft()
            kind, session_id = op[0], op[1]
            if kind == "data":
                record = open_records.get((session_id, op[2]))
                if record is None or len(record["items"]) >= self.batch_size:
                    record = {
                        "kind": "data",
                        "session_id": session_id,
                        "type": op[2],
                        "key": f"{self._token}-{next(self._keys)}",
                        "items": [],
                        "session": self.sessions.get(session_id),
                    }
                    open_records[(session_id, op[2])] = record
                    self.outbox.append(record)
                record["items"].append(op[3])
                continue
            open_records.clear()  # later data goes after this create or status change
            if kind == "create":
                self.sessions[session_id] = op[2]
                self.outbox.append({"kind": "create", "session_id": session_id, "session": op[2]})
            else:
                self.outbox.append({"kind": "status", "session_id": session_id, "update": op[2]})
