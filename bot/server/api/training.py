"""Training jobs: start, stop and watch the reference trainer through the API (bot/server/training/jobs.py).

The original design's paths and answers: `POST /api/training/start` (202), `POST /api/training/stop`,
`GET /api/training/status`; and `GET /api/training/jobs`, `GET /api/training/jobs/{job_id}`.

A credential limited to one session sees the jobs of that session only (a job of another is a 403 naming its
session, as on Socket.IO); the daemon's routes and starting or stopping a job are about the whole server, so
they refuse it (403) rather than answer with figures filtered down to nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from bot.schemas import Whole
from bot.server.api.access import Reader, ServerAdmin, ServerReader
from bot.server.api.bodies import body_schema, echoed, error_response, errors, parse_model, read_body, read_model
from bot.server.edge.auth import AuthError, Principal
from bot.server.training.daemon import RunInProgressError, TrainingDaemon
from bot.server.training.daemon_redis import EPISODES_PER_RUN, INTERVAL_MINUTES, SCENARIO_MAX_LENGTH, DaemonRedisError
from bot.server.training.jobs import JobRefusedError, JobSupervisor, ScenarioNotFoundError, scenario_names
from bot.store.jobs import RUNNING_STATUSES

router = APIRouter(prefix="/api/training", tags=["training"], responses=errors(401, 403))


class StartTraining(BaseModel):
    """The original design's start request; `allow_concurrent` lets a scenario train twice at once."""

    model_config = ConfigDict(extra="forbid")

    scenario_name: Annotated[str, Field(min_length=1, max_length=64)]
    num_episodes: Annotated[int, Whole(1, 10_000_000)] = 1000
    save_interval: Annotated[int, Whole(1, 10_000_000)] = 100
    eval_episodes: Annotated[int, Whole(1, 10_000)] = 10
    seed: Annotated[int, Whole(0, 2**32 - 1)] | None = None
    allow_concurrent: StrictBool = False


class StopTraining(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


def _jobs(request: Request) -> JobSupervisor:
    jobs: JobSupervisor = request.state.jobs
    return jobs


@router.post(
    "/start",
    dependencies=[ServerAdmin],
    status_code=202,
    openapi_extra=body_schema(StartTraining, many=False),
    responses={**errors(400, 422), 404: error_response("no scenario has this name")},
)
async def start_training(request: Request) -> dict[str, Any]:
    """Start a job: the scenario's trainer in a child process, pushing into a session of its own."""
    body = await read_model(request, StartTraining)
    params = body.model_dump(exclude={"scenario_name", "allow_concurrent"})
    try:
        job = await _jobs(request).start(body.scenario_name, params, body.allow_concurrent)
    except ScenarioNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except JobRefusedError as exc:
        raise HTTPException(400, str(exc)) from None
    data = {
        "status": "started",
        "scenario_name": job["scenario_name"],
        "num_episodes": job["total_episodes"],
        "start_time": job["start_time"],
        "job_id": job["job_id"],
        "session_id": job["session_id"],
    }
    return {"message": "Training started successfully", "data": data}


@router.post("/stop", responses=errors(400, 422), dependencies=[ServerAdmin])
async def stop_training(request: Request) -> JSONResponse:
    """Stop a running job (the only one when no `job_id` is given): it saves a checkpoint and ends. Answered
    once it is over (its slot free for a new start), or after 4 s (8 s on Ray) with `"status": "stopping"`."""
    raw = await read_body(request)
    body = parse_model(raw, StopTraining) if raw.strip() else StopTraining()
    try:
        job, ended = await _jobs(request).stop(body.job_id)
    except JobRefusedError as exc:
        raise HTTPException(400, str(exc)) from None
    data = {
        "status": job["status"] if ended else "stopping",
        "job_id": job["job_id"],
        "scenario_name": job["scenario_name"],
        "episodes_completed": job["episodes_completed"],
        "total_episodes": job["total_episodes"],
    }
    message = "Training stopped successfully" if ended else "Training is stopping"
    return JSONResponse({"message": message, "data": data})


@router.get("/scenarios", dependencies=[ServerReader])
async def list_scenarios(request: Request, principal: Principal = Reader) -> dict[str, Any]:
    """The scenarios a job or the daemon can run, a start's defaults, and whether this credential may start
    and stop jobs and change the daemon (`can_control`: the page shows its controls only then)."""
    defaults = StartTraining.model_fields
    return {
        "scenarios": scenario_names(_jobs(request).scenarios),
        "defaults": {name: defaults[name].default for name in ("num_episodes", "save_interval", "eval_episodes")},
        "can_control": "admin" in principal.scopes and principal.session_id is None,
    }


@router.get("/status")
async def training_status(request: Request, principal: Principal = Reader) -> dict[str, Any]:
    """The latest job this credential may see (a session-limited one: its session's), in the original design's
    shape (`is_training` false and nulls when there is none)."""
    latest = await _jobs(request).jobs(1, principal.session_id)
    if not latest:
        return {
            "is_training": False,
            "scenario_name": None,
            "current_episode": 0,
            "total_episodes": 0,
            "start_time": None,
            "latest_progress": None,
            "job_id": None,
            "status": None,
            "session_id": None,
        }
    job = latest[0]
    return {
        "is_training": job["status"] in RUNNING_STATUSES,
        "scenario_name": job["scenario_name"],
        "current_episode": job["episodes_completed"],
        "total_episodes": job["total_episodes"],
        "start_time": job["start_time"],
        "latest_progress": job["latest_progress"],
        "job_id": job["job_id"],
        "status": job["status"],
        "session_id": job["session_id"],
    }


@router.get("/jobs")
async def list_training_jobs(
    request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100, principal: Principal = Reader
) -> dict[str, Any]:
    """The newest first; a credential limited to one session lists the jobs of that session only."""
    return {"jobs": await _jobs(request).jobs(limit, principal.session_id)}


async def _visible_job(request: Request, job_id: str, principal: Principal) -> dict[str, Any]:
    """The job, if there is one and this credential may read its session (404, 403 otherwise)."""
    job = await _jobs(request).job(job_id)
    if job is None:
        raise HTTPException(404, f"no training job {echoed(job_id)!r}")
    try:
        principal.require("read", job["session_id"])
    except AuthError as exc:
        raise HTTPException(exc.status, exc.reason) from None
    return job


@router.get("/jobs/{job_id}", responses={404: error_response("no training job has this id")})
async def get_training_job(request: Request, job_id: str, principal: Principal = Reader) -> dict[str, Any]:
    return await _visible_job(request, job_id, principal)


@router.get(
    "/jobs/{job_id}/logs",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}, 404: error_response("no training job has this id")},
)
async def get_training_job_logs(request: Request, job_id: str, principal: Principal = Reader) -> PlainTextResponse:
    """The end of the job's output (its last 64 KiB), from wherever it runs: the server's log file of a child
    process, or Ray's logs of a Ray job."""
    await _visible_job(request, job_id, principal)
    logs = await _jobs(request).logs(job_id)
    if logs is None:
        raise HTTPException(404, f"no training job {echoed(job_id)!r}, or it has written nothing yet")
    return PlainTextResponse(logs)


