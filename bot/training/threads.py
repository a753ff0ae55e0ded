"""How many threads torch may use in a training process."""

from __future__ import annotations

import contextlib

import torch

DEFAULT_THREADS = 1


def limit_threads(threads: int) -> None:
    """torch's own thread pools sized to `threads`: its default (a thread per core) thrashes when the server or
    another job holds a core, and networks this small gain nothing from more (bench/train_threads.py)."""
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set in this process: it can be set only once
        torch.set_num_interop_threads(threads)
