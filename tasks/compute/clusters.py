"""Dask clusters: attach to a scheduler, or start LocalCUDACluster (GPUs + gpu extra) or LocalCluster (CPU)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from distributed import Client, LocalCluster

from tasks.compute.gpus import Backend, choose_backend, gpu_extra_installed, visible_gpus
from tasks.compute.worker_signals import PRELOAD


@dataclass
class Compute:
    """A connected Dask client, which backend its workers run, and a sentence saying so."""

    client: Client
    gpu: bool
    description: str


def _workers_have_gpus(client: Client) -> bool:
    def probe() -> bool:
        return gpu_extra_installed() and visible_gpus() > 0

    answers = client.run(probe)
    return bool(answers) and all(answers.values())


@contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    """Only warnings from Dask's scheduler (here) and workers (spawned), whose INFO start-up lines would
    otherwise reach the flow's console through Prefect's root handler."""
    import dask

    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ.DASK_LOGGING__DISTRIBUTED": "warning"}):
            yield
    finally:
        logger.setLevel(level)


SMALL_INPUT_BYTES = 2**30
WorkerKind = Literal["auto", "processes", "threads"]


def local_processes(kind: WorkerKind, input_bytes: int) -> bool:
    """Whether a local CPU cluster's workers are processes: where asked, or ('auto') for inputs of at least
    SMALL_INPUT_BYTES. Below that, worker threads in this process cost nothing to start, and worker processes
    would spend longer starting and importing than working."""
    return kind == "processes" or (kind == "auto" and input_bytes >= SMALL_INPUT_BYTES)


@contextmanager
def dask_cluster(scheduler: str | None = None, backend: Backend = "auto", n_workers: int | None = None,
                 threads_per_worker: int | None = None, processes: bool = True) -> Iterator[Compute]:
    """A Dask client: attached to `scheduler`, or to a cluster started here (one worker per GPU, or one per
    core by default; CPU workers in processes, or threads of this process where `processes` is false) and
    closed on exit."""
    if scheduler:
        with Client(scheduler) as client:
            workers = len(client.nthreads())
            gpu = choose_backend(backend, 1 if _workers_have_gpus(client) else 0)
            yield Compute(client, gpu, f"existing scheduler {scheduler} ({workers} workers, "
                                       f"{'GPU' if gpu else 'CPU'} backend)")
        return
    gpus = visible_gpus() if backend != "cpu" else 0
    if choose_backend(backend, gpus, n_workers):
        from dask_cuda import LocalCUDACluster

        with _quiet_dask_logs(), LocalCUDACluster(n_workers=n_workers or gpus, preload=[PRELOAD],
                                                  threads_per_worker=threads_per_worker or 1
                                                  ) as cluster, Client(cluster) as client:
            yield Compute(client, True, f"LocalCUDACluster with {len(cluster.workers)} GPU workers")
        return
    cores = os.cpu_count() or 1
    workers = n_workers or cores
    threads = threads_per_worker or max(1, cores // workers)
    with _quiet_dask_logs(), LocalCluster(n_workers=workers, threads_per_worker=threads, processes=processes,
                                          dashboard_address=":0", silence_logs=logging.WARNING,
                                          preload=[PRELOAD] if processes else []) as cluster, Client(cluster) as client:
        where = "CPU workers" if processes else "CPU workers in this process"
        yield Compute(client, False, f"LocalCluster with {workers} {where}")
