"""Training jobs in the store: their rows are written through the group commit like everything else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, update

from bot.store.tables import training_jobs
from bot.store.writes import Applied, Job

RUNNING_STATUSES = ("running", "stopping")


def job_dict(row: Any) -> dict[str, Any]:
    return {
        "job_id": row.job_id,
        "scenario_name": row.scenario,
        "status": row.status,
        "session_id": row.session_id,
        "params": orjson.loads(row.params),
        "total_episodes": row.total_episodes,
        "episodes_completed": row.episodes_completed,
        "latest_progress": orjson.loads(row.latest_progress) if row.latest_progress else None,
        "pid": row.pid,
        "exit_code": row.exit_code,
        "error": row.error,
        "start_time": row.created_at,
        "end_time": row.ended_at,
    }


@dataclass
class CreateJob(Job):
    job_id: str
    scenario: str
    session_id: str
    params: dict[str, Any]
    total_episodes: int
    host: str

    def apply(self, conn: Connection, now: float) -> Applied:
        values = {
            "job_id": self.job_id,
            "scenario": self.scenario,
            "status": "running",
            "session_id": self.session_id,
            "params": orjson.dumps(self.params).decode(),
            "total_episodes": self.total_episodes,
            "episodes_completed": 0,
            "host": self.host,
            "created_at": now,
        }
        row = conn.execute(insert(training_jobs).values(values).returning(*training_jobs.c)).one()
        return Applied(job_dict(row))


@dataclass
class UpdateJob(Job):
    """Change a job's row: `progress` is its latest training_progress payload; an ended status stamps the end."""

    job_id: str
    status: str | None = None
    progress: dict[str, Any] | None = None
    pid: int | None = None
    exit_code: int | None = None
    error: str | None = None

    def apply(self, conn: Connection, now: float) -> Applied:
        values: dict[str, Any] = {}
        if self.status is not None:
            values["status"] = self.status
            if self.status not in RUNNING_STATUSES:
                values["ended_at"] = now
        if self.progress is not None:
            values["latest_progress"] = orjson.dumps(self.progress).decode()
            values["episodes_completed"] = self.progress["episode"]
        for name in ("pid", "exit_code", "error"):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        row = conn.execute(
            update(training_jobs)
            .where(training_jobs.c.job_id == self.job_id)
            .values(values)
            .returning(*training_jobs.c)
        ).one()
        return Applied(job_dict(row))


@dataclass
class FailLeftoverJobs(Job):
    """Jobs this host's server was running when it went away: their process is gone with it."""

    host: str
    reason: str

    def apply(self, conn: Connection, now: float) -> Applied:
        c = training_jobs.c
        rows = conn.execute(
            update(training_jobs)
            .where(c.host == self.host, c.status.in_(RUNNING_STATUSES))
            .values(status="failed", error=self.reason, ended_at=now)
            .returning(*training_jobs.c)
        ).all()
        return Applied([job_dict(row) for row in rows])


def get_job(conn: Connection, job_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(training_jobs).where(training_jobs.c.job_id == job_id)).first()
    return job_dict(row) if row is not None else None


def list_jobs(conn: Connection, limit: int, statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The newest first."""
    query = select(training_jobs).order_by(training_jobs.c.pk.desc()).limit(limit)
    if statuses:
        query = query.where(training_jobs.c.status.in_(statuses))
    return [job_dict(row) for row in conn.execute(query)]
