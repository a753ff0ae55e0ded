"""`bot serve [--host] [--port] [--config FILE]`: the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bot import __version__
from bot.config import ConfigError, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bot", description="Training Metrics Server")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server (SQLite and the in-memory broker by default)")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1, env TRAINING_METRICS_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000, env TRAINING_METRICS_PORT)")
    serve.add_argument("--config", help="JSON config file (see config/default.json)")
    serve.add_argument("--database-url", help="e.g. sqlite:///data/training_metrics.db or postgresql://user@host/db")
    return parser


def serve(args: argparse.Namespace) -> int:
    from bot.server import TrainingMetricsServer  # the server's imports are paid only by `serve`

    overrides: dict[str, Any] = {}
    for name in ("host", "port", "database_url"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.config:
        overrides["config_file"] = args.config
    try:
        settings = load_settings(**overrides)
    except (ConfigError, ValueError) as exc:
        print(f"bot serve: {exc}", file=sys.stderr)
        return 2
    TrainingMetricsServer(settings).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
