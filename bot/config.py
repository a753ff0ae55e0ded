"""Settings: read once from the environment and an optional JSON file, validated, passed down.

Precedence, highest first: keyword arguments, environment variables, the JSON file, defaults.
Nothing here is global: `Settings(...)` builds a fresh, independent object every time.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import limits
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = [
    "ConfigError",
    "DatabaseConfig",
    "IntegrationConfig",
    "PerformanceConfig",
    "RedisConfig",
    "SecurityConfig",
    "ServerConfig",
    "ServerConfiguration",
    "Settings",
    "as_settings",
    "load_settings",
]


LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


class ConfigError(ValueError):
    """A setting has a bad value; the message names the key, the bad value and what is valid."""


# Environment variable names of the original design; every other field reads TMS_<FIELD>.
ENV_NAMES = {
    "host": "TRAINING_METRICS_HOST",
    "port": "TRAINING_METRICS_PORT",
    "debug": "TRAINING_METRICS_DEBUG",
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "jwt_secret_key": "JWT_SECRET_KEY",
    "cors_origins": "CORS_ORIGINS",
    "game_server_url": "GAME_SERVER_URL",
    "max_connections_per_session": "MAX_CONNECTIONS_PER_SESSION",
    "max_total_connections": "MAX_TOTAL_CONNECTIONS",
    "data_storage_path": "DATA_STORAGE_PATH",
}

# Config-file sections of the original design: section -> {key in file: field name}.
FILE_SECTIONS: dict[str, dict[str, str]] = {
    "security": {
        "enable_auth": "enable_auth",
        "jwt_secret_key": "jwt_secret_key",
        "cors_origins": "cors_origins",
        "allowed_hosts": "allowed_hosts",
        "jwt_audience": "jwt_audience",
        "jwt_issuer": "jwt_issuer",
    },
    "integration": {
        "game_server_url": "game_server_url",
        "enable_spectator_integration": "enable_spectator_integration",
    },
    # "performance": every field of PerformanceConfig, added below the class so the two cannot drift.
}


def _env(field: str) -> str:
    return ENV_NAMES.get(field, f"TMS_{field.upper()}")


def _accepted(field: str) -> str | AliasChoices:
    """The environment names a field is read from: TMS_<FIELD>, and first the original design's name where it
    has one (DATABASE_URL, MAX_CONNECTIONS_PER_SESSION, ...): every setting answers to TMS_<NAME> as the README
    says, and `TMS_MAX_CONNECTIONS_PER_SESSION` was silently ignored."""
    own = f"TMS_{field.upper()}"
    return AliasChoices(ENV_NAMES[field], own) if field in ENV_NAMES else own


class Settings(BaseSettings):
    """Everything the server reads at start-up. `ServerConfig` is the same class."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="forbid", case_sensitive=False)

    host: str = Field("127.0.0.1", validation_alias=_accepted("host"))
    port: int = Field(8000, ge=0, le=65535, validation_alias=_accepted("port"))
    debug: bool = Field(False, validation_alias=_accepted("debug"))
    # The server's log level; unset: debug when `debug`, else info.
    log_level: LogLevel | None = Field(None, validation_alias=_accepted("log_level"))
    # text: uvicorn's lines; json: one JSON object per line (time, level, logger, message, and session_id,
    # job_id, run_id where the event has one), for a log collector.
    log_format: Literal["text", "json"] = Field("text", validation_alias=_accepted("log_format"))
    database_url: str = Field("sqlite:///data/training_metrics.db", validation_alias=_accepted("database_url"))
    # Unset: the in-memory broker (one instance). redis://host:port/db lets instances share one live stream.
    redis_url: str | None = Field(None, validation_alias=_accepted("redis_url"))
    jwt_secret_key: str | None = Field(None, validation_alias=_accepted("jwt_secret_key"))
    jwt_audience: str = Field("training-metrics-server", validation_alias=_accepted("jwt_audience"))
    jwt_issuer: str | None = Field(None, validation_alias=_accepted("jwt_issuer"))
    enable_auth: bool = Field(False, validation_alias=_accepted("enable_auth"))
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_accepted("cors_origins")
    )
    # Host header values answered (DNS rebinding); empty: the loopback names and the bound address; "*": any.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_accepted("allowed_hosts")
    )
    game_server_url: str | None = Field(None, validation_alias=_accepted("game_server_url"))
    enable_spectator_integration: bool = Field(True, validation_alias=_accepted("enable_spectator_integration"))
    max_connections_per_session: int = Field(50, gt=0, validation_alias=_accepted("max_connections_per_session"))
    max_total_connections: int = Field(10000, gt=0, validation_alias=_accepted("max_total_connections"))
    data_storage_path: Path = Field(Path("data/training_metrics"), validation_alias=_accepted("data_storage_path"))
    # Bounds the hub's per-session buffer of frames that arrived ahead of a gap.
    metrics_history_size: int = Field(10000, gt=0, validation_alias=_accepted("metrics_history_size"))
    cleanup_interval_seconds: float = Field(300.0, gt=0, validation_alias=_accepted("cleanup_interval_seconds"))
    # Sessions that ended longer ago than this are deleted by the cleanup task; None keeps them forever.
    session_retention_seconds: float | None = Field(None, gt=0, validation_alias=_accepted("session_retention_seconds"))
    # Per-client rate limits (bot/server/edge/rate_limits.py), in the `limits` library's notation ("100/second",
    # "20/minute"): ingest requests, spectator connections, spectator messages, room password attempts.
    enable_rate_limiting: bool = Field(False, validation_alias=_accepted("enable_rate_limiting"))
    rate_limit_ingest: str = Field("100/second", validation_alias=_accepted("rate_limit_ingest"))
    rate_limit_ws_connect: str = Field("30/second", validation_alias=_accepted("rate_limit_ws_connect"))
    rate_limit_ws_message: str = Field("50/second", validation_alias=_accepted("rate_limit_ws_message"))
    rate_limit_room_password: str = Field("20/minute", validation_alias=_accepted("rate_limit_room_password"))
    # A running session whose engine sent nothing (no data, no heartbeat) for this long becomes `stale`.
    stale_timeout_seconds: float = Field(60.0, gt=0, validation_alias=_accepted("stale_timeout_seconds"))
    # FULL survives a power loss; NORMAL (in WAL mode) survives a crash of the process only.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field("FULL", validation_alias=_accepted("sqlite_synchronous"))
    # Frames queued per spectator before its oldest are dropped (and it is told, with a `lag` message).
    max_backlog: int = Field(1000, gt=0, validation_alias=_accepted("max_backlog"))
    # ... and bytes of them (counted as characters of their JSON text), so big frames are bounded too.
    max_backlog_bytes: int = Field(4 * 1024 * 1024, gt=0, validation_alias=_accepted("max_backlog_bytes"))
    # A spectator that keeps dropping frames for this long is closed with code 4008.
    slow_spectator_timeout: float = Field(10.0, gt=0, validation_alias=_accepted("slow_spectator_timeout"))
    # A joining spectator must have taken its welcome, snapshot and replay (`since=`) within this long, or it
    # is closed with 4008 (and cut off if it cannot take the close): one that never reads holds no slot.
    ws_join_timeout: float = Field(30.0, gt=0, validation_alias=_accepted("ws_join_timeout"))
    # A log line per HTTP request. Off unless asked for (or debug): at hundreds of pushes a second it costs
    # a sixth of a push's CPU and buries the log; errors and warnings are logged either way.
    access_log: bool = Field(False, validation_alias=_accepted("access_log"))
    # Kernel send buffer per spectator connection, in bytes (Linux doubles it; 0: the kernel's autotuning,
    # up to 4 MB). Bounds what a spectator that stopped reading holds before its queue and close take over.
    ws_send_buffer: int = Field(262_144, ge=0, validation_alias=_accepted("ws_send_buffer"))
    # New spectator connections per second this instance takes (0: no limit); past it, 1013 with a jittered
    # retry delay. Off by default: joins to one session share their reads, and a 2,000-spectator storm
    # resumed fastest, with the least added live latency, unlimited (bench/instances.py).
    ws_connect_rate: int = Field(0, ge=0, validation_alias=_accepted("ws_connect_rate"))
    # On shutdown, how long spectators get to take their 1001 close before their connections are cut,
    # and requests to finish before they are cancelled: `bot serve` always exits within about this.
    shutdown_timeout: float = Field(5.0, ge=0, validation_alias=_accepted("shutdown_timeout"))
    ws_ping_interval: float = Field(20.0, gt=0, validation_alias=_accepted("ws_ping_interval"))
    ws_ping_timeout: float = Field(20.0, gt=0, validation_alias=_accepted("ws_ping_timeout"))
    # Deflate compresses each frame once per spectator, which defeats encode-once: off unless asked for.
    ws_per_message_deflate: bool = Field(False, validation_alias=_accepted("ws_per_message_deflate"))
    max_batch_size: int = Field(10000, gt=0, validation_alias=_accepted("max_batch_size"))
    # What one session may hold in breadth (bot/store/bounds.py): distinct metric series, and graphs (each in
    # every spectator's snapshot). A batch that would pass either is refused whole (422).
    max_series_per_session: int = Field(1000, gt=0, validation_alias=_accepted("max_series_per_session"))
    max_graphs_per_session: int = Field(100, gt=0, validation_alias=_accepted("max_graphs_per_session"))
    # A request body past this many bytes is refused with 413 before it is read whole.
    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0, validation_alias=_accepted("max_body_bytes"))
    # Bytes of request bodies received at once, over all requests; past it, 503 with Retry-After.
    max_body_bytes_in_flight: int = Field(
        64 * 1024 * 1024, gt=0, validation_alias=_accepted("max_body_bytes_in_flight")
    )
    # What one HTTP connection may hold (bot/server/edge/http_guard.py): the request target (414 past it), the
    # whole head (431), how long the head and then the body may take to arrive (408), how long an idle
    # keep-alive connection stays open, and how many connections of any kind the process holds (503 past
    # it; None: the soft limit of open files less 256).
    max_url_bytes: int = Field(8192, ge=256, validation_alias=_accepted("max_url_bytes"))
    max_header_bytes: int = Field(65_536, ge=1024, validation_alias=_accepted("max_header_bytes"))
    http_header_timeout: float = Field(10.0, gt=0, validation_alias=_accepted("http_header_timeout"))
    http_body_timeout: float = Field(60.0, gt=0, validation_alias=_accepted("http_body_timeout"))
    http_idle_timeout: float = Field(5.0, gt=0, validation_alias=_accepted("http_idle_timeout"))
    # An answer that takes no bytes for this long (the client stopped reading) is aborted, its memory freed.
    http_send_timeout: float = Field(30.0, gt=0, validation_alias=_accepted("http_send_timeout"))
    # History pages and exports one client address may be receiving at once (429 past it; 0: no limit).
    max_downloads_per_client: int = Field(8, ge=0, validation_alias=_accepted("max_downloads_per_client"))
    max_connections: int | None = Field(None, ge=1, validation_alias=_accepted("max_connections"))
    # Worker processes that validate and encode big ingest bodies off the server's GIL; None: one if
    # the machine has two cores or more, else none (0 reads every body in the server process).
    ingest_processes: int | None = Field(None, ge=0, le=64, validation_alias=_accepted("ingest_processes"))
    # How long the hub waits for a missing seq before it reads the gap from the store.
    gap_wait_seconds: float = Field(0.05, ge=0, validation_alias=_accepted("gap_wait_seconds"))
    # Training jobs (POST /api/training/start): how many run at once (None: the number of cores), where their
    # models and checkpoints go, and where the scenarios are (None: the shipped ones, config/scenarios/).
    # The training daemon (scheduled runs, configured at run time): its `enabled` until a configuration is
    # stored, so that a fresh server starts no training by itself (bot/server/training/daemon.py).
    training_daemon: bool = Field(False, validation_alias=_accepted("training_daemon"))
    # Seconds between two of the daemon's iterations (a look at the clock; the configuration every 10th).
    training_daemon_tick: float = Field(1.0, gt=0, le=60, validation_alias=_accepted("training_daemon_tick"))
    # One job at a time by default, as the original design runs training (a bare POST /stop stops it).
    max_concurrent_jobs: int | None = Field(1, ge=1, le=256, validation_alias=_accepted("max_concurrent_jobs"))
    models_dir: Path = Field(Path("models"), validation_alias=_accepted("models_dir"))
    scenarios_dir: Path | None = Field(None, validation_alias=_accepted("scenarios_dir"))
    # Each instance renews a lease on its jobs and daemon runs in the database every third of this; any
    # instance fails those of an owner whose lease ran out (its server died with them).
    job_lease_seconds: float = Field(30.0, gt=0, le=3600, validation_alias=_accepted("job_lease_seconds"))
    # torch's threads in each job (1: measured fastest for these small networks when cores are shared).
    training_threads: int = Field(1, ge=1, le=256, validation_alias=_accepted("training_threads"))
    # Where jobs run: "process" (children of this server, the default) or "ray" (a Ray cluster at ray_address,
    # None: Ray's own default, RAY_ADDRESS or a local cluster; the ray extra), with each job's resources, the
    # Python the cluster runs jobs with, and the URL jobs push to (None: this server's own address).
    job_backend: Literal["process", "ray"] = Field("process", validation_alias=_accepted("job_backend"))
    ray_address: str | None = Field(None, validation_alias=_accepted("ray_address"))
    ray_num_cpus: float = Field(1.0, ge=0, validation_alias=_accepted("ray_num_cpus"))
    ray_num_gpus: float = Field(0.0, ge=0, validation_alias=_accepted("ray_num_gpus"))
    ray_python: str = Field("python", min_length=1, validation_alias=_accepted("ray_python"))
    job_server_url: str | None = Field(None, validation_alias=_accepted("job_server_url"))
    # A database at an older schema revision is migrated at start-up instead of refused (`bot db upgrade`).
    auto_migrate: bool = Field(False, validation_alias=_accepted("auto_migrate"))
    # A publish to Redis that takes longer than this is given up (spectators get those frames from the store)
    # and /health says `degraded`: a slow or stalled Redis never holds ingest.
    broker_timeout: float = Field(0.5, gt=0, validation_alias=_accepted("broker_timeout"))
    # Each instance sends itself a probe through Redis this often; a subscription that has not brought one
    # back within two intervals is reported in /health and rebuilt.
    broker_probe_interval: float = Field(1.0, gt=0, validation_alias=_accepted("broker_probe_interval"))
    # Socket.IO (/socket.io): Engine.IO sessions this instance holds at once (a handshake past it is answered
    # 503 before a session is made), and jobs one client may follow by `subscribe_training` with a job_id.
    socketio_max_clients: int = Field(1000, gt=0, validation_alias=_accepted("socketio_max_clients"))
    socketio_max_subscriptions_per_client: int = Field(
        100, gt=0, validation_alias=_accepted("socketio_max_subscriptions_per_client")
    )
    config_file: Path | None = Field(None, validation_alias=_accepted("config_file"))

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("rate_limit_ingest", "rate_limit_ws_connect", "rate_limit_ws_message", "rate_limit_room_password")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit; write it as '100/second' or '20/minute'") from None
        return value

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file named by `config_file` (an argument or TMS_CONFIG_FILE) ranks below the environment.
        init_kwargs: dict[str, Any] = getattr(init_settings, "init_kwargs", {})
        config_file = init_kwargs.get(_env("config_file")) or init_kwargs.get("config_file")
        config_file = config_file or env_settings().get(_env("config_file"))
        return init_settings, env_settings, ConfigFileSource(settings_cls, config_file)


