"""summary.json, typed: where the clustered data came from, how the clustering ran, and each clustering's shape."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from tasks.cluster import ClusteringRun, NOISE, Sample, SampleSpec, cluster_sizes
from tasks.research import Finding

SUMMARY_FORMAT = "squad-attention-atlas-clusters/2"  # 2: findings


class ClusteringSummary(BaseModel):
    """One clustering: its parameters (k, eps, ... as `extra` fields), clusters, unlabelled rows, largest sizes."""

    model_config = ConfigDict(frozen=True, extra="allow")

    clusters: int
    unlabelled: int
    largest: list[int]


class RunContext(BaseModel):
    """What the flow knows before clustering: the dataset, its model, the shards read, the compute."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str
    fingerprint: str
    model: str
    shards: list[int]
    skipped_shards: dict[str, str]
    compute: str
    backend: str
    sample: SampleSpec
    memory_budget_gb: float


class ClusterSummary(RunContext):
    format: str = SUMMARY_FORMAT
    rows: int
    features: int
    embedding_dim: int
    pca_components: int
    pca_fit_rows: int
    pca_variance_kept: float
    bytes_read: int
    bytes_selected: int
    seconds: dict[str, float]
    chosen_k: int
    suggested_eps: float
    clusterings: dict[str, ClusteringSummary]
    findings: list[Finding]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def summarise(run: ClusteringRun, sample: Sample, context: RunContext, findings: list[Finding]) -> ClusterSummary:
    """summary.json of a clustering run."""
    clusterings = {}
    for name, labels in run.labels.items():
        sizes = cluster_sizes(labels)
        real = [n for c, n in sizes.items() if c != NOISE]
        clusterings[name] = ClusteringSummary(**run.params[name], clusters=len(real),
                                              unlabelled=sizes.get(NOISE, 0), largest=real[:10])
    return ClusterSummary(
        **context.model_dump(), rows=len(sample.rows), features=int(sample.rows["feature_id"].nunique()),
        embedding_dim=sample.dim, pca_components=int(sample.reduced.shape[1]), pca_fit_rows=sample.fit_rows,
        pca_variance_kept=round(float(np.sum(run.explained_variance)), 4), bytes_read=sample.bytes_read,
        bytes_selected=sample.bytes_selected, seconds={**sample.seconds, **run.seconds}, chosen_k=run.chosen_k,
        suggested_eps=run.suggested_eps, clusterings=clusterings, findings=findings,
    )
