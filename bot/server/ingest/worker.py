"""An ingest worker process: `python -m bot.server.ingest.worker`, started by the server (batches.py).

It reads requests from stdin and writes answers to stdout, each a 4-byte big-endian length and a pickle:
`(message_type, raw, max_items)` in, `("ok", Batch)`, `("invalid", errors)` or `("error", text)` out.
Its first message, before any request, is `("ready", None)`: its imports are done.
Its own entry point, not multiprocessing's: a spawned child re-imports the parent's main module, which
re-runs a user's script that starts the server without an `if __name__ == "__main__":` guard.
End of stdin (the server closed it, or died, even by kill -9) ends the worker.
"""

from __future__ import annotations

import sys
from typing import Any

from bot.server.ingest.pipes import READY, frame, read_message


def main() -> None:
    # Imported here so that start-up pays for them before the first request, not during it.
    from fastapi.exceptions import RequestValidationError

    from bot.server.ingest.batches import read_batch

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(frame(READY))
    stdout.flush()
    while (request := read_message(stdin)) is not None:
        message_type, raw, max_items = request
        try:
            answer: tuple[str, Any] = ("ok", read_batch(message_type, raw, max_items))
        except RequestValidationError as exc:
            answer = ("invalid", list(exc.errors()))
        except Exception as exc:  # answered, not fatal: the next request still gets a worker
            answer = ("error", f"{type(exc).__name__}: {exc}")
        stdout.write(frame(answer))
        stdout.flush()


if __name__ == "__main__":
    main()
