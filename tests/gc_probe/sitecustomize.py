"""Loaded by a server under test (PYTHONPATH): counts what the garbage collector frees.

SIGUSR2 collects, then appends the running total of objects freed by the
collector (never by reference counting) to $GC_PROBE_DIR/<pid>.
"""

import gc
import os
import signal
from pathlib import Path

_freed = [0]


def _count(phase, info):
    if phase == "stop":
        _freed[0] += info["collected"]


def _report(*_):
    gc.collect()
    with open(Path(os.environ["GC_PROBE_DIR"]) / str(os.getpid()), "a") as report:
        report.write(f"{_freed[0]}\n")


if os.environ.get("GC_PROBE_DIR"):
    gc.callbacks.append(_count)
    signal.signal(signal.SIGUSR2, _report)
