"""Shard tasks spread over Dask workers (flows/extract.py): with more shards than workers, no worker holds more
than `staged_shards` shards, nor two while another holds none, from the first shard on every worker to the last
shard's arrival. Observed on the workers, by a plugin that stamps each task's arrival and finish with the host's
clock: the scheduler's task stream shifts each worker's times by its estimated clock offset, which moves between
heartbeats and can make one thread's consecutive tasks overlap."""

from __future__ import annotations

import time

from distributed import WorkerPlugin
from tiny import TINY

from flows.extract import extract
from tasks.compute import dask_cluster
from tasks.config import ExtractConfig

PLUGIN = "held-shards"


def _held_shard_events() -> WorkerPlugin:
    """A worker plugin that keeps (time, +1 arrival / -1 finish) of every task the worker holds. Defined here so
    that it travels to the worker processes by value."""

    class HeldShards(WorkerPlugin):
        name = PLUGIN

        def setup(self, worker) -> None:
            self.events: list[tuple[float, int]] = []

        def transition(self, key, start: str, finish: str, **kwargs) -> None:
            if start == "released" and finish not in ("released", "forgotten"):
                self.events.append((time.time(), 1))
            elif finish in ("memory", "error"):
                self.events.append((time.time(), -1))

    return HeldShards()


def test_no_worker_holds_two_shards_while_another_idles(prefect_server, tmp_path):
    depth = 2
    with dask_cluster(backend="cpu", n_workers=2, threads_per_worker=2) as compute:
        compute.client.register_plugin(_held_shard_events())
        config = ExtractConfig(dest=str(tmp_path / "dataset"), **{**TINY, "shard_size": 10},
                               shards=list(range(8)), runner="dask",
                               scheduler=compute.client.scheduler.address, staged_shards=depth)
        summary = extract(config)
        held = compute.client.run(lambda dask_worker: dask_worker.plugins[PLUGIN].events)
    events = sorted(((stamp, change, worker) for worker, stamps in held.items() for stamp, change in stamps),
                    key=lambda event: (event[0], event[1]))  # finishes before arrivals at one instant
    assert summary["shards"] == 8 and len(events) == 2 * 8
    assert {worker for _, _, worker in events} == set(held)
    t0 = events[0][0]
    trace = [(round(stamp - t0, 3), change, worker[-5:]) for stamp, change, worker in events]
    last_arrival = max(stamp for stamp, change, _ in events if change == 1)
    load, reached = dict.fromkeys(held, 0), set()
    for stamp, change, worker in events:
        load[worker] += change
        reached.add(worker)
        assert max(load.values()) <= depth, trace
        if reached == set(held) and stamp < last_arrival:  # after the first submissions reached every worker
            assert not (max(load.values()) == depth and min(load.values()) == 0), trace
