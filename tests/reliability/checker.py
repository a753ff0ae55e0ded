"""A history checker in the manner of Jepsen's: given what writers were told and what spectators saw,
find every anomaly, per session.

Inputs:
- acknowledgements: each batch the server answered 2xx (session, idempotency key, first and last seq);
- the stored history per session (the seqs the history API returns);
- for each spectator, per session, the seqs it received in arrival order, with its (re)connections:
  `connect(since)` then `receive(seq)`... A spectator that connects with `since=k` expects k+1 next.

Anomalies reported per session:
- lost: acknowledged but never stored, or stored after a spectator's `since` but never delivered to it;
- duplicated: a seq delivered twice to one spectator, or one seq acknowledged under two keys;
- skipped: a gap in what a spectator received (k, then k+2 or more);
- out_of_order: a seq lower than one the spectator had already received;
- contiguous: whether the stored seqs are exactly 1..N.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ack:
    session_id: str
    key: str
    first_seq: int
    last_seq: int


@dataclass
class SpectatorLog:
    """One spectator's view of one session: ('connect', since) and ('receive', seq) events in order."""

    session_id: str
    events: list[tuple[str, int]] = field(default_factory=list)

    def connect(self, since: int) -> None:
        self.events.append(("connect", since))

    def receive(self, seq: int) -> None:
        self.events.append(("receive", seq))


@dataclass
class SessionReport:
    lost: set[int] = field(default_factory=set)
    duplicated: set[int] = field(default_factory=set)
    skipped: list[tuple[int, int]] = field(default_factory=list)
    out_of_order: list[tuple[int, int]] = field(default_factory=list)
    contiguous: bool = True

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.skipped or self.out_of_order) and self.contiguous


def check(acks: list[Ack], stored: dict[str, list[int]], spectators: list[SpectatorLog]) -> dict[str, SessionReport]:
    reports: dict[str, SessionReport] = defaultdict(SessionReport)
    for session_id, seqs in stored.items():
        reports[session_id].contiguous = seqs == list(range(1, len(seqs) + 1))
    owner: dict[tuple[str, int], str] = {}
    for ack in acks:
        report = reports[ack.session_id]
        stored_set = set(stored.get(ack.session_id, ()))
        for seq in range(ack.first_seq, ack.last_seq + 1):
            if seq not in stored_set:
                report.lost.add(seq)
            previous = owner.setdefault((ack.session_id, seq), ack.key)
            if previous != ack.key:
                report.duplicated.add(seq)
    for log in spectators:
        _check_spectator(log, stored.get(log.session_id, []), reports[log.session_id])
    return dict(reports)


def _check_spectator(log: SpectatorLog, stored: list[int], report: SessionReport) -> None:
    seen: set[int] = set()
    expected_from: int | None = None
    last = 0
    for kind, seq in log.events:
        if kind == "connect":
            last = seq
            expected_from = seq if expected_from is None else expected_from
            continue
        if seq in seen:
            report.duplicated.add(seq)
        elif seq < last:
            report.out_of_order.append((last, seq))
        elif seq > last + 1:
            report.skipped.append((last, seq))
        seen.add(seq)
        last = max(last, seq)
    if expected_from is not None:
        end = last  # a spectator is only owed what was stored before its last message
        report.lost.update(s for s in stored if expected_from < s <= end and s not in seen)
