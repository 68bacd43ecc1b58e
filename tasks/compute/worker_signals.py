"""Dask preload of a local cluster's worker processes: they ignore SIGINT, so that a terminal's Ctrl-C (sent to the
whole process group) reaches the run alone, which closes them as it unwinds (tasks.interrupt); interrupted on
their own, they would print tracebacks and their nannies would restart them."""

from __future__ import annotations

import signal
from typing import Any

PRELOAD = __name__


def dask_setup(worker: Any) -> None:
    """Called by Dask in each worker process as it starts."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
