"""Background tasks that belong to an object: cancelled and awaited when it closes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel the tasks, then wait until each has ended.

    A task's own failure is logged, never raised: it must not keep the caller from closing what comes next.
    The caller's own cancellation is never swallowed (asyncio.wait raises it, and leaves the tasks ending).
    """
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    if not live:
        return
    await asyncio.wait(live)
    for task in live:
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task %s had failed: %r", task.get_name(), task.exception())
