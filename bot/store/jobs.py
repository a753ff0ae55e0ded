"""Training jobs in the store: their rows are written through the group commit like everything else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, insert, or_, select, update

from bot.frames import iso
from bot.store.errors import JobLimitError
from bot.store.keys import create_key, revoke_named
from bot.store.tables import daemon_runs, server_instances, training_jobs
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
        # The original design's times are ISO 8601; the same as epoch seconds in *_timestamp.
        "start_time": iso(row.created_at),
        "end_time": iso(row.ended_at) if row.ended_at is not None else None,
        "start_timestamp": row.created_at,
        "end_timestamp": row.ended_at,
    }


# PostgreSQL's advisory lock that makes the checks of CreateJob and its insert one step across instances.
JOBS_LOCK = 0x746D735F6A6F6273  # "tms_jobs"


@dataclass
class CreateJob(Job):
    """A new running job. With `max_running`, it is refused (JobLimitError) when the jobs running on every
    instance of this database reach it, or when its scenario is running already and `allow_concurrent` is
    not set: checked and stored in one transaction, under a lock on PostgreSQL (SQLite has one writer)."""

    job_id: str
    scenario: str
    session_id: str
    params: dict[str, Any]
    total_episodes: int
    host: str
    max_running: int | None = None
    allow_concurrent: bool = True

    def apply(self, conn: Connection, now: float) -> Applied:
        if self.max_running is not None:
            self._check_limits(conn)
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

    def _check_limits(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":  # held to the commit: another instance's check waits for this one
            conn.execute(select(func.pg_advisory_xact_lock(JOBS_LOCK)))
        running = conn.execute(
            select(training_jobs.c.job_id, training_jobs.c.scenario).where(training_jobs.c.status.in_(RUNNING_STATUSES))
        ).all()
        assert self.max_running is not None
        if len(running) >= self.max_running:
            raise JobLimitError(
                f"{len(running)} training job(s) running on this database's instances, the limit "
                f"(max_concurrent_jobs = {self.max_running}): stop one first"
            )
        same = [job_id for job_id, scenario in running if scenario == self.scenario]
        if same and not self.allow_concurrent:
            raise JobLimitError(
                f"scenario {self.scenario!r} is already training (job {same[0]}): stop it first, or start with "
                '"allow_concurrent": true'
            )


@dataclass
class UpdateJob(Job):
    """Change a job's row: `progress` is its latest training_progress payload; an ended status stamps the end."""

    job_id: str
    status: str | None = None
    progress: dict[str, Any] | None = None
    pid: int | None = None
    exit_code: int | None = None
    error: str | None = None
    episodes_completed: int | None = None  # the job's own count at its end (its last progress may be missing)

    def apply(self, conn: Connection, now: float) -> Applied:
        values: dict[str, Any] = {}
        if self.status is not None:
            values["status"] = self.status
            if self.status not in RUNNING_STATUSES:
                values["ended_at"] = now
        if self.progress is not None:
            values["latest_progress"] = orjson.dumps(self.progress).decode()
            values["episodes_completed"] = self.progress["episode"]
        for name in ("pid", "exit_code", "error", "episodes_completed"):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        if not values:  # nothing to change (a Ray job has no pid here)
            return Applied(get_job(conn, self.job_id))
        row = conn.execute(
            update(training_jobs)
            .where(training_jobs.c.job_id == self.job_id)
            .values(values)
            .returning(*training_jobs.c)
        ).one()
        return Applied(job_dict(row))


def job_key_name(job_id: str) -> str:
    return f"job:{job_id}"


@dataclass
class IssueJobKey(Job):
    """The job's own credential: `write`, limited to its session, revoked when the job ends."""

    job_id: str
    session_id: str

    def apply(self, conn: Connection, now: float) -> Applied:
        return Applied(create_key(conn, ["write"], self.session_id, job_key_name(self.job_id))[1])


@dataclass
class RevokeJobKey(Job):
    job_id: str

    def apply(self, conn: Connection, now: float) -> Applied:
        return Applied(revoke_named(conn, job_key_name(self.job_id)))


