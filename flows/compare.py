"""Comparison flow: two datasets of the same features compared head by head (shift, statistics, roles, cluster
migration) -> compare and layers tables, summary.json, report.html and explorer.html.

`python flows/compare.py --a DATASET_A --b DATASET_B` compares two published datasets; with neither flag, the
offline demo: MiniLM-L6 against itself after a short fine-tune on the embedded sample (fine-tune, two
extractions, then the comparison). `--help` lists the flags."""

from __future__ import annotations

import flows  # noqa: F401  (first: Prefect's environment, flows/__init__.py, also when run as a script)

import functools
import sys
import time
from pathlib import Path
from typing import Sequence

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.extract import extract
from flows.finetune import finetune
from flows.command import run_command
from tasks.cli import config_from_args
from tasks.cluster.resources import MemoryBudget, timed
from tasks.cluster.sample import SampleSpec
from tasks.compare.alignment import Pair, open_pair
from tasks.compare.demo import compared_folders, demo_configs
from tasks.compare.explorer import ModelMaps, diff_explorer_data
from tasks.compare.findings import compare_findings
from tasks.compare.outputs import write_compare_outputs
from tasks.compare.paired import PairedRows, read_pairs
from tasks.compare.report import compare_sections
from tasks.compare.summary import CompareSummary, DatasetSide
from tasks.compare.tables import Comparison, compare_rows
from tasks.config import CompareConfig, ExtractConfig, FinetuneConfig
from tasks.extract.exemplars import attention_maps_of, exemplars_unavailable
from tasks.preflight import check_compare
from tasks.report.destination import output_folder
from tasks.report.explorer import ExplorerData
from tasks.report.sections import notes_section
from tasks.report.summary import SampleRecord
from tasks.research.findings import Finding
from tasks.research.roles import RoleRules
from tasks.storage.records import DatasetRecord


def demo_datasets(extraction: ExtractConfig, tuning: FinetuneConfig, dest_b: str) -> tuple[str, str]:
    """Fine-tunes `tuning.model`, extracts `extraction` with the original model and with the fine-tuned one
    (to `dest_b`), as subflows (published shards are reused); returns the two datasets' locations."""
    tuned = finetune(tuning)
    a = extract(extraction)
    b = extract(extraction.model_copy(update={"model": tuned["out"], "dest": dest_b}))
    return a["dest"], b["dest"]


@task(name="read-pairs", cache_policy=NO_CACHE)
def read_pairs_task(pair: Pair, config: CompareConfig, budget: MemoryBudget) -> PairedRows:
    spec = SampleSpec(config.sample, config.features_per_shard, config.fraction, config.seed)
    return read_pairs(pair, spec, config.pca_components, config.pca_fit_rows, budget)


@task(name="compare", cache_policy=NO_CACHE)
def compare_task(rows: PairedRows, pair: Pair, config: CompareConfig) -> Comparison:
    return compare_rows(rows, pair.statistics, pair.layers, pair.heads, config)


def _side(url: str, record: DatasetRecord) -> DatasetSide:
    return DatasetSide(dataset=url, fingerprint=record.fingerprint, model=record.model.model)


def summarise(config: CompareConfig, pair: Pair, rows: PairedRows, comparison: Comparison, findings: list[Finding],
              seconds: dict[str, float]) -> CompareSummary:
    heads = comparison.heads
    names = [f"L{r.layer}H{r.head}" for r in heads.itertuples()]
    return CompareSummary(
        a=_side(pair.a.url, pair.record_a), b=_side(pair.b.url, pair.record_b),
        source_sha256=pair.record_a.source.sha256, shards=[m.shard for m in pair.manifests_a],
        sample=SampleRecord(mode=config.sample, features_per_shard=config.features_per_shard,
                            fraction=config.fraction, seed=config.seed),
        features=int(comparison.grid.values.shape[0]), rows=len(rows), layers=pair.layers, heads=pair.heads,
        statistics=pair.statistics, pca_components=int(rows.reducer.components.shape[0]), pca_fit_rows=rows.fit_rows,
        pca_variance_kept=round(float(rows.reducer.explained_variance_ratio.sum()), 4), k=config.k,
        distance_rows=config.distance_rows, permutations=config.permutations, bootstrap=config.bootstrap,
        alpha=config.alpha, changed_heads=[n for n, c in zip(names, heads["changed"]) if c],
        migrated_heads=[n for n, m in zip(names, heads["migrated"]) if m],
        migrating_share=round(float(rows_migrating(comparison)), 4), bytes_read=rows.bytes_read, seconds=seconds,
        findings=findings)


def rows_migrating(comparison: Comparison) -> float:
    return float((comparison.labels_a != comparison.labels_b).mean()) if len(comparison.labels_a) else float("nan")


