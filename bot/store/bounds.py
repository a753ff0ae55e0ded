"""How much one session may grow in breadth: distinct metric series and graphs.

Each point is bounded by its schema (256 custom metrics, 64 series per graph update), but nothing bounded a
session's total: 200,000 custom metric names were accepted, each a series of its own, and every graph is
carried by each spectator's snapshot. Past `max_series` or `max_graphs`, a batch that would add one more
is refused whole (422 naming the limit) before it writes anything; what the session already holds stays.

The names a session is known to have are remembered by the writer, so a batch of known names costs no
query; a new name costs one. Several instances each remember their own, so on a shared database a session
can pass its limit by what the others added since this writer last looked (at most a batch's worth each).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from bot.store.errors import SessionLimitError
from bot.store.tables import graphs, series_rollups

FORGET_AFTER_SESSIONS = 10_000  # sessions remembered before the memory starts afresh


@dataclass
class SessionBounds:
    max_series: int = 1000
    max_graphs: int = 100
    # (session pk, its epoch, "series" or "graphs") -> names it holds; the epoch, because a deleted session's pk
    # can be given to the next one
    _known: dict[tuple[int, str, str], set[str]] = field(default_factory=dict, repr=False)

    def check_series(self, conn: Connection, pk: int, epoch: str, names: Iterable[str]) -> None:
        self._check(conn, (pk, epoch, "series"), set(names), self.max_series)

    def check_graphs(self, conn: Connection, pk: int, epoch: str, graph_ids: Iterable[str]) -> None:
        self._check(conn, (pk, epoch, "graphs"), set(graph_ids), self.max_graphs)

    def _check(self, conn: Connection, key: tuple[int, str, str], names: set[str], limit: int) -> None:
        pk, _, kind = key
        known = self._known.get(key)
        if known is not None and names <= known:
            return
        if len(self._known) >= FORGET_AFTER_SESSIONS:
            self._known.clear()
        stored = _stored_names(conn, pk, kind)
        new = names - stored
        if len(stored) + len(new) > limit:
            what = "metric series" if kind == "series" else "graphs"
            first = sorted(new)[0]
            raise SessionLimitError(
                f"this session has {len(stored)} {what} and the batch adds {len(new)} (first new: "
                f"{first!r}); at most {limit} per session (max_{kind}_per_session)",
                first,
            )
        self._known[key] = stored | new


def _stored_names(conn: Connection, pk: int, kind: str) -> set[str]:
    if kind == "series":
        c = series_rollups.c
        query = select(c.metric).distinct().where(c.session_pk == pk)
    else:
        query = select(graphs.c.graph_id).where(graphs.c.session_pk == pk)
    return set(conn.execute(query).scalars())
