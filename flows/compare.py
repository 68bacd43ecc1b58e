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
from tasks.cluster import MemoryBudget, SampleSpec, timed
from tasks.compare import (
    CompareSummary, Comparison, Pair, PairedRows, compare_findings, compare_rows, compare_sections, compared_folders,
    demo_configs, diff_explorer, maps_unavailable, open_pair, read_pairs, summarise, write_compare_outputs,
)
from tasks.config import CompareConfig, ExtractConfig, FinetuneConfig
from tasks.preflight import check_compare
from tasks.report import ExplorerData, Section, notes_section, output_folder
from tasks.research import Finding


def demo_datasets(extraction: ExtractConfig, tuning: FinetuneConfig, dest_b: str) -> tuple[str, str]:
    """Fine-tunes `tuning.model`, extracts `extraction` with the original model and with the fine-tuned one
    (to `dest_b`), as subflows (published shards are reused); returns the two datasets' locations."""
    tuned = finetune(tuning)
    a = extract(extraction)
    b = extract(extraction.model_copy(update={"model": tuned["out"], "dest": dest_b}))
    return a["dest"], b["dest"]


@task(name="read-pairs", cache_policy=NO_CACHE)
def read_pairs_task(pair: Pair, spec: SampleSpec, config: CompareConfig, budget: MemoryBudget) -> PairedRows:
    return read_pairs(pair, spec, config.pca, budget)


@task(name="compare", cache_policy=NO_CACHE)
def compare_task(rows: PairedRows, pair: Pair, config: CompareConfig) -> Comparison:
    return compare_rows(rows, pair.statistics, pair.layers, pair.heads, config)


@task(name="findings", cache_policy=NO_CACHE)
def findings_task(comparison: Comparison, config: CompareConfig) -> list[Finding]:
    return compare_findings(comparison, config)


@task(name="summary", cache_policy=NO_CACHE)
def summary_task(config: CompareConfig, spec: SampleSpec, pair: Pair, rows: PairedRows, comparison: Comparison,
                 findings: list[Finding], seconds: dict[str, float]) -> CompareSummary:
    return summarise(config, spec, pair, rows, comparison, findings, seconds)


@task(name="sections", cache_policy=NO_CACHE)
def sections_task(config: CompareConfig, pair: Pair, comparison: Comparison, findings: list[Finding],
                  notes: list[str]) -> list[Section]:
    return [*notes_section(notes), *compare_sections(comparison, findings, pair.statistics, config)]


@task(name="explorer", cache_policy=NO_CACHE)
def explorer_task(config: CompareConfig, pair: Pair, rows: PairedRows, comparison: Comparison, no_maps: str | None
                  ) -> ExplorerData:
    explorer = diff_explorer(config, pair, rows, comparison, no_maps)
    get_run_logger().info("explorer: %s", explorer.projection)
    return explorer


@task(name="report", cache_policy=NO_CACHE)
def report_task(config: CompareConfig, comparison: Comparison, summary: CompareSummary, sections: list[Section],
                explorer: ExplorerData) -> Path:
    """Writes the tables, summary.json, report.html and explorer.html to `config.out`; returns report.html's path."""
    return write_compare_outputs(Path(config.out), comparison, summary, sections, explorer)


@task(name="artifacts", cache_policy=NO_CACHE)
def artifacts_task(pair: Pair, comparison: Comparison, findings: list[Finding], report: Path) -> None:
    """The findings as a markdown artifact naming the report and the explorer, and the change by layer."""
    lines = ["# What changed in the heads", f"A: `{pair.a.url}`", f"B: `{pair.b.url}`", "",
             *(f"{i}. {f.text} *({f.evidence})*" for i, f in enumerate(findings, start=1)), "", f"Report: `{report}`",
             f"Explorer (heads grid by any measure of change, both models' rows on one projection, maps of the most "
             f"displaced heads; opens offline): `{report.parent / 'explorer.html'}`"]
    create_markdown_artifact("\n".join(lines), key="compare-findings", description="What changed in the heads")
    shown = ["layer", "changed_heads", "migrated_heads", "displacement", "migration", "cosine_distance"]
    create_table_artifact(comparison.layers[shown].round(4).to_dict("records"), key="compare-layers",
                          description="Change by layer")


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
    spec = SampleSpec.of(config.sampling, config.seed)
    with timed(seconds, "read and project"):
        rows = read_pairs_task(pair, spec, config, MemoryBudget.of(config.memory_budget, 1))
    log.info("%d paired rows, PCA fitted on %d", len(rows), rows.fit_rows)
    with timed(seconds, "measures"):
        comparison = compare_task(rows, pair, config)
    findings = findings_task(comparison, config)
    summary = summary_task(config, spec, pair, rows, comparison, findings, seconds)
    notes = [f"The explorer's attention maps are unavailable: {no_maps}"] if no_maps else []
    sections = sections_task(config, pair, comparison, findings, notes)
    explorer = explorer_task(config, pair, rows, comparison, no_maps)
    report = report_task(config, comparison, summary, sections, explorer)
    artifacts_task(pair, comparison, findings, report)
    log.info("report: %s; explorer: %s", report, report.parent / "explorer.html")
    return {"report": str(report), "seconds": round(time.perf_counter() - started, 1), "summary": summary.to_json()}


def main(argv: Sequence[str] | None = None, checked: bool = False) -> dict:
    """The flow from the command line; `checked`: the inputs were checked already (by `atlas`)."""
    config = config_from_args(CompareConfig, __doc__.splitlines()[0], argv)
    result = run_command(compare, config, check=check_compare, checked=checked)
    print(f"Report: {Path(result['report']).resolve()}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
