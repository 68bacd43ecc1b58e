"""The rows of both datasets read side by side, a row group of each at a time, with the same sample as the
clustering's (tasks.cluster.sample): the keys checked row for row, every embedding projected on one PCA fitted on
rows of both, each head's embeddings summed for its mean. No process holds more than a row group's embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import sparse

from tasks.cluster import (
    MemoryBudget, Reducer, SampleSpec, capped_components, fit_groups, fit_reducer, fit_vectors, sampled_rows,
)
from tasks.compare.alignment import Pair, check_keys
from tasks.errors import InputError
from tasks.groups import Projection
from tasks.research import feature_questions
from tasks.storage import POOLED, BytesRead, Manifest, embedding_matrix, read_rows, retrying


@dataclass
class PairedRows:
    """The sampled rows, the same (feature, layer, head) in A and B at each position: keys, statistics, PCA
    projections; each head's mean embedding over its sampled rows in A and in B; each feature's question."""

    feature_id: np.ndarray  # int64 (n,)
    slot: np.ndarray  # int64 (n,): layer * heads + head
    stats_a: pd.DataFrame  # float32, one column per common statistic (NaN where not defined)
    stats_b: pd.DataFrame
    reduced_a: np.ndarray  # float32 (n, components)
    reduced_b: np.ndarray
    mean_a: np.ndarray  # float64 (slots, dim)
    mean_b: np.ndarray
    reducer: Reducer
    fit_rows: int
    bytes_read: int
    questions: pd.DataFrame  # feature_id, question_id: one row per sampled feature

    def __len__(self) -> int:
        return len(self.feature_id)


@dataclass
class _Part:
    feature_id: np.ndarray
    slot: np.ndarray
    stats: tuple[np.ndarray, np.ndarray]
    reduced: tuple[np.ndarray, np.ndarray]
    sums: tuple[np.ndarray, np.ndarray]
    bytes_read: int
    questions: pd.DataFrame


def fit_joint_reducer(pair: Pair, spec: SampleSpec, components: int, fit_rows: int, standardize: bool = False
                      ) -> tuple[Reducer, int]:
    """One PCA over a seeded sample of rows, the same rows of A and of B (half the fit rows each); and the
    rows it was fitted on."""
    groups, share = fit_groups(pair.manifests_a, spec, max(1, fit_rows // 2))
    vectors = []
    for location, manifests in ((pair.a, pair.manifests_a), (pair.b, pair.manifests_b)):
        vectors += [retrying(fit_vectors, location, m, groups[m.shard], spec, share)
                    for m in manifests if m.shard in groups]
    vectors = np.concatenate(vectors)
    if len(vectors) > fit_rows:
        vectors = vectors[np.sort(np.random.RandomState(spec.seed).choice(len(vectors), fit_rows, replace=False))]
    if len(vectors) < 2:
        raise InputError(f"{pair.a.url}: the sample is empty (mode {spec.mode}, fraction {spec.fraction})")
    return fit_reducer(vectors, capped_components(components, *vectors.shape), standardize, spec.seed), len(vectors)


def _slot_sums(vectors: np.ndarray, slot: np.ndarray, n_slots: int) -> np.ndarray:
    members = sparse.csr_matrix((np.ones(len(slot)), (slot, np.arange(len(slot)))), shape=(n_slots, len(slot)))
    return members @ vectors.astype(np.float64)


def _statistics(table: pa.Table, names: list[str]) -> np.ndarray:
    return np.stack([table[n].to_numpy(zero_copy_only=False).astype(np.float32) for n in names], axis=1) \
        if names else np.zeros((table.num_rows, 0), np.float32)


def _read_shard_pair(pair: Pair, manifest_a: Manifest, manifest_b: Manifest, spec: SampleSpec, reducer: Reducer
                     ) -> _Part:
    """One shard of each dataset read a row group at a time in step, the sample's rows kept and checked."""
    counter, stop, n_slots = BytesRead(), spec.feature_stop(manifest_a), pair.layers * pair.heads
    features, slots, keys, stats, reduced, sums = [], [], [], ([], []), ([], []), [0.0, 0.0]
    for table_a, table_b in zip(read_rows(pair.a, manifest_a, stop, counter=counter, exclude=(POOLED,)),
                                read_rows(pair.b, manifest_b, stop, counter=counter, exclude=(POOLED,))):
        table_a, table_b = sampled_rows(table_a, spec), sampled_rows(table_b, spec)
        check_keys(pair, table_a, table_b)
        slot = table_a["layer"].to_numpy().astype(np.int64) * pair.heads + table_a["head"].to_numpy()
        features.append(table_a["feature_id"].to_numpy())
        keys.append(table_a.select(["feature_id", "question_id"]))
        slots.append(slot)
        for i, table in enumerate((table_a, table_b)):
            vectors = embedding_matrix(table)
            reduced[i].append(reducer.transform(vectors))
            stats[i].append(_statistics(table, pair.statistics))
            sums[i] = sums[i] + _slot_sums(vectors, slot, n_slots)
    return _Part(np.concatenate(features), np.concatenate(slots), tuple(np.concatenate(s) for s in stats),
                 tuple(np.concatenate(r) for r in reduced), tuple(sums), counter.count, feature_questions(keys))


def read_pairs(pair: Pair, spec: SampleSpec, pca: Projection, budget: MemoryBudget) -> PairedRows:
    """Fits the joint PCA (`pca`), then reads every selected shard of both datasets side by side."""
    components, fit_rows = pca.pca_components, pca.pca_fit_rows
    selected = sum(spec.selected_rows(m) for m in pair.manifests_a)
    if selected == 0:
        raise InputError(f"{pair.a.url}: the sample is empty (mode {spec.mode}, fraction {spec.fraction})")
    dim = pair.record_a.encoder.dim
    group_rows = max((g.rows for m in pair.manifests_a for g in (m.row_groups or [m])), default=0)
    budget.check("compare: reading a row group of each dataset", group_rows, 2 * 3 * group_rows * dim * 4,
                 "rows are read a row group at a time (format 2); format 1 shards are read whole")
    budget.check_pca_fit("compare", fit_rows, 2 * selected, dim)
    width = min(components, fit_rows, 2 * selected, dim) + len(pair.statistics) + 4
    budget.check("compare: rows of both datasets", 2 * selected, 2 * selected * width * 4 * 3,
                 "lower --features-per-shard or --fraction, or fewer --pca-components")
    reducer, fitted = fit_joint_reducer(pair, spec, components, fit_rows)
    parts = [retrying(_read_shard_pair, pair, ma, mb, spec, reducer)
             for ma, mb in zip(pair.manifests_a, pair.manifests_b)]
    counts = np.bincount(np.concatenate([p.slot for p in parts]), minlength=pair.layers * pair.heads)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = [sum(p.sums[i] for p in parts) / counts[:, None] for i in (0, 1)]
    stats = [pd.DataFrame(np.concatenate([p.stats[i] for p in parts]), columns=pair.statistics) for i in (0, 1)]
    return PairedRows(
        feature_id=np.concatenate([p.feature_id for p in parts]), slot=np.concatenate([p.slot for p in parts]),
        stats_a=stats[0], stats_b=stats[1], reduced_a=np.concatenate([p.reduced[0] for p in parts]),
        reduced_b=np.concatenate([p.reduced[1] for p in parts]), mean_a=means[0], mean_b=means[1], reducer=reducer,
        fit_rows=fitted, bytes_read=sum(p.bytes_read for p in parts),
        questions=pd.concat([p.questions for p in parts], ignore_index=True))