class DaemonConfigUpdate(BaseModel):
    """Any of the daemon's settings; those left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool | None = None
    interval_minutes: (
        Annotated[float, Field(ge=INTERVAL_MINUTES[0], le=INTERVAL_MINUTES[1], allow_inf_nan=False, strict=True)] | None
    ) = None
    episodes_per_run: Annotated[int, Whole(*EPISODES_PER_RUN)] | None = None
    scenario: Annotated[str, Field(min_length=1, max_length=SCENARIO_MAX_LENGTH)] | None = None


def _daemon(request: Request) -> TrainingDaemon:
    daemon: TrainingDaemon = request.state.daemon
    return daemon


@router.get("/daemon/config", dependencies=[ServerReader])
async def get_daemon_config(request: Request) -> dict[str, Any]:
    """The stored configuration: with Redis, its `rl_v3.training.*` keys over the database's (`source`)."""
    return await _daemon(request).read_config()


@router.put(
    "/daemon/config",
    openapi_extra=body_schema(DaemonConfigUpdate, many=False),
    responses={**errors(422), 503: error_response("Redis is configured and did not take the change")},
    dependencies=[ServerAdmin],
)
async def put_daemon_config(request: Request) -> dict[str, Any]:
    """Change the daemon's configuration (with Redis, its `rl_v3.training.*` keys too); the running daemon
    follows it at once, without a restart."""
    update = await read_model(request, DaemonConfigUpdate)
    changes = update.model_dump(exclude_none=True)
    if "scenario" in changes:
        try:
            _jobs(request).scenario_file(changes["scenario"])
        except ScenarioNotFoundError as exc:
            detail = [
                {"type": "value_error", "loc": ["body", "scenario"], "msg": str(exc), "input": changes["scenario"]}
            ]
            raise RequestValidationError(detail) from None
    try:
        return await _daemon(request).put_config(changes)
    except DaemonRedisError as exc:
        raise HTTPException(503, str(exc)) from None


@router.get("/daemon/status", dependencies=[ServerReader])
async def daemon_status(request: Request) -> dict[str, Any]:
    """`state`: training during any run, else idle when enabled, disabled when not."""
    return await _daemon(request).status()


@router.post(
    "/daemon/run",
    dependencies=[ServerAdmin],
    status_code=202,
    responses={409: error_response("a daemon run is in progress")},
)
async def daemon_run(request: Request) -> dict[str, Any]:
    """One run now, in the background, whether the daemon is enabled or not (its events go to the
    `training-daemon` session)."""
    try:
        run_id = _daemon(request).start_run()
    except RunInProgressError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"message": "Training run started", "data": {"run_id": run_id}}


@router.get("/summary", dependencies=[ServerReader])
async def training_summary(request: Request) -> dict[str, Any]:
    """The original design's flat summary: `enabled`, `interval_minutes`, `episodes_per_run`, `total_runs`,
    `success_rate`, `last_run_at`, `last_error`, `recent_runs` (the 10 latest); then `successful_runs`,
    `failed_runs`, `last_run_time` and the daemon's status (`daemon`)."""
    return await _daemon(request).summary()


summary_router = APIRouter(tags=["training"], dependencies=[ServerReader], responses=errors(401, 403))
summary_router.add_api_route("/api/v1/rl-v3/dashboard/training-summary", training_summary, methods=["GET"])
