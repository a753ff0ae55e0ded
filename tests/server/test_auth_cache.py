"""The API-key cache (bot/server/edge/auth.py): hashes of known keys only, bounded in bytes (issue #25.7)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from bot.config import Settings
from bot.server.edge.auth import KEY_CACHE_SECONDS, Authenticator, AuthError, KeyCache, Principal
from bot.store import Store
from bot.store.keys import key_hash
from tests.e2e.test_auth import keys


def principal(n: int) -> Principal:
    return Principal(f"key:{n:016x}", frozenset({"read"}), None, None, f"{n:016x}")


def test_the_cache_is_bounded_in_bytes_and_drops_the_least_recently_used() -> None:
    cache = KeyCache(max_bytes=10_000)
    for n in range(1_000):
        cache.put(key_hash(str(n)), principal(n), now=0.0)
        assert cache.bytes <= 10_000
    assert cache.get(key_hash("999"), now=0.0) == principal(999)
    assert cache.get(key_hash("0"), now=0.0) is None  # dropped long ago
    cache.put(key_hash("a"), principal(1), now=0.0)
    assert cache.get(key_hash("a"), now=KEY_CACHE_SECONDS + 0.1) is None  # looked up again once stale


async def test_unknown_keys_are_refused_and_kept_nowhere(tmp_path: Path) -> None:
    """Made-up keys of any length cost no cache memory; a real key is cached under its hash only."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'keys.db'}", enable_auth=True)
    (real,) = keys(settings.database_url, (["read"], None))
    async with Store(settings.database_url) as store:
        auth = Authenticator(settings, store)
        for length in (10, 47, 200, 256, 257, 60_000):
            with pytest.raises(AuthError) as refused:
                await auth.principal(f"Bearer tms_{secrets.token_urlsafe(length)[:length]}")
            assert refused.value.status == 401
        assert auth.key_cache.bytes == 0
        assert (await auth.principal(f"Bearer {real}")).allows("read")
        assert 0 < auth.key_cache.bytes < 1_000
        assert real not in repr(auth.key_cache.__dict__)
