"""`from bot.rl_bot_system.server.config import ServerConfiguration, ...` keeps working."""

from bot.config import (
    DatabaseConfig,
    IntegrationConfig,
    PerformanceConfig,
    RedisConfig,
    SecurityConfig,
    ServerConfig,
    ServerConfiguration,
    Settings,
)

__all__ = [
    "DatabaseConfig",
    "IntegrationConfig",
    "PerformanceConfig",
    "RedisConfig",
    "SecurityConfig",
    "ServerConfig",
    "ServerConfiguration",
    "Settings",
]