@dataclass
class RenewLease(Job):
    """This instance is alive: its jobs and daemon runs are its own for `lease seconds` more."""

    instance_id: str

    def apply(self, conn: Connection, now: float) -> Applied:
        mine = server_instances.c.instance_id == self.instance_id
        if not conn.execute(update(server_instances).where(mine).values(heartbeat_at=now)).rowcount:
            values = {"instance_id": self.instance_id, "started_at": now, "heartbeat_at": now}
            conn.execute(insert(server_instances).values(values))
        return Applied(None)


@dataclass
class FailOrphans(Job):
    """Jobs and daemon runs whose owner holds no live lease (or, `predecessors`, owners that ran on this very
    host and port before this instance took it over) are failed, their keys revoked: their processes went with
    their server. Returns (the failed jobs, the failed daemon runs' ids); the lease rows of owners long gone
    are dropped."""

    instance_id: str
    lease_seconds: float
    reason: str
    predecessors: str | None = None  # a LIKE pattern of the owners this instance replaces

    def apply(self, conn: Connection, now: float) -> Applied:
        live = select(server_instances.c.instance_id).where(
            server_instances.c.heartbeat_at >= now - self.lease_seconds,
            *([server_instances.c.instance_id.not_like(self.predecessors)] if self.predecessors else []),
        )
        jobs_c, runs_c = training_jobs.c, daemon_runs.c
        owner_alive = or_(jobs_c.host == self.instance_id, jobs_c.host.in_(live))
        rows = conn.execute(
            update(training_jobs)
            .where(jobs_c.status.in_(RUNNING_STATUSES), ~owner_alive)
            .values(status="failed", error=self.reason, ended_at=now)
            .returning(*training_jobs.c)
        ).all()
        jobs = [job_dict(row) for row in rows]
        for job in jobs:
            revoke_named(conn, job_key_name(job["job_id"]))
        run_alive = or_(runs_c.instance == self.instance_id, runs_c.instance.in_(live))
        runs = conn.execute(
            update(daemon_runs)
            .where(runs_c.status == "running", ~run_alive)
            .values(status="failed", error=self.reason, ended_at=now)
            .returning(runs_c.run_id, runs_c.episodes, runs_c.started_at)
        )
        failed_runs = [dict(row._mapping) for row in runs]
        conn.execute(server_instances.delete().where(server_instances.c.heartbeat_at < now - 100 * self.lease_seconds))
        return Applied((jobs, failed_runs))


@dataclass
class RequestStop(Job):
    """Ask the instance that supervises a running job to stop it (it looks every STOP_WATCH_INTERVAL)."""

    job_id: str

    def apply(self, conn: Connection, now: float) -> Applied:
        c = training_jobs.c
        row = conn.execute(
            update(training_jobs)
            .where(c.job_id == self.job_id, c.status.in_(RUNNING_STATUSES))
            .values(stop_requested_at=now)
            .returning(*training_jobs.c)
        ).first()
        return Applied(job_dict(row) if row is not None else None)


def stop_requests(conn: Connection, instance_id: str) -> list[str]:
    """The running jobs of this instance that another instance was asked to stop."""
    c = training_jobs.c
    mine = (c.host == instance_id) & c.status.in_(RUNNING_STATUSES)
    return list(conn.execute(select(c.job_id).where(mine, c.stop_requested_at.is_not(None))).scalars())


def get_job(conn: Connection, job_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(training_jobs).where(training_jobs.c.job_id == job_id)).first()
    return job_dict(row) if row is not None else None


def list_jobs(
    conn: Connection, limit: int, statuses: tuple[str, ...] | None = None, session_id: str | None = None
) -> list[dict[str, Any]]:
    """The newest first; `session_id`, when given, keeps the jobs of that session only."""
    query = select(training_jobs).order_by(training_jobs.c.pk.desc()).limit(limit)
    if statuses:
        query = query.where(training_jobs.c.status.in_(statuses))
    if session_id is not None:
        query = query.where(training_jobs.c.session_id == session_id)
    return [job_dict(row) for row in conn.execute(query)]
