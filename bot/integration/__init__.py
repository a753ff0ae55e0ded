"""Make any training engine a client: the original integration API, and framework adapters.

The Stable-Baselines3 callback lives in `bot.integration.sb3` and the Gymnasium wrapper in
`bot.integration.gymnasium`; they import their frameworks, so they are not imported here.
"""

from bot.integration.engine import MetricsCollector, SpectatorManagerIntegration, TrainingEngineIntegration

__all__ = ["MetricsCollector", "SpectatorManagerIntegration", "TrainingEngineIntegration"]
