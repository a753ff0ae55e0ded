"""Settings: environment over file over defaults, clear errors, and the original design's shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.config import (
    FILE_SECTIONS,
    ConfigError,
    DatabaseConfig,
    PerformanceConfig,
    RedisConfig,
    ServerConfiguration,
    Settings,
    as_settings,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "TRAINING_METRICS_PORT",
        "TRAINING_METRICS_HOST",
        "DATABASE_URL",
        "REDIS_URL",
        "CORS_ORIGINS",
        "MAX_CONNECTIONS_PER_SESSION",
        "MAX_TOTAL_CONNECTIONS",
        "TMS_CONFIG_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(content))
    return path


def test_defaults_are_embedded() -> None:
    """With nothing set: SQLite in data/, in-memory broker, 50 spectators per session."""
    settings = load_settings()
    assert settings.database_url == "sqlite:///data/training_metrics.db"
    assert settings.redis_url is None and settings.max_connections_per_session == 50
    assert settings.max_total_connections == 10000 and settings.sqlite_synchronous == "FULL"


def test_environment_beats_file_beats_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key set in both the environment and the file takes the environment's value."""
    path = write(
        tmp_path,
        {
            "host": "0.0.0.0",
            "port": 9000,
            "performance": {"max_connections_per_session": 7},
            "redis": {"enabled": True, "host": "cache", "port": 6380},
        },
    )
    monkeypatch.setenv("TRAINING_METRICS_PORT", "9100")
    monkeypatch.setenv("CORS_ORIGINS", "http://a.example, http://b.example")
    settings = load_settings(config_file=path)
    assert (settings.host, settings.port, settings.max_connections_per_session) == ("0.0.0.0", 9100, 7)
    assert settings.redis_url == "redis://cache:6380/0"
    assert settings.cors_origins == ["http://a.example", "http://b.example"]


