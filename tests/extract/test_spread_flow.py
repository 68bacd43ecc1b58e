"""Shard tasks spread over Dask workers (flows/extract.py): with more shards than workers, no worker holds two
shards while another holds none, from the first shard on every worker to the last shard's start; observed on
the scheduler's task stream."""

from __future__ import annotations

from distributed import get_task_stream
from tiny import TINY

from flows.extract import extract
from tasks.compute import dask_cluster
from tasks.config import ExtractConfig


def _running(stream: list[dict]) -> list[tuple[float, int, str]]:
    """(time, +1 start / -1 end, worker) of every task's computation, in time order (ends before starts)."""
    events = []
    for entry in stream:
        for part in entry["startstops"]:
            if part["action"] == "compute":
                events += [(part["start"], 1, entry["worker"]), (part["stop"], -1, entry["worker"])]
    return sorted(events, key=lambda event: (event[0], event[1]))


def test_no_worker_holds_two_shards_while_another_idles(prefect_server, tmp_path):
    with dask_cluster(backend="cpu", n_workers=2, threads_per_worker=2) as compute, \
            get_task_stream(compute.client) as stream:
        config = ExtractConfig(dest=str(tmp_path / "dataset"), **{**TINY, "shard_size": 10},
                               shards=list(range(8)), runner="dask",
                               scheduler=compute.client.scheduler.address, staged_shards=2)
        summary = extract(config)
        workers = sorted(compute.client.nthreads())
    events = _running(stream.data)
    assert summary["shards"] == 8 and len(events) == 2 * 8
    t0 = events[0][0]
    trace = [(round(time - t0, 2), change, worker[-5:]) for time, change, worker in events]
    last_start = max(time for time, change, _ in events if change == 1)
    load, started = dict.fromkeys(workers, 0), set()
    for time, change, worker in events:
        load[worker] += change
        started.add(worker)
        assert max(load.values()) <= 2, load
        if started == set(workers) and time < last_start:  # after the first submissions reached every worker
            assert not (max(load.values()) == 2 and min(load.values()) == 0), (time - t0, trace)
    assert {worker for _, _, worker in events} == set(workers)
