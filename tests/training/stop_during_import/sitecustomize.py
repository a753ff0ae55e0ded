"""Put on a job's PYTHONPATH by tests/training/test_job_events.py: sends the process SIGINT (the supervisor's
stop) while numpy's C core imports `datetime`, where a stop on a loaded CI machine once arrived and numpy
turned it into an ImportError, so a stopped job was recorded `failed`."""

from __future__ import annotations

import os
import signal
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType


class StopDuringNumpy:
    fired = False

    def find_spec(self, name: str, path: object = None, target: ModuleType | None = None) -> ModuleSpec | None:
        if not StopDuringNumpy.fired and name == "datetime" and "numpy" in sys.modules:
            StopDuringNumpy.fired = True
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, StopDuringNumpy())  # type: ignore[arg-type]
