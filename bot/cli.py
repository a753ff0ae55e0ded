"""The command line: `bot serve`, `bot db current|upgrade`, `bot sync [PATH] [--url URL]`, `bot train` and `bot demo`
(bot/training/cli.py)."""

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
    serve.add_argument("--log-format", choices=["text", "json"], help="json: one object per line (env TMS_LOG_FORMAT)")
    serve.add_argument(
        "--log-level", choices=["critical", "error", "warning", "info", "debug", "trace"], help="env TMS_LOG_LEVEL"
    )
    db = commands.add_parser("db", help="the database's schema: `bot db current`, `bot db upgrade`")
    db.add_argument("action", choices=["current", "upgrade"], help="show the schema revision, or migrate to the newest")
    db.add_argument("--config", help="JSON config file (see config/default.json)")
    db.add_argument("--database-url", help="default: DATABASE_URL, the config file, else the default SQLite file")
    keys = commands.add_parser("keys", help="API keys for security.enable_auth: create, list, revoke")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("key_id", nargs="?", help="the key to revoke (its id, from `bot keys list`)")
    keys.add_argument("--scope", action="append", choices=["read", "write", "admin"], help="repeat for several")
    keys.add_argument("--session", help="limit the key to this session id")
    keys.add_argument("--name", help="a note to recognise the key by")
    keys.add_argument("--config", help="JSON config file (see config/default.json)")
    keys.add_argument("--database-url", help="default: DATABASE_URL, the config file, else the default SQLite file")
    sync = commands.add_parser("sync", help="upload spooled batches that an SDK client could not deliver")
    sync.add_argument("path", nargs="?", help="the spool directory (default TMS_SPOOL_DIR or ~/.cache/...)")
    sync.add_argument(
        "--url",
        default=os.environ.get("TMS_SERVER_URL"),
        help="upload only the batches for this server (default TMS_SERVER_URL, else every batch to its own server)",
    )
    train_arguments(
        commands.add_parser("train", help="train the reference DQN (the train extra: pip install .[train])")
    )
    demo = commands.add_parser("demo", help="serve, train CartPole briefly into it, and say where to watch")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--episodes", type=int, default=300)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--output", default="runs/demo")
    demo.add_argument("--no-keep-serving", dest="keep_serving", action="store_false", help="stop when the run ends")
    return parser


def train_arguments(train: argparse.ArgumentParser) -> None:
    """`bot train`'s options (defined here: building the parser must not import torch)."""
    train.add_argument("--config", "-c", help="a YAML TrainingConfig, or a shipped one by name: cartpole")
    train.add_argument("--episodes", "-e", type=int, help="max_episodes")
    train.add_argument("--resume", "-r", help="continue from this checkpoint (.pt), with the configuration it holds")
    train.add_argument("--eval-only", action="store_true", help="evaluate --checkpoint greedily; train nothing")
    train.add_argument("--checkpoint", help="the checkpoint --eval-only evaluates (with the configuration it holds)")
    train.add_argument("--output", "-o", default="runs/latest", help="where checkpoints, logs and curves go")
    train.add_argument("--seed", type=int, help="seed of the environment, the agent and torch")
    train.add_argument("--wandb", action="store_true", help="also log to Weights & Biases (the wandb extra)")
    train.add_argument("--agent-type", choices=["dqn", "double_dqn"], help="DQN or Double DQN")
    train.add_argument("--eval-episodes", type=int, help="greedy episodes per evaluation")
    train.add_argument("--env", help="any Gymnasium id (default: the config's, else CartPole-v1)")
    train.add_argument("--server", help="push into a new session on this server and say where to watch it")
    train.add_argument(
        "--threads", type=int, default=1, help="torch's threads (default 1: faster for small networks on shared cores)"
    )


def sync(args: argparse.Namespace) -> int:
    """Each spooled batch goes to the server it was logged for; exit 1 while any could not be delivered."""
    import httpx

    from bot.sdk import Spool, default_spool_dir, upload_spool
    from bot.sdk.client import auth_headers

    spool = Spool(Path(args.path) if args.path else default_spool_dir())
    urls = [args.url] if args.url else spool.urls()
    remaining = 0
    for url in urls:
        # A server with auth on: a write key, in TMS_API_KEY.
        with httpx.Client(base_url=url, timeout=10.0, headers=auth_headers()) as http:
            report = upload_spool(http, spool, url)
        remaining += report.remaining
        busy = " (another process is uploading them)" if report.busy else ""
        print(
            f"bot sync: {url}: delivered {report.delivered}, rejected {report.rejected}, "
            f"remaining {report.remaining}{busy}"
        )
        if report.refused_credential:  # kept in the spool: the same command with a good key sends them
            print(
                f"bot sync: the server at {url} refused the credential ({report.refused_credential}): "
                "set TMS_API_KEY to a key that may write these sessions (scope write, not limited to another "
                "session) and run it again",
                file=sys.stderr,
            )
    if not urls:
        print(f"bot sync: nothing to send in {spool.path}")
    dead = len(spool.dead_letters())
    if dead:
        print(f"bot sync: {dead} batch(es) the servers refused are kept in {spool.path} (table dead_letters)")
    spool.close()
    return 0 if remaining == 0 else 1


