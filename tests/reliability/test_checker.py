"""The checker catches each anomaly it names, and passes a clean history."""

from __future__ import annotations

from tests.reliability.checker import Ack, SpectatorLog, check


def watch(session_id: str, since: int, *seqs: int) -> SpectatorLog:
    log = SpectatorLog(session_id)
    log.connect(since)
    for seq in seqs:
        log.receive(seq)
    return log


def test_clean_history_with_a_reconnect_passes() -> None:
    log = watch("s", 0, 1, 2, 3)
    log.connect(3)
    log.receive(4)
    report = check([Ack("s", "k1", 1, 2), Ack("s", "k2", 3, 4)], {"s": [1, 2, 3, 4]}, [log])
    assert report["s"].ok


def test_acknowledged_but_not_stored_is_lost() -> None:
    assert check([Ack("s", "k", 1, 3)], {"s": [1, 2]}, [])["s"].lost == {3}


def test_stored_but_not_delivered_is_lost() -> None:
    report = check([], {"s": [1, 2, 3]}, [watch("s", 0, 1, 3)])["s"]
    assert report.lost == {2} and report.skipped == [(1, 3)]


def test_duplicates_out_of_order_and_holes_are_caught() -> None:
    assert check([], {"s": [1, 2]}, [watch("s", 0, 1, 2, 2)])["s"].duplicated == {2}
    assert check([], {"s": [1, 2, 3]}, [watch("s", 0, 1, 3, 2)])["s"].out_of_order == [(3, 2)]
    assert not check([], {"s": [1, 2, 4]}, [])["s"].contiguous
    assert check([Ack("s", "a", 1, 1), Ack("s", "b", 1, 1)], {"s": [1]}, [])["s"].duplicated == {1}


def test_reconnect_that_misses_the_boundary_is_a_skip() -> None:
    log = watch("s", 0, 1, 2)
    log.connect(2)
    log.receive(4)
    report = check([], {"s": [1, 2, 3, 4]}, [log])["s"]
    assert report.skipped == [(2, 4)] and report.lost == {3}
