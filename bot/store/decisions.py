"""The policy over time, from a session's stored decisions: per bucket of seqs, how often each action was
chosen and the mean confidence. Read a page at a time and folded as it goes, so a million decisions cost
a bounded amount of memory, and the answer has at most `buckets` rows whatever the session's length. A bucket
holds at least `least` decisions (a neighbour's are merged in): with a decision a second among dense metrics,
a bucket of one decision read 0 or 100 %."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from bot.store.tables import NOT_METRICS, messages

PAGE = 5000
TOP_ACTIONS = 10  # the most chosen actions are named; the rest are counted as "other"


def read_decisions(conn: Connection, session_pk: int, buckets: int, least: int = 1) -> dict[str, Any]:
    m = messages.c
    mine = (m.session_pk == session_pk, m.type == "bot_decision", NOT_METRICS)
    first, last, total = conn.execute(select(func.min(m.seq), func.max(m.seq), func.count()).where(*mine)).one()
    if not total:
        return {"total": 0, "actions": [], "buckets": []}
    buckets = max(1, min(buckets, total // least))
    width = max(1, -(-(last - first + 1) // buckets))  # seqs per bucket, rounded up
    rows: list[dict[str, Any]] = []
    overall: Counter[str] = Counter()
    after = first - 1
    while True:
        page = conn.execute(
            select(m.seq, m.episode, m.ts, m.data).where(*mine, m.seq > after).order_by(m.seq).limit(PAGE)
        ).all()
        for seq, episode, ts, text in page:
            index = (seq - first) // width
            if not rows or rows[-1]["index"] != index:
                rows.append({"index": index, "count": 0, "chosen": Counter(), "confidence": [0.0, 0]})
            row = rows[-1]
            row["count"] += 1
            row["last_seq"], row["episode"], row["timestamp"] = seq, episode, ts
            data = orjson.loads(text)
            if data.get("selected_action") is not None:
                action = str(data["selected_action"])
                row["chosen"][action] += 1
                overall[action] += 1
            if data.get("confidence_score") is not None:
                row["confidence"][0] += data["confidence_score"]
                row["confidence"][1] += 1
        if len(page) < PAGE:
            break
        after = page[-1][0]
    named = [action for action, _ in overall.most_common(TOP_ACTIONS)]
    return {
        "total": total,
        "actions": named + (["other"] if len(overall) > len(named) else []),
        "buckets": [_bucket(row, first, width, named) for row in _merged(rows, least)],
    }


def _merged(rows: list[dict[str, Any]], least: int) -> list[dict[str, Any]]:
    """The buckets, each with at least `least` decisions where there are that many: one with fewer takes in
    the next; a short last one joins the one before it."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if out and out[-1]["count"] < least:
            _absorb(out[-1], row)
        else:
            out.append(row)
    if len(out) > 1 and out[-1]["count"] < least:
        _absorb(out[-2], out.pop())
    return out


def _absorb(into: dict[str, Any], row: dict[str, Any]) -> None:
    into["count"] += row["count"]
    into["chosen"].update(row["chosen"])
    into["confidence"] = [into["confidence"][0] + row["confidence"][0], into["confidence"][1] + row["confidence"][1]]
    into["last_seq"], into["episode"], into["timestamp"] = row["last_seq"], row["episode"], row["timestamp"]


def _bucket(row: dict[str, Any], first: int, width: int, named: list[str]) -> dict[str, Any]:
    chosen: Counter[str] = row["chosen"]
    counts = {action: chosen.get(action, 0) for action in named}
    other = sum(chosen.values()) - sum(counts.values())
    if other:
        counts["other"] = other
    total, n = row["confidence"]
    return {
        "first_seq": first + row["index"] * width,
        "last_seq": row["last_seq"],
        "episode": row["episode"],
        "timestamp": row["timestamp"],  # of its last decision, epoch seconds (the engine's time)
        "decisions": row["count"],
        "chosen": counts,
        "mean_confidence": total / n if n else None,
    }
