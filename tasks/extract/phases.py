"""The phases of a shard's batches, labelled for torch.profiler (a label costs little when nothing profiles), and
the breakdown of a profile by them: where each batch's time goes, and how long the GPU idled between kernels."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch.autograd import DeviceType
from torch.profiler import record_function

PREFIX = "extract."
BATCH = "batch"
PHASES = ("bert", "statistics", "scaling", "encoder", "descriptors", "copy", "writer_wait")  # the parts of a batch, in order


def phase(name: str) -> record_function:
    """A profiler label for one phase of a batch, or for the batch itself. Only the thread that started the
    profiler is recorded: the writer thread's work shows as the time the batches wait for it."""
    return record_function(PREFIX + name)


@dataclass
class PhaseTime:
    """One label's totals over a profile (microseconds): how often it ran on the host, its host (wall) time,
    and on a GPU the span of the device work launched inside it."""

    count: int = 0
    host_us: float = 0.0
    device_us: float = 0.0


def _on_host(event) -> bool:
    return event.device_type == DeviceType.CPU


def phase_times(events: Iterable) -> dict[str, PhaseTime]:
    """The labelled phases' totals in a profile's events (`prof.events()`), by name without the prefix."""
    out: dict[str, PhaseTime] = {}
    for event in events:
        if not event.name.startswith(PREFIX):
            continue
        times = out.setdefault(event.name.removeprefix(PREFIX), PhaseTime())
        if _on_host(event):
            times.count += 1
            times.host_us += event.time_range.elapsed_us()
        else:  # the label's range as the device ran it
            times.device_us += event.time_range.elapsed_us()
    return out


def device_work(events: Iterable) -> list[tuple[float, float]]:
    """(start, end) of every kernel and copy the device ran in a profile's events (not the labels' ranges)."""
    return [(event.time_range.start, event.time_range.end) for event in events
            if not _on_host(event) and not event.is_user_annotation]


@dataclass(frozen=True)
class DeviceIdle:
    """The device's kernels and copies over a profile (microseconds): the span from the first start to the last
    end, the time something ran, and the rest (the gaps between them)."""

    span_us: float
    busy_us: float

    @property
    def idle_us(self) -> float:
        return self.span_us - self.busy_us


def device_idle(intervals: Iterable[tuple[float, float]]) -> DeviceIdle:
    """Busy and idle time of a device from the (start, end) of the work it ran (overlapping work counted once)."""
    ordered = sorted(intervals)
    if not ordered:
        return DeviceIdle(0.0, 0.0)
    busy, (start, end) = 0.0, ordered[0]
    first = start
    for begin, finish in ordered[1:]:
        if begin > end:
            busy += end - start
            start, end = begin, finish
        else:
            end = max(end, finish)
    busy += end - start
    return DeviceIdle(end - first, busy)
