"""Clustering flow: published dataset -> sample -> PCA -> KMeans / DBSCAN / re-clustering -> labels + report.

`python flows/cluster.py --dataset PATH_OR_URL` re-clusters a dataset without re-extracting; `--help` lists
the flags."""

from __future__ import annotations

import flows  # noqa: F401  (first: Prefect's environment, flows/__init__.py, also when run as a script)

import functools
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.command import run_command
from tasks.cli import config_from_args
from tasks.cluster import (
    ClusterBackend, ClusteringRun, CpuBackend, MemoryBudget, Sample, SampleSpec, load_sample, run_clustering,
)
from tasks.compute import dask_cluster, local_processes
from tasks.config import ClusterConfig
from tasks.extract import attention_maps_of, exemplars_unavailable
from tasks.importance import check_importance_grid, read_importance
from tasks.preflight import check_cluster, check_statistic
from tasks.report import (
    ClusterSummary, ExplorerData, MapSource, RunContext, Section, build_sections, explorer_data, findings_section,
    gallery_documents, head_map_caption, head_map_sections, notes_section, output_folder, sizes_table, skipped_notes,
    summarise, write_outputs,
)
from tasks.research import Study, StudySettings, feature_facts, feature_questions, run_study
from tasks.storage import (
    DatasetRecord, Location, Manifest, dataset_record, head_js_sum, newest_complete, readable_manifests,
)


@task(name="load-sample", cache_policy=NO_CACHE)
def load_sample_task(client, config: ClusterConfig, spec: SampleSpec, dataset: Location, record: DatasetRecord,
                     manifests: list[Manifest], unreadable: dict[int, str], budget: MemoryBudget, keys: Path
                     ) -> Sample:
    return load_sample(client, dataset, manifests, spec, config.pca, config.standardize, record.encoder.dim, budget,
                       keys, config.on_bad_shard, unreadable)


@task(name="cluster", cache_policy=NO_CACHE)
def cluster_task(backend: ClusterBackend, sample: Sample, config: ClusterConfig, budget: MemoryBudget
                 ) -> ClusteringRun:
    return run_clustering(backend, sample, config, budget)


@task(name="study", cache_policy=NO_CACHE)
def study_task(config: ClusterConfig, record: DatasetRecord, manifests: list[Manifest], sample: Sample,
               run: ClusteringRun, questions: pd.DataFrame, importance: pd.DataFrame | None) -> Study:
    """The research layer: heads table, agreements, findings, stability; with `importance`, a head-importance
    run's columns and findings."""
    facts, why = feature_facts(record, config.dataset, config.credentials, questions)
    if facts is None:
        get_run_logger().warning("findings without contexts and answerability: %s", why)
    sampled = [m for m in manifests if m.shard in set(sample.part_shards)]
    return run_study(sample.rows, run.labels, run.params, sample.reduced, record.statistics, record.model.layers,
                     record.model.heads, StudySettings.of(config), facts, sample.pooled, head_js_sum(sampled),
                     importance)


@task(name="sections", cache_policy=NO_CACHE)
def sections_task(config: ClusterConfig, record: DatasetRecord, sample: Sample, run: ClusteringRun,
                  study: Study, notes: list[str], source: MapSource | None) -> list[Section]:
    """report.html's sections and figures: the notes, the findings, then each clustering."""
    layers, heads = record.model.layers, record.model.heads
    return [*notes_section(notes), findings_section(study, layers, heads), *head_map_sections(study),
            *build_sections(run, sample, layers, heads, record.statistics, config.top_clusters,
                            config.exemplars if source else 0, config.density.min_samples, source)]


@task(name="summary", cache_policy=NO_CACHE)
def summary_task(run: ClusteringRun, sample: Sample, context: RunContext, study: Study) -> ClusterSummary:
    return summarise(run, sample, context, study.findings)


@task(name="explorer", cache_policy=NO_CACHE)
def explorer_task(config: ClusterConfig, record: DatasetRecord, sample: Sample, run: ClusteringRun,
                  study: Study, questions: pd.DataFrame, source: MapSource | None) -> ExplorerData:
    """explorer.html's data: the heads grid, the projection, the exemplar maps where `source` gives them."""
    explorer = explorer_data(sample.rows, sample.reduced, run.labels, study.heads, study.head_clusters, questions,
                             record.model.layers, record.model.heads, source, points=config.explorer_points,
                             per_cluster=config.exemplars if source else 0, top_clusters=config.top_clusters,
                             seed=config.seed, rules=config.roles, title=f"Attention heads of {record.model.model}",
                             head_map=head_map_caption(study))
    get_run_logger().info("explorer: %s", explorer.projection)
    return explorer


@task(name="report", cache_policy=NO_CACHE)
def report_task(config: ClusterConfig, sample: Sample, run: ClusteringRun, study: Study, summary: ClusterSummary,
                sections: list[Section], explorer: ExplorerData) -> Path:
    """Writes report.html, explorer.html, the labels and the tables to `config.out`; returns report.html's path."""
    return write_outputs(Path(config.out), sample, run, study, summary, sections, explorer)