def api_keys(args: argparse.Namespace) -> int:
    """`bot keys create --scope write [--session ID]` prints a new key once (only its hash is kept);
    `bot keys list` shows every key's id, scopes and session; `bot keys revoke KEY_ID` ends one."""
    from bot.store.engine import create_engines
    from bot.store.keys import create_key, list_keys, revoke_key
    from bot.store.schema import prepare_schema

    if args.action == "create" and not args.scope:
        print("bot keys create: give at least one --scope (read, write or admin)", file=sys.stderr)
        return 2
    if args.action == "revoke" and not args.key_id:
        print("bot keys revoke: name the key id (bot keys list shows them)", file=sys.stderr)
        return 2
    overrides: dict[str, Any] = {"database_url": args.database_url} if args.database_url else {}
    if args.config:
        overrides["config_file"] = args.config
    try:
        writer, reader = create_engines(load_settings(**overrides).database_url)
        prepare_schema(writer)
    except Exception as exc:
        print(f"bot keys: {exc}", file=sys.stderr)
        return 2
    try:
        with writer.begin() as conn:
            if args.action == "create":
                key_id, key = create_key(conn, args.scope, args.session, args.name)
                print(f"key id {key_id}; the key (shown once, keep it secret):\n{key}")
            elif args.action == "list":
                for row in list_keys(conn):
                    state = "revoked" if row["revoked_at"] else "active"
                    session = row["session_id"] or "*"
                    print(f"{row['key_id']}  {row['scopes']:<16} {session:<24} {state}  {row['name'] or ''}")
            elif not revoke_key(conn, args.key_id):
                print(f"bot keys: no active key {args.key_id!r}", file=sys.stderr)
                return 1
            else:
                print(f"revoked {args.key_id}")
    finally:
        writer.dispose()
        reader.dispose()
    return 0


def database(args: argparse.Namespace) -> int:
    """`bot db current` prints the revision; `bot db upgrade` migrates to the newest and says from where."""
    from bot.store import StoreError
    from bot.store.engine import create_engines
    from bot.store.schema import current_revision, head, upgrade

    overrides: dict[str, Any] = {"database_url": args.database_url} if args.database_url else {}
    if args.config:
        overrides["config_file"] = args.config
    try:
        url = load_settings(**overrides).database_url
        if args.action == "current" and (missing := _missing_sqlite_file(url)) is not None:
            # before the engines, which make the file's folders for a new database
            print(f"bot db: no database at {missing} (`bot db upgrade` creates one)", file=sys.stderr)
            return 2
        writer, reader = create_engines(url)
    except (ConfigError, ValueError) as exc:
        print(f"bot db: {exc}", file=sys.stderr)
        return 2
    try:
        if args.action == "current":
            with writer.connect() as conn:
                current = current_revision(conn)
            state = "empty" if current is None else "up to date" if current == head() else f"behind {head()}"
            print(f"{current or '-'} ({state})")
        else:
            before, after = upgrade(writer)
            done = "created" if before is None else f"was {before}" if before != after else "nothing to do"
            print(f"bot db: at revision {after} ({done})")
    except StoreError as exc:
        print(f"bot db: {exc}", file=sys.stderr)
        return 1
    finally:
        writer.dispose()
        reader.dispose()
    return 0


def _missing_sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, when it does not exist; None for any other database (or one in memory).
    SQLite creates a missing file on connect, so `bot db current` on a mistyped path left an empty database
    there and reported it as merely empty."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    path = Path(database)
    return None if path.exists() else path


def serve(args: argparse.Namespace) -> int:
    from bot.server import TrainingMetricsServer  # the server's imports are paid only by `serve`

    overrides: dict[str, Any] = {}
    for name in ("host", "port", "database_url", "log_format", "log_level"):
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
    if args.command == "db":
        return database(args)
    if args.command == "keys":
        return api_keys(args)
    if args.command in ("train", "demo"):
        try:
            from bot.training import cli as training
        except ImportError as exc:
            print(f"bot {args.command}: needs the train extra (pip install .[train]): {exc}", file=sys.stderr)
            return 2
        return training.train_command(args) if args.command == "train" else training.demo_command(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
