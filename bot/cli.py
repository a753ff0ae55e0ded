"""The command line: `bot serve [--host] [--port] [--config FILE]`, `bot sync [PATH] [--url URL]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
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
    sync = commands.add_parser("sync", help="upload spooled batches that an SDK client could not deliver")
    sync.add_argument("path", nargs="?", help="the spool directory (default TMS_SPOOL_DIR or ~/.cache/...)")
    sync.add_argument(
        "--url",
        default=os.environ.get("TMS_SERVER_URL"),
        help="upload only the batches for this server (default TMS_SERVER_URL, else every batch to its own server)",
    )
    return parser


def sync(args: argparse.Namespace) -> int:
    """Each spooled batch goes to the server it was logged for; exit 1 while any could not be delivered."""
    import httpx

    from bot.sdk import Spool, default_spool_dir, upload_spool

    spool = Spool(Path(args.path) if args.path else default_spool_dir())
    urls = [args.url] if args.url else spool.urls()
    remaining = 0
    for url in urls:
        with httpx.Client(base_url=url, timeout=10.0) as http:
            report = upload_spool(http, spool, url)
        remaining += report.remaining
        busy = " (another process is uploading them)" if report.busy else ""
        print(
            f"bot sync: {url}: delivered {report.delivered}, rejected {report.rejected}, "
            f"remaining {report.remaining}{busy}"
        )
    if not urls:
        print(f"bot sync: nothing to send in {spool.path}")
    dead = len(spool.dead_letters())
    if dead:
        print(f"bot sync: {dead} batch(es) the servers refused are kept in {spool.path} (table dead_letters)")
    spool.close()
    return 0 if remaining == 0 else 1


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
    if args.command == "sync":
        return sync(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