ServerConfig = Settings


class ConfigFileSource(PydanticBaseSettingsSource):
    """Reads the JSON config file of the original design and flattens its sections into fields."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | Path | None) -> None:
        super().__init__(settings_cls)
        self.values = read_config_file(Path(path)) if path else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        # Keyed like the environment source, so that the two merge instead of both being present.
        return {_env(name): value for name, value in self.values.items()}


def read_config_file(path: Path) -> dict[str, Any]:
    """Return the file's settings keyed by field name; unknown keys are an error, not ignored."""
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a JSON object, got {type(raw).__name__}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "database" and isinstance(value, dict):
            values.update(_database_section(path, value))
        elif key == "redis" and isinstance(value, dict):
            values.update(_redis_section(path, value))
        elif key in FILE_SECTIONS and isinstance(value, dict):
            for sub_key, sub_value in value.items():
                if sub_key not in FILE_SECTIONS[key]:
                    raise ConfigError(_unknown(path, f"{key}.{sub_key}", sorted(FILE_SECTIONS[key])))
                values[FILE_SECTIONS[key][sub_key]] = sub_value
        elif key in Settings.model_fields and key != "config_file":
            values[key] = value
        else:
            raise ConfigError(_unknown(path, key, [*sorted(FILE_SECTIONS), "database", "redis", "host", "port", "..."]))
    return values


