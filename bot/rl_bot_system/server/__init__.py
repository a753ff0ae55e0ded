"""`from bot.rl_bot_system.server import TrainingMetricsServer, ServerConfig` keeps working."""

from bot.server import ServerConfig, ServerConfiguration, TrainingMetricsServer, create_app

__all__ = ["ServerConfig", "ServerConfiguration", "TrainingMetricsServer", "create_app"]
