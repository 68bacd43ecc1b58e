"""summary.json of a comparison, typed: the two datasets, the sample, the methods' settings, the heads flagged,
the findings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tasks.cluster import SampleSpec
from tasks.compare.alignment import Pair
from tasks.compare.paired import PairedRows
from tasks.compare.tables import Comparison
from tasks.config import CompareConfig
from tasks.research import Finding
from tasks.storage import DatasetRecord

SUMMARY_FORMAT = "squad-attention-atlas-compare/1"


class DatasetSide(BaseModel):
    """One of the two datasets: where it is, its fingerprint and its model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str
    fingerprint: str
    model: str


class CompareSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = SUMMARY_FORMAT
    a: DatasetSide
    b: DatasetSide
    source_sha256: str
    shards: list[int]
    sample: SampleSpec
    features: int
    rows: int  # paired rows: each is one row of A and the same row of B
    layers: int
    heads: int
    statistics: list[str]
    pca_components: int
    pca_fit_rows: int
    pca_variance_kept: float
    k: int
    distance_rows: int
    permutations: int
    bootstrap: int
    alpha: float
    changed_heads: list[str]
    migrated_heads: list[str]
    migrating_share: float
    bytes_read: int
    seconds: dict[str, float]
    findings: list[Finding]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _side(url: str, record: DatasetRecord) -> DatasetSide:
    return DatasetSide(dataset=url, fingerprint=record.fingerprint, model=record.model.model)


def rows_migrating(comparison: Comparison) -> float:
    """Share of paired rows whose joint cluster differs between A and B (NaN without rows)."""
    return float((comparison.labels_a != comparison.labels_b).mean()) if len(comparison.labels_a) else float("nan")


def summarise(config: CompareConfig, spec: SampleSpec, pair: Pair, rows: PairedRows, comparison: Comparison,
              findings: list[Finding], seconds: dict[str, float]) -> CompareSummary:
    """summary.json of a comparison of `rows` (sampled by `spec`) run with `config`."""
    heads = comparison.heads
    names = [f"L{r.layer}H{r.head}" for r in heads.itertuples()]
    return CompareSummary(
        a=_side(pair.a.url, pair.record_a), b=_side(pair.b.url, pair.record_b),
        source_sha256=pair.record_a.source.sha256, shards=[m.shard for m in pair.manifests_a], sample=spec,
        features=int(comparison.grid.values.shape[0]), rows=len(rows), layers=pair.layers, heads=pair.heads,
        statistics=pair.statistics, pca_components=int(rows.reducer.components.shape[0]), pca_fit_rows=rows.fit_rows,
        pca_variance_kept=round(float(rows.reducer.explained_variance_ratio.sum()), 4), k=config.k,
        distance_rows=config.distance_rows, permutations=config.intervals.permutations,
        bootstrap=config.intervals.bootstrap, alpha=config.alpha,
        changed_heads=[n for n, c in zip(names, heads["changed"]) if c],
        migrated_heads=[n for n, m in zip(names, heads["migrated"]) if m],
        migrating_share=round(float(rows_migrating(comparison)), 4), bytes_read=rows.bytes_read, seconds=seconds,
        findings=findings)