def _unknown(path: Path, key: str, valid: list[str]) -> str:
    return f"config file {str(path)!r}: unknown key {key!r}; expected one of {', '.join(valid)}"


def _database_section(path: Path, section: dict[str, Any]) -> dict[str, Any]:
    unknown = set(section) - {"enabled", "url", "auto_migrate"}
    if unknown:
        raise ConfigError(_unknown(path, f"database.{sorted(unknown)[0]}", ["auto_migrate", "enabled", "url"]))
    values = {"auto_migrate": section["auto_migrate"]} if "auto_migrate" in section else {}
    if section.get("enabled", True) is False:
        # No database asked for: keep everything in memory; nothing survives a restart.
        return {**values, "database_url": "sqlite://"}
    return {**values, "database_url": section["url"]} if "url" in section else values


def _redis_section(path: Path, section: dict[str, Any]) -> dict[str, Any]:
    unknown = set(section) - {"enabled", "host", "port", "url", "db"}
    if unknown:
        raise ConfigError(_unknown(path, f"redis.{sorted(unknown)[0]}", ["enabled", "host", "port", "db", "url"]))
    if not section.get("enabled", False):
        return {"redis_url": None}
    if "url" in section:
        return {"redis_url": section["url"]}
    return {
        "redis_url": f"redis://{section.get('host', '127.0.0.1')}:{section.get('port', 6379)}/{section.get('db', 0)}"
    }


