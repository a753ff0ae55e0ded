"""The ingest workers' pipe protocol: each message a 4-byte big-endian length and a pickle.

Its own module so that the server (batches.py) and the worker (worker.py) share it without the
server importing the worker's entry point, which `python -m` then runs as a module of its own.
"""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any

HEADER = struct.Struct("!I")
READY = ("ready", None)  # a worker's first message: its imports are done


def read_message(stream: IO[bytes]) -> Any | None:
    """The next message, or None at end of stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    body = stream.read(HEADER.unpack(header)[0])
    return pickle.loads(body)


def frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body
