"""summary.json of a comparison, typed: the two datasets, the sample, the methods' settings, the heads flagged,
the findings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tasks.report.summary import SampleRecord
from tasks.research.findings import Finding

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
    sample: SampleRecord
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
