"""API keys in the store: created (the secret is returned once, only its hash kept), listed, revoked."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from sqlalchemy import Connection, insert, select, update

from bot.store.tables import api_keys

KEY_PREFIX = "tms_"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def create_key(conn: Connection, scopes: list[str], session_id: str | None, name: str | None) -> tuple[str, str]:
    """(key_id, the key): the key itself is never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = secrets.token_hex(8)
    conn.execute(
        insert(api_keys).values(
            key_id=key_id,
            key_hash=key_hash(key),
            name=name,
            scopes=" ".join(sorted(set(scopes))),
            session_id=session_id,
            created_at=time.time(),
        )
    )
    return key_id, key


def find_key(conn: Connection, key: str) -> Any:
    """The key's row if it exists and is not revoked, else None."""
    return find_key_by_hash(conn, key_hash(key))


def find_key_by_hash(conn: Connection, digest: str) -> Any:
    """find_key() by the key's SHA-256 (key_hash), for a caller that must not hold on to the key itself."""
    c = api_keys.c
    return conn.execute(select(api_keys).where(c.key_hash == digest, c.revoked_at.is_(None))).first()


def list_keys(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
    return [{k: v for k, v in row._mapping.items() if k != "key_hash"} for row in rows]


def revoke_key(conn: Connection, key_id: str) -> bool:
    c = api_keys.c
    done = conn.execute(
        update(api_keys).where(c.key_id == key_id, c.revoked_at.is_(None)).values(revoked_at=time.time())
    )
    return bool(done.rowcount)


def revoke_named(conn: Connection, name: str) -> bool:
    """Revoke every live key of this name (a training job's own: bot/store/jobs.py)."""
    c = api_keys.c
    done = conn.execute(update(api_keys).where(c.name == name, c.revoked_at.is_(None)).values(revoked_at=time.time()))
    return bool(done.rowcount)


def revoked_among(conn: Connection, key_ids: list[str]) -> set[str]:
    """Which of these keys are revoked (or gone): spectators holding them are closed."""
    c = api_keys.c
    live = set(conn.execute(select(c.key_id).where(c.key_id.in_(key_ids), c.revoked_at.is_(None))).scalars())
    return set(key_ids) - live
