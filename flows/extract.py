"""Extraction flow: SQuAD v2 -> BERT attentions -> ResNet-50 embeddings -> published Parquet shards.

`python flows/extract.py` runs the shipped `demo` sample offline; `--help` lists the flags."""

from __future__ import annotations

import flows  # noqa: F401  (first: Prefect's environment, flows/__init__.py, also when run as a script)

import sys
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Sequence

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.command import run_command
from flows.retries import RETRIES
from tasks.cli import config_from_args
from tasks.compute import dask_cluster
from tasks.config import ExtractConfig
from tasks.extract import (
    Destination, ExtractionPlan, extract_shard, plan_extraction, prepare_destination, resolve, resolve_compile,
)
from tasks.preflight import check_extract
from tasks.squad import ShardPlan
from tasks.storage import DatasetRecord, Location, Manifest, destination_lease, shard_name


def _published_shard_key(context: Any, inputs: dict[str, Any]) -> str | None:
    """Prefect cache key of a shard task: (fingerprint, shard, manifest hash) where the flow found the shard
    published in the destination, none otherwise, so that the UI shows published shards as cached."""
    published: Manifest | None = inputs["published"]
    if published is None:
        return None
    return f"{published.fingerprint}-{shard_name(published.shard)}-{published.sha256[:16]}"


LOCAL = "this process"  # the threads runner's one worker


@task(name="extract-shard", task_run_name="shard-{plan.index}", cache_key_fn=_published_shard_key,
      persist_result=True, result_serializer="json", **RETRIES)
def extract_shard_task(cfg: ExtractConfig, plan: ShardPlan, record: DatasetRecord, published: Manifest | None
                       ) -> Manifest:
    """Prefect task of one shard: the published manifest where the flow found one, else the shard computed."""
    return published or extract_shard(cfg, plan, record)


@task(name="check-destination", **RETRIES)
def check_destination_task(cfg: ExtractConfig) -> None:
    """Fail at once where the destination cannot be written, before any model loads."""
    Location.at(cfg.dest, cfg.credentials).check_writable()


@task(name="plan-extraction", **RETRIES)
def plan_extraction_task(cfg: ExtractConfig) -> tuple[ExtractionPlan, Destination]:
    """Plan the dataset and prepare the destination: the plan, where the dataset goes and what is published."""
    plan = plan_extraction(cfg)
    return plan, prepare_destination(cfg, plan)


def _placed_on(worker: str) -> AbstractContextManager:
    """Where a shard task submitted in this block runs: that Dask worker only, or anywhere (the threads runner's
    single LOCAL worker)."""
    if worker == LOCAL:
        return nullcontext()
    import dask

    return dask.annotate(workers=[worker], allow_other_workers=False)


@flow(name="extract-shards", flow_run_name="shards of {config.dest}")
def extract_shards(config: ExtractConfig, plan: ExtractionPlan, destination: Destination, workers: list[str],
                   depth: int) -> dict[int, Manifest]:
    """Runs the shard tasks on this flow's task runner, at most `depth` (`staged_shards`) on each of `workers`:
    while one uploads, the next computes. Each shard goes to the worker with the fewest in flight, as soon as
    any of its shards is done, so that no worker idles while another holds shards waiting for its device.
    Returns each shard's manifest."""
    log = get_run_logger()
    progress = create_progress_artifact(0.0, key="extract-progress", description=f"Shards of {config.dest}")
    manifests: dict[int, Manifest] = {}
    in_flight: dict[Any, tuple[ShardPlan, str]] = {}
    load = dict.fromkeys(workers, 0)

    def finish_first() -> None:
        future = next(as_completed(list(in_flight)))
        shard, worker = in_flight.pop(future)
        load[worker] -= 1
        manifests[shard.index] = future.result()
        update_progress_artifact(progress, 100.0 * len(manifests) / len(plan.shards))
        log.info("shard %d done on %s (%d of %d)", shard.index, worker, len(manifests), len(plan.shards))

    for shard in plan.shards:
        while min(load.values()) >= depth:
            finish_first()
        worker = min(load, key=load.__getitem__)
        with _placed_on(worker):
            future = extract_shard_task.submit(config, shard, plan.record, destination.published.get(shard.index))
        in_flight[future] = (shard, worker)
        load[worker] += 1
    while in_flight:
        finish_first()
    return manifests


def _run_shards(config: ExtractConfig, plan: ExtractionPlan, destination: Destination) -> dict[int, Manifest]:
    if config.runner == "threads":
        runner = ThreadPoolTaskRunner(max_workers=config.staged_shards)
        return extract_shards.with_options(task_runner=runner)(config, plan, destination, [LOCAL],
                                                                config.staged_shards)
    from prefect_dask import DaskTaskRunner

    with dask_cluster(config.scheduler, config.backend, config.n_workers, config.staged_shards) as compute:
        get_run_logger().info("compute: %s", compute.description)
        runner = DaskTaskRunner(address=compute.client.scheduler.address)
        workers = sorted(compute.client.nthreads())
        return extract_shards.with_options(task_runner=runner)(config, plan, destination, workers,
                                                                config.staged_shards)


@flow(name="extract")
def extract(config: ExtractConfig = ExtractConfig()) -> dict:
    """Extracts every planned shard not yet published in `config.dest`, holding the destination's lease (no
    other run writes there meanwhile); returns a summary."""
    started = time.perf_counter()
    config = resolve(config)
    check_destination_task(config)
    with destination_lease(Location.at(config.dest, config.credentials), config.wait):
        return _extract_leased(config, started)


def _extract_leased(config: ExtractConfig, started: float) -> dict:
    log = get_run_logger()
    plan, destination = plan_extraction_task(config)
    todo = destination.todo(plan)
    maps = sum(p.n_features for p in todo) * plan.record.shards.rows_per_feature
    config = resolve_compile(config.model_copy(update={"dest": destination.url}), maps)
    log.info("dataset %s at %s: %d shards planned, %d already published, %d to extract",
             plan.fingerprint, destination.url, len(plan.shards), len(plan.shards) - len(todo), len(todo))
    manifests = _run_shards(config, plan, destination)
    computed = [manifests[p.index] for p in todo]
    summary = {
        "dest": destination.url,
        "fingerprint": plan.fingerprint,
        "shards": len(manifests),
        "extracted_now": len(computed),
        "rows": sum(m.rows for m in manifests.values()),
        "maps_per_second": round(sum(m.rows for m in computed) / max(sum(m.seconds for m in computed), 1e-9), 2)
        if computed else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    create_markdown_artifact(
        "\n".join(["# Extraction", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in summary.items())]),
        key="extract-summary", description="Extraction summary",
    )
    create_table_artifact(
        [{"shard": i, "rows": m.rows, "features": f"{m.features[0]}..{m.features[1] - 1}",
          "seconds": m.seconds, "maps_per_second": m.maps_per_second, "published": m.published,
          "extracted_now": i not in destination.published} for i, m in sorted(manifests.items())],
        key="extract-shards", description=f"Shards of {destination.url}",
    )
    return summary


def main(argv: Sequence[str] | None = None, checked: bool = False) -> dict:
    """The flow from the command line; `checked`: the inputs were checked already (by `atlas`)."""
    config = config_from_args(ExtractConfig, __doc__.splitlines()[0], argv)
    summary = run_command(extract, config, check=check_extract, checked=checked)
    print(f"Dataset: {summary['dest']} ({summary['shards']} shards, {summary['rows']} rows, "
          f"{summary['extracted_now']} extracted now, maps/s {summary['maps_per_second']})")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
