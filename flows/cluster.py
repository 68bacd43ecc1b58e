"""Clustering flow: published dataset -> sample -> PCA -> KMeans / DBSCAN / re-clustering -> labels + report.

`python flows/cluster.py --dataset PATH_OR_URL` re-clusters a dataset without re-extracting; `--help` lists
the flags."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Sequence

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cli import config_from_args, run_or_exit
from tasks.cluster import CpuBackend, run_clustering
from tasks.compute import dask_cluster
from tasks.config import ClusterConfig
from tasks.extract import recompute_maps
from tasks.report import build_sections, publish_artifacts, summarise, write_outputs
from tasks.sample import SampleSpec, dataset_record, load_sample, select_manifests
from tasks.storage import Location
from tasks.store import newest_complete


@task(name="load-sample", cache_policy=NO_CACHE)
def load_sample_task(client, config: ClusterConfig, dataset: Location, manifests: list[dict]):
    spec = SampleSpec(config.sample, config.features_per_shard, config.fraction, config.seed)
    return load_sample(client, dataset, manifests, spec, config.on_bad_shard)


@task(name="cluster", cache_policy=NO_CACHE)
def cluster_task(backend, sample, config: ClusterConfig):
    return run_clustering(backend, sample, config)


@task(name="report", cache_policy=NO_CACHE)
def report_task(config: ClusterConfig, record: dict, sample, reduced, run, context: dict) -> str:
    model = record["model"]
    source = functools.partial(recompute_maps, record, config.dataset, config.credentials)
    sections = build_sections(run, sample, reduced, model["layers"], model["heads"], record["statistics"],
                              config.top_clusters, config.exemplars, config.min_samples, source)
    summary = summarise(run, sample, reduced, context)
    report = write_outputs(Path(config.out), sample, run, summary, sections)
    publish_artifacts(summary, run, report, sections)
    return str(report)


@flow(name="cluster")
def cluster(config: ClusterConfig = ClusterConfig()) -> dict:
    """Clusters the published shards of `config.dataset`; returns the summary and the report's path."""
    log = get_run_logger()
    started = time.perf_counter()
    dataset = Location.at(config.dataset, config.credentials)
    if config.newest:
        dataset = newest_complete(dataset)
        config = config.model_copy(update={"dataset": dataset.url})
        log.info("newest complete dataset: %s", dataset.url)
    record = dataset_record(dataset)
    manifests = select_manifests(dataset, record, config.shards)
    with dask_cluster(config.scheduler, config.backend, config.n_workers) as compute:
        log.info("compute: %s", compute.description)
        if compute.gpu:
            from tasks.cluster_gpu import GpuBackend

            backend = GpuBackend(compute.client)
        else:
            backend = CpuBackend(compute.client)
        sample = load_sample_task(compute.client, config, dataset, manifests)
        for shard, reason in sample.skipped.items():
            log.warning("shard %d skipped: %s", shard, reason)
        log.info("sample: %d rows of %d shards", len(sample.rows), len(manifests) - len(sample.skipped))
        reduced, run = cluster_task(backend, sample, config)
    context = {"dataset": config.dataset, "fingerprint": record["fingerprint"], "model": record["model"]["model"],
               "shards": [m["shard"] for m in manifests if m["shard"] not in sample.skipped],
               "skipped_shards": {str(k): v for k, v in sample.skipped.items()},
               "compute": compute.description, "backend": backend.name,
               "sample": {"mode": config.sample, "features_per_shard": config.features_per_shard,
                          "fraction": config.fraction, "seed": config.seed}}
    report = report_task(config, record, sample, reduced, run, context)
    log.info("report: %s", report)
    return {"report": report, "seconds": round(time.perf_counter() - started, 1),
            "summary": summarise(run, sample, reduced, context)}


def main(argv: Sequence[str] | None = None) -> dict:
    config = config_from_args(ClusterConfig, __doc__.splitlines()[0], argv)
    result = run_or_exit(cluster, config)
    print(f"Report: {Path(result['report']).resolve()}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