MIN_JWT_SECRET_BYTES = 32  # RFC 7518: an HS256 key is at least as long as the hash


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning a validation error into a ConfigError that names each bad key."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from exc
    check_jwt_secret(settings)
    refuse_unsupported(settings)
    if "data_storage_path" in settings.model_fields_set and "database_url" not in settings.model_fields_set:
        # The original design's DATA_STORAGE_PATH: where the data is stored, here the SQLite file.
        database = Path(settings.data_storage_path) / "training_metrics.db"
        settings = settings.model_copy(update={"database_url": f"sqlite:///{database}"})
    return settings


def refuse_unsupported(settings: Settings) -> None:
    """The original design's settings this server has no part for are refused, saying so, not ignored."""
    if settings.game_server_url is not None:
        raise ConfigError(
            f"GAME_SERVER_URL (integration.game_server_url) = {settings.game_server_url!r} is not supported: this "
            "server has no game-server integration (engines push to it through the SDK or REST); unset it"
        )
    if not settings.enable_spectator_integration:
        raise ConfigError(
            "enable_spectator_integration (integration.enable_spectator_integration) = false is not supported: "
            "spectators and rooms are part of this server; leave it true or unset"
        )


def check_jwt_secret(settings: Settings) -> None:
    """A JWT secret shorter than HS256 needs: refused when auth is on (tokens would be guessable), a warning
    when it is off (no token is checked; the original design's examples set a short one)."""
    secret = settings.jwt_secret_key
    if secret is None or len(secret.encode()) >= MIN_JWT_SECRET_BYTES:
        return
    why = (
        f"JWT_SECRET_KEY (security.jwt_secret_key) is {len(secret.encode())} bytes; HS256 needs at least "
        f"{MIN_JWT_SECRET_BYTES}. Make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
    )
    if settings.enable_auth:
        raise ConfigError(f"{why} (refused because auth is on: a short secret makes tokens guessable)")
    logging.getLogger("bot.server.app").warning("%s; auth is off, so no token is checked with it", why)