@pytest.mark.parametrize(
    ("env", "content", "needle"),
    [
        ({"MAX_CONNECTIONS_PER_SESSION": "many"}, None, "MAX_CONNECTIONS_PER_SESSION"),
        ({"TRAINING_METRICS_PORT": "70000"}, None, "TRAINING_METRICS_PORT"),
        ({}, {"performance": {"max_connections_per_session": 0}}, "performance.max_connections_per_session"),
        ({}, {"performance": {"max_conections": 3}}, "performance.max_conections"),
        ({}, {"colour": "blue"}, "colour"),
        ({}, {"security": {"jwt_secret_key": "short", "enable_auth": True}}, "JWT_SECRET_KEY"),
        ({}, "[1, 2]", "JSON object"),
    ],
)
def test_bad_values_stop_start_up_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], content: object, needle: str
) -> None:
    """A bad value raises ConfigError whose message names the key."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    kwargs = (
        {"config_file": write(tmp_path, json.loads(content) if isinstance(content, str) else content)}
        if content
        else {}
    )
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(**kwargs)


def test_the_design_s_short_secrets_start_a_server_with_auth_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`JWT_SECRET_KEY=your-secret-key` and `jwt_secret_key="production-secret-key"`, as the original design's
    examples set them: with auth off a warning naming the key (#26.14); with auth on, refused naming why."""
    monkeypatch.setenv("JWT_SECRET_KEY", "your-secret-key")
    assert load_settings().jwt_secret_key == "your-secret-key"
    assert any("JWT_SECRET_KEY" in r.getMessage() and "auth is off" in r.getMessage() for r in caplog.records)
    configured = ServerConfiguration.model_validate({"security": {"jwt_secret_key": "production-secret-key"}})
    assert as_settings(configured).jwt_secret_key == "production-secret-key"
    monkeypatch.setenv("TMS_ENABLE_AUTH", "1")
    with pytest.raises(ConfigError, match="refused because auth is on"):
        load_settings()


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    """A missing or malformed file is reported with its path."""
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(config_file=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_settings(config_file=tmp_path / "bad.json")


def test_nested_configuration_is_accepted_where_settings_are() -> None:
    """ServerConfiguration of the original design converts to the same Settings."""
    nested = ServerConfiguration(
        host="localhost",
        port=8001,
        debug=True,
        database=DatabaseConfig(enabled=True, url="sqlite:///tmp/x.db"),
        redis=RedisConfig(enabled=True, host="r", port=1),
        performance=PerformanceConfig(max_connections_per_session=3),
    )
    settings = as_settings(nested)
    assert (settings.host, settings.port, settings.debug) == ("localhost", 8001, True)
    assert settings.database_url == "sqlite:///tmp/x.db" and settings.redis_url == "redis://r:1/0"
    assert settings.max_connections_per_session == 3
    assert as_settings(ServerConfiguration(database=DatabaseConfig(enabled=False))).database_url == "sqlite://"


def test_nested_configuration_reaches_every_setting_with_the_same_defaults() -> None:
    """The nested ServerConfiguration (and the file's sections, derived from it) and the flat Settings
    agree: every setting can be given either way, and both shapes default to the same value."""
    nested = ServerConfiguration()
    sections = {"database", "redis", "security", "integration", "performance"}
    reachable = {name: getattr(nested, name) for name in ServerConfiguration.model_fields if name not in sections}
    for section in sections - {"database", "redis"}:
        reachable.update(getattr(nested, section).model_dump())
    reachable["database_url"] = nested.database.url
    reachable["auto_migrate"] = nested.database.auto_migrate
    reachable["redis_url"] = None
    flat = load_settings()
    missing = sorted(set(type(flat).model_fields) - {"config_file"} - set(reachable))
    assert not missing, f"settings the nested configuration cannot give: {missing}"
    assert {name: getattr(flat, name) for name in reachable} == reachable
    assert FILE_SECTIONS["performance"] == {name: name for name in PerformanceConfig.model_fields}


def test_the_original_debug_example_runs_with_its_log_level() -> None:
    """`ServerConfig(log_level=...)` of the original design's debug example is accepted, in any case."""
    from bot.rl_bot_system.server import ServerConfig, TrainingMetricsServer

    config = ServerConfig(host="localhost", port=8000, debug=True, log_level="DEBUG")
    assert config.log_level == "debug"
    assert TrainingMetricsServer(config).uvicorn_config().log_level == "debug"
    assert TrainingMetricsServer(ServerConfig(log_level="warning")).uvicorn_config().log_level == "warning"
    with pytest.raises(ConfigError, match="log_level"):
        load_settings(log_level="loud")


def test_original_import_paths_work() -> None:
    """Code written against bot.rl_bot_system.server keeps importing."""
    from bot.rl_bot_system.server import ServerConfig, TrainingMetricsServer
    from bot.rl_bot_system.server.config import SecurityConfig, ServerConfiguration as Nested
    from bot.server import ServerConfig as Same, TrainingMetricsServer as SameServer

    assert ServerConfig is Same and TrainingMetricsServer is SameServer
    assert Nested(security=SecurityConfig(cors_origins=["http://x"])).to_settings().cors_origins == ["http://x"]
    config = ServerConfig(
        host="localhost", port=8000, cors_origins=["http://localhost:3000"], max_connections_per_session=50
    )
    assert config.cors_origins == ["http://localhost:3000"]


def test_shipped_config_files_are_valid() -> None:
    """config/default.json and config/production.example.json load."""
    root = Path(__file__).resolve().parent.parent / "config"
    assert load_settings(config_file=root / "default.json").port == 8000
    assert load_settings(config_file=root / "production.example.json").database_url.startswith("postgresql")


def test_access_log_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line per request buries the log at hundreds of pushes a second: off by default, on with
    TMS_ACCESS_LOG or debug; a value that is not a boolean stops start-up."""
    from bot.server import TrainingMetricsServer

    monkeypatch.delenv("TMS_ACCESS_LOG", raising=False)
    assert TrainingMetricsServer(load_settings()).uvicorn_config().access_log is False
    assert TrainingMetricsServer(load_settings(debug=True)).uvicorn_config().access_log is True
    monkeypatch.setenv("TMS_ACCESS_LOG", "true")
    assert TrainingMetricsServer(load_settings()).uvicorn_config().access_log is True
    monkeypatch.setenv("TMS_ACCESS_LOG", "sometimes")
    with pytest.raises((ConfigError, ValueError), match="access_log"):
        load_settings()


def test_spectator_send_buffer_is_capped_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """256 KB per spectator connection unless set; 0 leaves the kernel's autotuning; negative is refused."""
    monkeypatch.delenv("TMS_WS_SEND_BUFFER", raising=False)
    assert load_settings().ws_send_buffer == 262_144
    monkeypatch.setenv("TMS_WS_SEND_BUFFER", "0")
    assert load_settings().ws_send_buffer == 0
    monkeypatch.setenv("TMS_WS_SEND_BUFFER", "-1")
    with pytest.raises((ConfigError, ValueError), match="ws_send_buffer"):
        load_settings()


def test_the_design_s_integration_settings_are_refused_or_used_never_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#26.15: GAME_SERVER_URL and enable_spectator_integration=false are refused naming why (this server has
    no part for them); DATA_STORAGE_PATH is where the data goes (the SQLite file) unless DATABASE_URL says."""
    monkeypatch.setenv("GAME_SERVER_URL", "http://localhost:4000")
    with pytest.raises(ConfigError, match="GAME_SERVER_URL .* is not supported"):
        load_settings()
    monkeypatch.delenv("GAME_SERVER_URL")
    with pytest.raises(ConfigError, match="enable_spectator_integration .* is not supported"):
        as_settings(ServerConfiguration.model_validate({"integration": {"enable_spectator_integration": False}}))
    monkeypatch.setenv("DATA_STORAGE_PATH", str(tmp_path / "store"))
    assert load_settings().database_url == f"sqlite:///{tmp_path / 'store' / 'training_metrics.db'}"
    monkeypatch.setenv("DATABASE_URL", "sqlite:///elsewhere.db")
    assert load_settings().database_url == "sqlite:///elsewhere.db"


def test_every_setting_answers_to_tms_name_and_the_designs_name_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: every setting is TMS_<NAME>. The original design's own names (MAX_CONNECTIONS_PER_SESSION, ...)
    were the only ones read for theirs, so TMS_MAX_CONNECTIONS_PER_SESSION was silently ignored."""
    monkeypatch.setenv("TMS_MAX_CONNECTIONS_PER_SESSION", "3")
    monkeypatch.setenv("TMS_MAX_TOTAL_CONNECTIONS", "7")
    monkeypatch.setenv("TMS_PORT", "9101")
    settings = Settings()
    assert (settings.max_connections_per_session, settings.max_total_connections, settings.port) == (3, 7, 9101)
    monkeypatch.setenv("MAX_CONNECTIONS_PER_SESSION", "4")  # both given: the design's name wins
    assert Settings().max_connections_per_session == 4
