"""Pacing a burst of new connections and joins over event-loop turns (bot/server/pacing.py, used by the HTTP
protocol's intake and the joins' turnstile; bot/server/edge/paced_accept.py): each lets a few through per
turn, in the order they came, and everyone in the end."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from bot.server.live.turnstile import Turnstile
from bot.server.pacing import PerTurn


async def turns_taken(count: int, per_turn: int) -> list[int]:
    """The loop turn (counted by a ticker) in which each of `count` callers went through the turnstile."""
    turn = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal turn
        while not stop.is_set():
            await asyncio.sleep(0)
            turn += 1

    turnstile = Turnstile(per_turn)
    order: list[tuple[int, int]] = []

    async def caller(n: int) -> None:
        await turnstile.through()
        order.append((n, turn))

    ticking = asyncio.create_task(ticker())
    await asyncio.gather(*(caller(n) for n in range(count)))
    stop.set()
    await ticking
    assert [n for n, _ in order] == list(range(count))  # in the order they came
    return [t for _, t in order]


async def test_the_turnstile_lets_a_few_through_per_turn_in_order() -> None:
    turns = await turns_taken(40, 4)
    per_turn = {t: turns.count(t) for t in turns}
    assert max(per_turn.values()) <= 4 and len(per_turn) >= 10


async def test_the_turnstile_holds_nobody_when_few_come() -> None:
    turnstile = Turnstile(4)
    for _ in range(4):
        await asyncio.wait_for(turnstile.through(), 0.5)  # through at once, no later turn needed


async def test_a_caller_that_leaves_the_turnstile_takes_no_place() -> None:
    turnstile = Turnstile(1)
    callers = [asyncio.create_task(turnstile.through()) for _ in range(3)]
    await asyncio.sleep(0)  # all three came in one turn: the first went through, the others wait
    assert [caller.done() for caller in callers] == [True, False, False]
    callers[1].cancel()
    await asyncio.wait_for(callers[2], 1.0)
    assert callers[1].cancelled()


async def test_the_acceptor_takes_a_few_connections_per_turn_and_serves_them_all() -> None:
    from bot.server.edge.paced_accept import PacedAcceptor

    served: list[bytes] = []

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            served.append(data)
            self.transport.write(data)  # type: ignore[attr-defined]

    listening = socket.create_server(("127.0.0.1", 0), backlog=128)
    acceptor = PacedAcceptor(listening, Echo, per_turn=2)
    accepted: list[int] = []
    original = acceptor._accept

    def counting() -> None:
        before = len(acceptor._starting)
        original()
        accepted.append(len(acceptor._starting) - before)

    acceptor._accept = counting  # type: ignore[method-assign]
    acceptor.start()
    port = listening.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]  # all waiting in the queue
    try:
        for n, client in enumerate(clients):
            client.sendall(b"%d" % n)
        async with asyncio.timeout(10):
            while len(served) < 20:
                await asyncio.sleep(0.01)
        assert sorted(served) == sorted(b"%d" % n for n in range(20))
        assert max(accepted) <= 2 and sum(accepted) == 20
    finally:
        for client in clients:
            client.close()
        acceptor.close()
    assert listening.fileno() == -1


async def test_per_turn_calls_the_waiting_a_few_per_turn_in_order() -> None:
    pacing, went, turn = PerTurn(per_turn=3), [], [0]

    def later(n: int) -> Callable[[], bool]:
        def go() -> bool:
            went.append((n, turn[0]))
            return True

        return go

    admitted = [pacing.now_or_later(later(n)) for n in range(20)]
    assert admitted == [True] * 3 + [False] * 17
    while len(went) < 17:
        turn[0] += 1
        await asyncio.sleep(0)
    assert [n for n, _ in went] == list(range(3, 20))
    turns = [t for _, t in went]
    assert max(turns.count(t) for t in set(turns)) <= 3 and len(set(turns)) >= 6


async def test_a_failing_or_gone_caller_costs_only_itself(caplog: Any) -> None:
    pacing, went = PerTurn(per_turn=1), []

    def fails() -> bool:
        raise RuntimeError("a bug")

    assert pacing.now_or_later(lambda: True)
    assert not pacing.now_or_later(fails)
    assert not pacing.now_or_later(lambda: False)  # it left meanwhile: takes no place
    for n in range(3):
        assert not pacing.now_or_later(lambda n=n: went.append(n) is None)
    for _ in range(10):
        await asyncio.sleep(0)
    assert went == [0, 1, 2] and "a paced step failed" in caplog.text
    await asyncio.sleep(0)
    assert pacing.now_or_later(lambda: True)  # later ones still go at once
