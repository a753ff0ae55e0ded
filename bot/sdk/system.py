"""What a run costs the machine, as W&B shows it: the training process's CPU, memory and threads (and a GPU's
utilisation and memory, where one and its library are there), sampled every few seconds on a thread of its
own and logged as the run's `system/...` metrics, at the run's latest step and episode.

psutil reads the process on Linux, macOS and Windows alike; a GPU is read with NVIDIA's NVML (pynvml) when
it is installed, else with torch's own counters when torch is already imported and sees a GPU.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from typing import Any

import psutil

DEFAULT_INTERVAL = 5.0  # seconds between two samples: W&B's cadence is of this order; a sample costs ~100 µs
SYSTEM_METRICS = ("system/cpu_percent", "system/rss_mb", "system/threads", "system/gpu_percent", "system/gpu_memory_mb")
MB = 1024 * 1024


def sample_process(process: psutil.Process) -> dict[str, float]:
    """One sample: CPU % since the last one (100 % is one core), resident memory in MB, OS threads."""
    with process.oneshot():
        return {
            "system/cpu_percent": process.cpu_percent(None),
            "system/rss_mb": round(process.memory_info().rss / MB, 3),
            "system/threads": float(process.num_threads()),
        }


def sample_gpu() -> dict[str, float]:
    """The first GPU's utilisation and this process's memory on it, where they can be read; else nothing."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return {
            "system/gpu_percent": float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            "system/gpu_memory_mb": round(pynvml.nvmlDeviceGetMemoryInfo(handle).used / MB, 3),
        }
    except Exception:  # no pynvml, no driver, no GPU: no GPU figures
        pass
    torch: Any = sys.modules.get("torch")  # never imported for this: a run without torch stays without it
    with contextlib.suppress(Exception):
        if torch is not None and torch.cuda.is_available():
            return {"system/gpu_memory_mb": round(torch.cuda.memory_allocated() / MB, 3)}
    return {}


class SystemSampler:
    """Calls `log(sample)` every `interval` seconds until stopped; a sample that fails is skipped."""

    def __init__(self, log: Callable[[dict[str, float]], None], interval: float = DEFAULT_INTERVAL) -> None:
        if not interval > 0:
            raise ValueError(f"system metrics interval must be > 0 seconds, got {interval!r}")
        self.log, self.interval = log, interval
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first call only starts the count
        self._gpu = True  # off after the first sample that finds no GPU
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tms-system-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self.interval + 1.0)

    def sample(self) -> dict[str, float]:
        figures = sample_process(self.process)
        if self._gpu:
            gpu = sample_gpu()
            self._gpu = bool(gpu)
            figures |= gpu
        return figures

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            with contextlib.suppress(Exception):  # the run has ended, or the process cannot be read now
                self.log(self.sample())
