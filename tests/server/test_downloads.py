"""Which requests are downloads, and their count per client (bot/server/edge/downloads.py)."""

from __future__ import annotations

import pytest

from bot.server.edge.downloads import DownloadSlots, is_download


@pytest.mark.parametrize(
    ("method", "path", "counted"),
    [
        ("GET", "/api/training/sessions/run-1/history", True),
        ("HEAD", "/api/training/sessions/run-1/export", True),
        ("POST", "/api/training/sessions/run-1/history", False),
        ("GET", "/api/training/sessions/run-1/series", False),
        ("GET", "/api/training/sessions/history", False),
        ("GET", "/api/training/sessions/run-1/history/extra", False),
    ],
)
def test_only_history_pages_and_exports_count(method: str, path: str, counted: bool) -> None:
    """The two reads that can hold tens of MB while they are sent, and nothing else."""
    assert is_download(method, path) is counted


def test_a_client_at_its_limit_is_refused_until_one_is_given_back() -> None:
    """Each client has its own count; a client with none in flight is forgotten."""
    slots = DownloadSlots(per_client=2)
    assert slots.take("10.0.0.1") and slots.take("10.0.0.1")
    assert not slots.take("10.0.0.1")
    assert slots.take("10.0.0.2")
    slots.give_back("10.0.0.1")
    assert slots.take("10.0.0.1")
    for _ in range(2):
        slots.give_back("10.0.0.1")
    slots.give_back("10.0.0.2")
    assert slots.in_flight == {}


def test_zero_is_no_limit() -> None:
    """max_downloads_per_client=0 takes every download."""
    slots = DownloadSlots(per_client=0)
    assert all(slots.take("10.0.0.1") for _ in range(100))
