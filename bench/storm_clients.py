"""A reconnect storm in its own process: N spectators connect at once with `since`, retry as their 1013s
advise, and each reads until it has resumed up to the session's last seq (LAST_SEQ 0: until its first
frame, the bare baseline's greeting), then closes.

    python bench/storm_clients.py WS_URL CONNECTIONS LAST_SEQ

Prints "READY" once started (nothing is connected yet), waits for a line on stdin (the session's last seq
at that moment, when it has moved on since LAST_SEQ was given: a live push goes on during the storm),
storms, then prints one JSON line: seconds until every spectator had resumed, how many 1013 refusals there
were, any seq gap seen, and seconds until every connection was closed.

Each spectator reads with no flow control (max_queue=None). With websockets' default (16 frames), one that
stopped reading live frames after resuming stopped reading its socket too, so the server's reply to its
close sat unread behind them: every close waited out the 10 s close timeout and ended 1006. Those were the
"stragglers" of the first storm figures (issue #28): the spectators had all resumed seconds before.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter

import orjson
import websockets


async def resume(url: str, since: int, last: int, counts: Counter[str], done: list[float]) -> None:
    """Connect with since until resumed up to `last`: after a 1013, as advised; after another close, at once."""
    while True:
        try:
            query = f"?since={since}&types=training_metrics"
            async with websockets.connect(url + query, compression=None, max_queue=None) as ws:
                expected = since + 1
                async for raw in ws:
                    message = orjson.loads(raw)
                    if not last:  # the baseline: greeted
                        done.append(time.perf_counter())
                        return
                    if message["type"] == "error" and message["data"]["code"] == "try_again_later":
                        counts["refusals"] += 1
                        await asyncio.sleep(message["data"]["retry_after"])
                        break
                    seq = message.get("seq")
                    if seq is None:
                        continue
                    counts["gaps"] += seq != expected
                    expected = seq + 1
                    if seq >= last:
                        done.append(time.perf_counter())
                        return
                else:
                    counts["closed_early"] += 1
        except (OSError, TimeoutError, websockets.InvalidHandshake):
            counts["failed_connects"] += 1


async def main() -> None:
    url, connections, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    counts: Counter[str] = Counter()
    print("READY", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    last = int(line) if line.strip().isdigit() and last else last
    rng = random.Random(1)
    # Spectators of a dead instance were live: each is behind by the last second or so (here up to 20 messages).
    sinces = [rng.randrange(max(0, last - 20), last) if last else 0 for _ in range(connections)]
    start, cpu = time.perf_counter(), time.process_time()
    done: list[float] = []
    await asyncio.wait_for(asyncio.gather(*(resume(url, s, last, counts, done) for s in sinces)), 300)
    closed = time.perf_counter() - start
    done = sorted(t - start for t in done)
    result = {
        "seconds": done[-1],
        "closed_s": closed,
        "half_resumed_s": done[len(done) // 2],
        "p90_resumed_s": done[int(len(done) * 0.9)],
        "p95_resumed_s": done[int(len(done) * 0.95)],
        "p99_resumed_s": done[int(len(done) * 0.99)],
        "client_cpu_s": time.process_time() - cpu,
        **{name: counts[name] for name in ("refusals", "gaps", "closed_early", "failed_connects")},
    }
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
