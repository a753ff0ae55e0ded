"""`from bot.rl_bot_system.server.integration import TrainingEngineIntegration, ...` keeps working."""

from bot.integration import MetricsCollector, SpectatorManagerIntegration, TrainingEngineIntegration

__all__ = ["MetricsCollector", "SpectatorManagerIntegration", "TrainingEngineIntegration"]