def describe_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "?"
        field = next((name for name in Settings.model_fields if key.lower() in (name, _env(name).lower())), key)
        file_key = next(
            (
                f"{section}.{key}"
                for section, keys in FILE_SECTIONS.items()
                for key, name in keys.items()
                if name == field
            ),
            field,
        )
        lines.append(
            f"invalid setting {field!r} (environment {_env(field)}, config file key {file_key!r}): "
            f"{error['msg']}, got {error.get('input')!r}"
        )
    return "; ".join(lines)


class DatabaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    url: str = "sqlite:///data/training_metrics.db"
    auto_migrate: bool = False


class RedisConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0


# Settings kept at the top of the original design's nested configuration, or in its database/redis sections.
TOP_LEVEL = ("host", "port", "debug", "log_level", "log_format", "access_log", "data_storage_path")
NOT_IN_SECTIONS = {*TOP_LEVEL, "database_url", "redis_url", "auto_migrate", "config_file"}


def _section(name: str, names: list[str]) -> type[BaseModel]:
    """A section of the nested configuration, made from Settings' own fields (type, default, bounds), so
    the two cannot drift: a new setting appears here by itself."""
    fields: dict[str, Any] = {}
    for field in names:
        info = copy.copy(Settings.model_fields[field])
        info.validation_alias = info.alias = None
        fields[field] = (info.annotation, info)
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


