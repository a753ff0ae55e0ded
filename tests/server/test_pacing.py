"""Pacing a burst of new connections and joins over event-loop turns (bot/server/edge/paced_accept.py,
bot/server/edge/http_guard.py's Intake, bot/server/live/turnstile.py): each lets a few through per turn, in
the order they came, and lets everyone through in the end."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from bot.server.live.turnstile import Turnstile


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


class HeldConnection:
    """What the intake asks of a connection: its transport, and take_in() when its turn comes."""

    class Transport:
        def is_closing(self) -> bool:
            return False

    def __init__(self, taken: list[int], n: int, turn: list[int]) -> None:
        self.transport = self.Transport()
        self.taken, self.n, self.turn = taken, n, turn

    def take_in(self) -> None:
        self.taken.append(self.turn[0])


async def test_the_intake_takes_a_few_new_connections_per_turn() -> None:
    from bot.server.edge.http_guard import Intake

    intake, taken, turn = Intake(per_turn=3), [], [0]
    admitted = [intake.admit(HeldConnection(taken, n, turn)) for n in range(20)]  # type: ignore[arg-type]
    assert admitted == [True] * 3 + [False] * 17
    while len(taken) < 17:
        turn[0] += 1
        await asyncio.sleep(0)
    assert max(taken.count(t) for t in set(taken)) <= 3 and len(set(taken)) >= 6


async def test_a_connection_that_fails_to_be_taken_in_costs_only_itself(caplog: Any) -> None:
    from bot.server.edge.http_guard import Intake

    aborted: list[int] = []

    class Failing(HeldConnection):
        class Transport(HeldConnection.Transport):
            def abort(self) -> None:
                aborted.append(1)

        def take_in(self) -> None:
            raise RuntimeError("a bug")

    intake, taken, turn = Intake(per_turn=1), [], [0]
    intake.admit(HeldConnection(taken, 0, turn))  # type: ignore[arg-type]
    intake.admit(Failing(taken, 1, turn))  # type: ignore[arg-type]
    for n in range(2, 5):
        intake.admit(HeldConnection(taken, n, turn))  # type: ignore[arg-type]
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(taken) == 3 and aborted == [1] and "taking in a new connection failed" in caplog.text
    assert intake.admit(HeldConnection(taken, 9, turn))  # type: ignore[arg-type]  # later ones still come in
