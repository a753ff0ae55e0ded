"""Stop signals (Ctrl-C's SIGINT, a service manager's SIGTERM) held over a step they must not cut in two.

Held, a signal waits until the step is done and is raised then. Two steps need it: an event line the job's
supervisor reads (half a line garbles the next one), and the import of a C extension (numpy turns a
KeyboardInterrupt inside its core's import into an ImportError, so a stopped job looked failed). Where Python
has no `pthread_sigmask` (Windows), the step runs as it is.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def stops_held() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