def maps_unavailable(config: CompareConfig, pair: Pair) -> str | None:
    """Why this version cannot recompute either dataset's maps, or None."""
    return next(filter(None, (exemplars_unavailable(record, location.url, config.credentials)
                              for record, location in ((pair.record_a, pair.a), (pair.record_b, pair.b)))), None)


def diff_explorer(config: CompareConfig, pair: Pair, rows: PairedRows, comparison: Comparison, no_maps: str | None
                  ) -> ExplorerData:
    """explorer.html's data; the maps recomputed with each dataset's own model and source, none where `no_maps`
    says why not."""
    sides = tuple(ModelMaps(record.model.model, functools.partial(attention_maps_of, record, location.url,
                                                                  config.credentials))
                  for record, location in ((pair.record_a, pair.a), (pair.record_b, pair.b)))
    rules = RoleRules(config.role_threshold, config.mixed_threshold, config.block_threshold)
    return diff_explorer_data(rows, comparison, points=config.explorer_points, seed=config.seed, rules=rules,
                              maps=None if no_maps else sides, map_heads=config.explorer_maps,
                              title=f"What changed in the heads: {pair.record_b.model.model} against "
                                    f"{pair.record_a.model.model}")


@task(name="report", cache_policy=NO_CACHE)
def report_task(config: CompareConfig, pair: Pair, rows: PairedRows, comparison: Comparison, seconds: dict,
                no_maps: str | None) -> tuple[str, CompareSummary]:
    findings = compare_findings(comparison, config)
    summary = summarise(config, pair, rows, comparison, findings, seconds)
    notes = [f"The explorer's attention maps are unavailable: {no_maps}"] if no_maps else []
    sections = [*notes_section(notes), *compare_sections(comparison, findings, pair.statistics, config)]
    explorer = diff_explorer(config, pair, rows, comparison, no_maps)
    get_run_logger().info("explorer: %s", explorer.projection)
    report = write_compare_outputs(Path(config.out), comparison, summary, sections, explorer)
    lines = ["# What changed in the heads", f"A: `{pair.a.url}`", f"B: `{pair.b.url}`", "",
             *(f"{i}. {f.text} *({f.evidence})*" for i, f in enumerate(findings, start=1)), "", f"Report: `{report}`",
             f"Explorer (heads grid by any measure of change, both models' rows on one projection, maps of the most "
             f"displaced heads; opens offline): `{report.parent / 'explorer.html'}`"]
    create_markdown_artifact("\n".join(lines), key="compare-findings", description="What changed in the heads")
    shown = ["layer", "changed_heads", "migrated_heads", "displacement", "migration", "cosine_distance"]
    create_table_artifact(comparison.layers[shown].round(4).to_dict("records"), key="compare-layers",
                          description="Change by layer")
    return str(report), summary


@flow(name="compare")
def compare(config: CompareConfig = CompareConfig()) -> dict:
    """Compares dataset B with dataset A head by head (with neither given, builds the offline demo's two
    datasets first); returns the summary and the report's path."""
    log = get_run_logger()
    started, seconds = time.perf_counter(), {}
    output_folder(config.out, compared_folders(config))
    if config.a is None:
        with timed(seconds, "demo: fine-tune and extractions"):
            a, b = demo_datasets(*demo_configs(config))
        config = config.model_copy(update={"a": a, "b": b})
    pair = open_pair(config.a, config.b, config.credentials, config.shards)
    log.info("comparing %s (B) with %s (A): %d shards, %d x %d heads", pair.b.url, pair.a.url,
             len(pair.manifests_a), pair.layers, pair.heads)
    no_maps = maps_unavailable(config, pair) if config.explorer_maps else None
    if no_maps:
        log.warning("explorer maps skipped: %s", no_maps)
    with timed(seconds, "read and project"):
        rows = read_pairs_task(pair, config, MemoryBudget.of(config.memory_budget, 1))
    log.info("%d paired rows, PCA fitted on %d", len(rows), rows.fit_rows)
    with timed(seconds, "measures"):
        comparison = compare_task(rows, pair, config)
    report, summary = report_task(config, pair, rows, comparison, seconds, no_maps)
    log.info("report: %s; explorer: %s", report, Path(report).parent / "explorer.html")
    return {"report": report, "seconds": round(time.perf_counter() - started, 1), "summary": summary.to_json()}


def main(argv: Sequence[str] | None = None) -> dict:
    config = config_from_args(CompareConfig, __doc__.splitlines()[0], argv)
    result = run_command(compare, config, check=check_compare)
    print(f"Report: {Path(result['report']).resolve()}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
