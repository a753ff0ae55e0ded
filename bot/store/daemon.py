"""The training daemon's configuration and runs in the store (bot/server/training/daemon.py uses them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from bot.frames import iso
from bot.store.tables import daemon_config, daemon_runs
from bot.store.writes import Applied, Job

# `enabled` has no default of its own: until a configuration is stored, it is the server's setting
# (TMS_TRAINING_DAEMON), so that a fresh server starts no training by itself.
DEFAULT_CONFIG = {"interval_minutes": 60.0, "episodes_per_run": 2, "scenario": "mock_cache"}


def read_config(conn: Connection, default_enabled: bool = False) -> dict[str, Any]:
    row = conn.execute(select(daemon_config).where(daemon_config.c.id == 1)).first()
    if row is None:
        return {"enabled": default_enabled, **DEFAULT_CONFIG, "updated_at": None}
    return {
        "enabled": bool(row.enabled),
        "interval_minutes": row.interval_minutes,
        "episodes_per_run": row.episodes_per_run,
        "scenario": row.scenario,
        "updated_at": row.updated_at,
    }


@dataclass
class PutConfig(Job):
    """Change some of the configuration; the rest keeps its stored (or default) value."""

    changes: dict[str, Any]
    default_enabled: bool = False

    def apply(self, conn: Connection, now: float) -> Applied:
        current = read_config(conn, self.default_enabled)
        exists = current.pop("updated_at") is not None
        values = {**current, **self.changes, "updated_at": now}
        if exists:
            conn.execute(update(daemon_config).where(daemon_config.c.id == 1).values(values))
        else:
            conn.execute(insert(daemon_config).values(id=1, **values))
        return Applied(values)


def run_dict(row: Any) -> dict[str, Any]:
    duration = row.ended_at - row.started_at if row.ended_at is not None else None
    return {
        "run_id": row.run_id,
        "trigger": row.trigger,
        "status": row.status,
        "success": row.status == "succeeded" if row.status != "running" else None,
        "scenario": row.scenario,
        "episodes": row.episodes,
        "job_id": row.job_id,
        "instance": row.instance,
        "timestamp": iso(row.started_at),  # the original design's name and form for when the run started
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "duration_seconds": round(duration, 3) if duration is not None else None,
        "avg_reward": row.avg_reward,
        "final_reward": row.final_reward,
        "error": row.error,
    }


@dataclass
class ClaimRun(Job):
    """Record a run as started; a scheduled one only if no instance claimed its slot yet (result None then)."""

    run_id: str
    slot: str | None
    trigger: str
    scenario: str
    episodes: int
    instance: str

    def apply(self, conn: Connection, now: float) -> Applied:
        if self.slot is not None:
            taken = conn.execute(select(daemon_runs.c.pk).where(daemon_runs.c.slot == self.slot)).first()
            if taken is not None:
                return Applied(None)
        values = {
            "run_id": self.run_id,
            "slot": self.slot,
            "trigger": self.trigger,
            "status": "running",
            "scenario": self.scenario,
            "episodes": self.episodes,
            "instance": self.instance,
            "started_at": now,
        }
        # Two instances claiming one slot at once: the unique slot refuses the second insert, the group
        # commit retries that job alone, and the check above then answers None.
        row = conn.execute(insert(daemon_runs).values(values).returning(*daemon_runs.c)).one()
        return Applied(run_dict(row))


@dataclass
class FinishRun(Job):
    run_id: str
    values: dict[str, Any]

    def apply(self, conn: Connection, now: float) -> Applied:
        where = daemon_runs.c.run_id == self.run_id
        values = {"ended_at": now, **self.values} if self.values.get("status", "running") != "running" else self.values
        row = conn.execute(update(daemon_runs).where(where).values(values).returning(*daemon_runs.c)).one()
        return Applied(run_dict(row))


def recent_runs(conn: Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(daemon_runs).order_by(daemon_runs.c.pk.desc()).limit(limit))
    return [run_dict(row) for row in rows]


def run_counts(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(daemon_runs.c.status, func.count()).group_by(daemon_runs.c.status)).all()
    counts = {status: int(count) for status, count in rows}
    return {
        "total": sum(counts.values()),
        "succeeded": counts.get("succeeded", 0),
        "failed": counts.get("failed", 0),
        "running": counts.get("running", 0),
    }


def last_error(conn: Connection) -> str | None:
    query = select(daemon_runs.c.error).where(daemon_runs.c.status == "failed").order_by(daemon_runs.c.pk.desc())
    return conn.execute(query.limit(1)).scalar()


def last_scheduled(conn: Connection) -> dict[str, Any] | None:
    """The latest scheduled run (its slot names the one it followed), or None before the first."""
    query = select(daemon_runs).where(daemon_runs.c.trigger == "schedule").order_by(daemon_runs.c.pk.desc())
    row = conn.execute(query.limit(1)).first()
    return run_dict(row) if row is not None else None