class SecurityConfig(_section("SecurityConfig", list(FILE_SECTIONS["security"].values()))):  # type: ignore[misc]
    """Authentication, tokens, browsers' origins and hosts (the original design's `security` section)."""


class IntegrationConfig(_section("IntegrationConfig", list(FILE_SECTIONS["integration"].values()))):  # type: ignore[misc]
    """The original design's `integration` section."""


PERFORMANCE_FIELDS = [
    name
    for name in Settings.model_fields
    if name not in NOT_IN_SECTIONS and all(name not in keys.values() for keys in FILE_SECTIONS.values())
]


class PerformanceConfig(_section("PerformanceConfig", PERFORMANCE_FIELDS)):  # type: ignore[misc]
    """Every tuning knob, under the original design's `performance` section (in the config file too)."""


FILE_SECTIONS["performance"] = {name: name for name in PerformanceConfig.model_fields}


class ServerConfiguration(BaseModel):
    """The nested configuration of the original design; `as_settings` turns it into Settings.
    tests/test_config.py checks that it reaches every setting, with the same defaults."""

    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = 8000
    debug: bool = False
    log_level: LogLevel | None = None
    log_format: Literal["text", "json"] = "text"
    access_log: bool = False
    data_storage_path: Path = Path("data/training_metrics")
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    integration: IntegrationConfig = Field(default_factory=IntegrationConfig)
    performance: PerformanceConfig = Field(default_factory=PerformanceConfig)

    def to_settings(self) -> Settings:
        """What was given here wins; what was not is left to the environment, the file and the defaults."""
        sections = {"database", "redis", "security", "integration", "performance"}
        flat: dict[str, Any] = self.model_dump(exclude_unset=True, exclude=sections)
        if "database" in self.model_fields_set:
            flat["database_url"] = self.database.url if self.database.enabled else "sqlite://"
            if "auto_migrate" in self.database.model_fields_set:
                flat["auto_migrate"] = self.database.auto_migrate
        if "redis" in self.model_fields_set:
            r = self.redis
            flat["redis_url"] = f"redis://{r.host}:{r.port}/{r.db}" if r.enabled else None
        for section in (self.security, self.integration, self.performance):
            flat.update(section.model_dump(exclude_unset=True))
        return load_settings(**flat)


def as_settings(config: Settings | ServerConfiguration | None) -> Settings:
    """Accept either configuration shape wherever the server takes one."""
    if config is None:
        return load_settings()
    if isinstance(config, ServerConfiguration):
        return config.to_settings()
    return config