@task(name="artifacts", cache_policy=NO_CACHE)
def artifacts_task(summary: ClusterSummary, run: ClusteringRun, study: Study, report: Path, sections: list[Section],
                   left_out: list[str]) -> None:
    """The report's tables as Prefect artifacts, a markdown summary naming the files, the report's figures
    embedded in one markdown artifact per section (the Prefect UI renders data-URI images), and the findings,
    what the run left out (skipped shards, ...) first."""
    for name, labels in run.labels.items():
        create_table_artifact(sizes_table(labels).to_dict("records"), key=f"cluster-sizes-{name.replace('_', '-')}",
                              description=f"{name}: cluster sizes")
    create_table_artifact(run.k_table.to_dict("records"), key="k-search", description="KMeans k search")
    create_table_artifact(run.grid.to_dict("records"), key="dbscan-grid", description="DBSCAN grid search")
    figures = sorted((report.parent / "figures").glob("*.png"))
    lines = ["# Clustering report", f"Report: `{report}`",
             f"Explorer (heads grid, projection, exemplar maps; opens offline): `{report.parent / 'explorer.html'}`", "",
             *(f"- **{name}**: {c.clusters} clusters, {c.unlabelled} unlabelled rows"
               for name, c in summary.clusterings.items()),
             "", "Figures:", *(f"- `{path}`" for path in figures)]
    create_markdown_artifact("\n".join(lines), key="cluster-report", description="Clustering summary")
    for key, document in gallery_documents(sections).items():
        create_markdown_artifact(document, key=f"cluster-figures-{key}", description="The report's figures")
    left = ["**Left out of this run:**", *(f"- {note}" for note in left_out), ""] if left_out else []
    lines = ["# Findings", *left, *(f"{i}. {f.text} *({f.evidence})*" for i, f in enumerate(study.findings, start=1)),
             "", *study.notes, "", f"Report: `{report}`"]
    create_markdown_artifact("\n".join(lines), key="cluster-findings", description="What the clusters mean")


@flow(name="cluster")
def cluster(config: ClusterConfig = ClusterConfig()) -> dict:
    """Clusters the published shards of `config.dataset`; returns the summary and the report's path."""
    log = get_run_logger()
    started = time.perf_counter()
    output_folder(config.out, [config.dataset])
    dataset = Location.at(config.dataset, config.credentials)
    if config.newest:
        dataset = newest_complete(dataset)
        config = config.model_copy(update={"dataset": dataset.url})
        log.info("newest complete dataset: %s", dataset.url)
    record = dataset_record(dataset)
    check_statistic(config, record, dataset.url)
    importance = read_importance(config.importance) if config.importance else None
    if importance is not None:
        check_importance_grid(importance, record.model.layers, record.model.heads, config.importance,
                              record.model.model)
    no_maps = exemplars_unavailable(record, config.dataset, config.credentials) if config.exemplars else None
    if no_maps:
        log.warning("exemplar maps skipped: %s", no_maps)
    manifests, unreadable = readable_manifests(dataset, record, config.shards, config.on_bad_shard)
    spec = SampleSpec.of(config.sampling, config.seed)
    embedding_bytes = sum(spec.selected_rows(m) for m in manifests) * record.encoder.dim * 4
    processes = local_processes(config.compute.worker_kind, embedding_bytes)
    with tempfile.TemporaryDirectory(prefix="atlas-sample-keys-") as keys:  # the sample's keys, removed at the end
        with dask_cluster(config.compute.scheduler, config.compute.backend, config.compute.n_workers,
                          processes=processes) as compute:
            log.info("compute: %s", compute.description)
            budget = MemoryBudget.of(config.compute.memory_budget, len(compute.client.nthreads()) + 1)
            if compute.gpu:
                from tasks.cluster import GpuBackend

                backend = GpuBackend(compute.client)
            else:
                backend = CpuBackend(compute.client)
            sample = load_sample_task(compute.client, config, spec, dataset, record, manifests, unreadable, budget,
                                      Path(keys))
            for shard, reason in sample.skipped.items():
                log.warning("shard %d skipped: %s", shard, reason)
            log.info("sample: %d rows of %d shards, %.2f GB read for %.2f GB selected", len(sample.rows),
                     len(sample.part_shards), sample.bytes_read / 2**30, sample.bytes_selected / 2**30)
            run = cluster_task(backend, sample, config, budget)
            context = RunContext(
                dataset=config.dataset, fingerprint=record.fingerprint, model=record.model.model,
                shards=sample.part_shards, skipped_shards={str(k): v for k, v in sample.skipped.items()},
                compute=compute.description, backend=backend.name, memory_budget_gb=round(budget.bytes / 2**30, 2),
                sample=spec)
        # the Dask cluster is closed: the research layer and the report read plain data
        questions = feature_questions(sample.key_tables())
        study = study_task(config, record, manifests, sample, run, questions, importance)
        source = None if no_maps else functools.partial(attention_maps_of, record, config.dataset, config.credentials)
        notes = skipped_notes(sample.skipped) + ([f"Exemplar attention maps are unavailable: {no_maps}"]
                                                 if no_maps else [])
        sections = sections_task(config, record, sample, run, study, notes, source)
        summary = summary_task(run, sample, context, study)
        explorer = explorer_task(config, record, sample, run, study, questions, source)
        report = report_task(config, sample, run, study, summary, sections, explorer)
        artifacts_task(summary, run, study, report, sections, notes)
    log.info("report: %s", report)
    return {"report": str(report), "seconds": round(time.perf_counter() - started, 1), "summary": summary.to_json()}


def main(argv: Sequence[str] | None = None, checked: bool = False) -> dict:
    """The flow from the command line; `checked`: the inputs were checked already (by `atlas`)."""
    config = config_from_args(ClusterConfig, __doc__.splitlines()[0], argv)
    result = run_command(cluster, config, check=check_cluster, checked=checked)
    print(f"Report: {Path(result['report']).resolve()}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
