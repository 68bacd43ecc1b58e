"""Extraction flow: SQuAD v2 -> BERT attentions -> ResNet-50 embeddings -> published Parquet shards.

`python flows/extract.py` runs the embedded sample offline; `--help` lists the flags."""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Sequence

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.cli import config_from_args, run_or_exit
from tasks.config import ExtractConfig
from tasks.compute import dask_cluster
from tasks.extract import (
    ExtractionPlan,
    check_destination_task,
    extract_shard_task,
    plan_extraction_task,
    resolve,
    resolve_compile,
)


@flow(name="extract-shards", flow_run_name="shards of {config.dest}")
def extract_shards(config: ExtractConfig, plan: ExtractionPlan, window: int) -> dict[int, dict]:
    """Runs the shard tasks on this flow's task runner, at most `window` in flight (`staged_shards` a worker:
    while one uploads, the next computes); returns each shard's manifest."""
    log = get_run_logger()
    progress = create_progress_artifact(0.0, key="extract-progress", description=f"Shards of {config.dest}")
    manifests: dict[int, dict] = {}
    in_flight: deque = deque()

    def finish_oldest() -> None:
        shard, future = in_flight.popleft()
        manifests[shard.index] = future.result()
        update_progress_artifact(progress, 100.0 * len(manifests) / len(plan.shards))
        log.info("shard %d done (%d of %d)", shard.index, len(manifests), len(plan.shards))

    for shard in plan.shards:
        if len(in_flight) >= window:
            finish_oldest()
        in_flight.append((shard, extract_shard_task.submit(config, shard, plan.record)))
    while in_flight:
        finish_oldest()
    return manifests


def _run_shards(config: ExtractConfig, plan: ExtractionPlan) -> dict[int, dict]:
    if config.runner == "threads":
        runner = ThreadPoolTaskRunner(max_workers=config.staged_shards)
        return extract_shards.with_options(task_runner=runner)(config, plan, config.staged_shards)
    from prefect_dask import DaskTaskRunner

    with dask_cluster(config.scheduler, config.backend, config.n_workers, config.staged_shards) as compute:
        get_run_logger().info("compute: %s", compute.description)
        runner = DaskTaskRunner(address=compute.client.scheduler.address)
        workers = len(compute.client.scheduler_info()["workers"])
        return extract_shards.with_options(task_runner=runner)(config, plan, config.staged_shards * workers)


@flow(name="extract")
def extract(config: ExtractConfig = ExtractConfig()) -> dict:
    """Extracts every planned shard not yet published in `config.dest`; returns a summary."""
    log = get_run_logger()
    started = time.perf_counter()
    config = resolve(config)
    check_destination_task(config)
    plan, dataset, published = plan_extraction_task(config)
    todo = [p for p in plan.shards if p.index not in published]
    maps = sum(p.n_features for p in todo) * plan.record["shards"]["rows_per_feature"]
    config = resolve_compile(config.model_copy(update={"dest": dataset}), maps)
    log.info("dataset %s at %s: %d shards planned, %d already published, %d to extract",
             plan.fingerprint, dataset, len(plan.shards), len(plan.shards) - len(todo), len(todo))
    manifests = _run_shards(config, plan)
    computed = [manifests[p.index] for p in todo]
    summary = {
        "dest": dataset,
        "fingerprint": plan.fingerprint,
        "shards": len(manifests),
        "extracted_now": len(computed),
        "rows": sum(m["rows"] for m in manifests.values()),
        "maps_per_second": round(sum(m["rows"] for m in computed) / max(sum(m["seconds"] for m in computed), 1e-9), 2)
        if computed else None,
        "seconds": round(time.perf_counter() - started, 1),
    }
    create_markdown_artifact(
        "\n".join(["# Extraction", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in summary.items())]),
        key="extract-summary", description="Extraction summary",
    )
    create_table_artifact(
        [{"shard": i, "rows": m["rows"], "features": f"{m['features'][0]}..{m['features'][1] - 1}",
          "seconds": m["seconds"], "maps_per_second": m["maps_per_second"], "published": m["published"],
          "extracted_now": i not in published} for i, m in sorted(manifests.items())],
        key="extract-shards", description=f"Shards of {dataset}",
    )
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    config = config_from_args(ExtractConfig, __doc__.splitlines()[0], argv)
    summary = run_or_exit(extract, config)
    print(f"Dataset: {summary['dest']} ({summary['shards']} shards, {summary['rows']} rows, "
          f"{summary['extracted_now']} extracted now, maps/s {summary['maps_per_second']})")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
