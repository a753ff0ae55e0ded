"""The server: `create_app(settings)` for ASGI servers and tests, `TrainingMetricsServer` to run one."""

from bot.config import ServerConfig, ServerConfiguration, Settings
from bot.server.app import TrainingMetricsServer, create_app

__all__ = ["ServerConfig", "ServerConfiguration", "Settings", "TrainingMetricsServer", "create_app"]
