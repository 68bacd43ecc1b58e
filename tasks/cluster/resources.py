"""What the clustering's stages cost: the memory budget (each stage estimates what it needs before it starts and
fails at once, in one line naming the stage, the rows, the need, the budget and the flag, where it cannot fit)
and the wall time of each stage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

from tasks.errors import InputError

GB = 2**30


class MemoryBudgetError(InputError):
    """A stage's estimated memory is over the budget."""


def readable(size: float) -> str:
    """Bytes in the largest unit that keeps a number of at least 1 (B, KB, MB, GB)."""
    for unit, scale in (("GB", GB), ("MB", 2**20), ("KB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes that one process of the run (the flow or a Dask worker) may hold for a stage's arrays."""

    bytes: int

    @classmethod
    def of(cls, gigabytes: float | None, processes: int) -> MemoryBudget:
        """`gigabytes` where given, else this machine's memory shared by `processes` processes."""
        if gigabytes is not None:
            return cls(int(gigabytes * GB))
        return cls(int(psutil.virtual_memory().total / max(processes, 1)))

    def check(self, stage: str, rows: int, need: int, advice: str = "") -> None:
        """Raises MemoryBudgetError where `need` bytes for `rows` rows are over the budget."""
        if need > self.bytes:
            raise MemoryBudgetError(
                f"{stage}: {rows:,} rows need about {readable(need)}, over the memory budget of "
                f"{readable(self.bytes)} a process (--memory-budget){'; ' + advice if advice else ''}")

    def check_pca_fit(self, stage: str, fit_rows: int, available: int, dim: int) -> None:
        """The PCA fit's need: float64 copies of the rows it is fitted on, `fit_rows` or all `available` if fewer."""
        rows = min(fit_rows, available)
        self.check(f"{stage}: PCA fit", rows, 3 * rows * dim * 8, "lower --pca-fit-rows")


@contextmanager
def timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Adds the wall time of the block to seconds[stage]."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = round(seconds.get(stage, 0.0) + time.perf_counter() - started, 2)
