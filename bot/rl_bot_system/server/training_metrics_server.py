"""The original design's server module: `python -m bot.rl_bot_system.server.training_metrics_server` (its
Docker CMD) runs the server on the settings from the environment, as `bot serve` does."""

from __future__ import annotations

import sys

from bot.cli import main as cli_main
from bot.server import ServerConfig, ServerConfiguration, TrainingMetricsServer, create_app

__all__ = ["ServerConfig", "ServerConfiguration", "TrainingMetricsServer", "create_app", "main"]


def main() -> int:
    """Serve; `--host`, `--port`, `--config` and `--database-url` as for `bot serve`."""
    return cli_main(["serve", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
