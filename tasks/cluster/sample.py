"""The rows to cluster: published shards read on the Dask workers, only the selected row groups and rows, each
projected on PCA components as soon as it is read; the keys stay beside their vectors until the flow spills them,
a shard at a time, to Parquet files in a folder the caller owns.

Two passes: the PCA is fitted on a seeded sample of `fit_rows` rows drawn from a seeded choice of row groups,
then every selected row group is read, checked and projected where it is read. No process ever holds a shard's
embeddings, only a row group's."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.cluster.reducer import Reducer, capped_components, fit_reducer
from tasks.cluster.resources import MemoryBudget, timed
from tasks.errors import InputError
from tasks.groups import Projection, Sampling
from tasks.storage import (
    BytesRead, KEY_COLUMNS, Location, Manifest, POOLED, ShardError, embedding_matrix, pooled_matrix, read_rows,
    retrying,
)

FIT_GROUP_ROWS = 4  # the fit sample is drawn from row groups holding this many times its rows
POOLED_ROW_BYTES = 512  # format 4: a row's map pooled to 16 x 16, float16
FIT_OVERSAMPLE = 1.2  # rows drawn over fit_rows, so that the seeded draw has enough to cut it to fit_rows exactly
FIT_COLUMNS = ("feature_id", "layer", "head", "embedding")  # what the PCA fit reads: the draw's keys, the vectors


@dataclass(frozen=True)
class SampleSpec:
    """Which rows: every row ('all'), the first `features_per_shard` features of each shard ('first', the
    original's choice, which keeps each context's windows together; all features where None), or a seeded
    random `fraction` of rows ('random')."""

    mode: Literal["first", "random", "all"] = "first"
    features_per_shard: int | None = None
    fraction: float = 1.0
    seed: int = 0

    @classmethod
    def of(cls, sampling: Sampling, seed: int) -> SampleSpec:
        """The rows a config's sampling group and seed choose."""
        return cls(sampling.sample, sampling.features_per_shard, sampling.fraction, seed)

    def feature_stop(self, manifest: Manifest) -> int | None:
        """Features at or past this id are not read (None: no bound)."""
        if self.mode != "first" or self.features_per_shard is None:
            return None
        return manifest.features[0] + self.features_per_shard

    def selected_rows(self, manifest: Manifest, features: tuple[int, int] | None = None) -> int:
        """How many rows of the shard's feature range `features` (all of it where None) the sample takes
        (expected, for 'random')."""
        start, stop = features or manifest.features
        per_feature = manifest.rows // max(manifest.features[1] - manifest.features[0], 1)
        bound = self.feature_stop(manifest)
        taken = max(0, (stop if bound is None else min(stop, bound)) - start)
        return int(taken * per_feature * (self.fraction if self.mode == "random" else 1))


@dataclass
class Sample:
    """The sampled rows: their feature, layer, head and statistics (`rows`) and their PCA projection (`reduced`),
    row for row; in Parquet files, each shard's full keys (question ids, spans), for the labels. Plain data: no
    Dask client is needed to read any of it."""

    rows: pd.DataFrame
    reduced: np.ndarray
    reducer: Reducer
    key_files: list[Path]  # Parquet files of KEY_COLUMNS, one per shard read, in row order
    part_shards: list[int]
    part_rows: list[int]
    dim: int
    fit_rows: int
    bytes_read: int
    bytes_selected: int
    skipped: dict[int, str] = field(default_factory=dict)  # shard index -> why it was left out
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each stage
    pooled: np.ndarray | None = None  # each row's map pooled to 16 x 16, flat float16; None before format 4

    def key_tables(self) -> Iterator[pa.Table]:
        """Each part's keys, read one at a time."""
        for path in self.key_files:
            yield pq.read_table(path)


def _splitmix(feature_id: np.ndarray, within: np.ndarray, seed: int) -> np.ndarray:
    """A number in [0, 1) per row from its feature, `within` (an integer below 2**20 that tells the feature's rows
    apart) and the seed: splitmix64, independent of row order and of how rows are split into shards."""
    with np.errstate(over="ignore"):
        z = (feature_id.astype(np.uint64) << np.uint64(20)) ^ within
        z = z ^ (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def row_uniform(feature_id: np.ndarray, layer: np.ndarray, head: np.ndarray, seed: int) -> np.ndarray:
    """A seeded number in [0, 1) per row from its (feature_id, layer, head): the sample's draws."""
    return _splitmix(feature_id, (layer.astype(np.uint64) << np.uint64(10)) ^ head.astype(np.uint64), seed)


def slot_uniform(feature_id: np.ndarray, slot: np.ndarray, seed: int) -> np.ndarray:
    """A seeded number in [0, 1) per row from its (feature_id, slot), a slot being layer * heads + head: an order
    of each head's rows by feature, the same whatever the row order or shards."""
    return _splitmix(feature_id, slot.astype(np.uint64) << np.uint64(10), seed)


def _uniform_of(table: pa.Table, seed: int) -> np.ndarray:
    return row_uniform(table["feature_id"].to_numpy(), table["layer"].to_numpy(), table["head"].to_numpy(), seed)


def sampled_rows(table: pa.Table, spec: SampleSpec) -> pa.Table:
    if spec.mode != "random":
        return table
    return table.filter(pa.array(_uniform_of(table, spec.seed) < spec.fraction))


def fit_vectors(dataset: Location, manifest: Manifest, groups: list[int] | None, spec: SampleSpec, share: float
                ) -> np.ndarray:
    """A seeded `share` of the sampled rows of some row groups of a shard (all where None), as float32 vectors."""
    vectors = []
    for table in read_rows(dataset, manifest, spec.feature_stop(manifest), FIT_COLUMNS, row_groups=groups):
        table = sampled_rows(table, spec)
        keep = _uniform_of(table, spec.seed + 1) < share
        vectors.append(embedding_matrix(table.filter(pa.array(keep))))
    return np.concatenate(vectors)


_KEYS, _NUMBERS, _REDUCED, _BYTES, _POOLED = (itemgetter(i) for i in range(5))  # a _project_job result's parts


def _project_job(dataset: Location, manifest: Manifest, spec: SampleSpec, reducer: Reducer
                 ) -> tuple[pa.Table, pa.Table, np.ndarray, int, np.ndarray | None]:
    """One shard's sampled rows, read a row group at a time and projected: (keys, feature/layer/head and
    statistics, reduced vectors, bytes read, pooled maps where the dataset has them)."""
    counter = BytesRead()
    keys, numbers, reduced, pooled = [], [], [], []
    for table in read_rows(dataset, manifest, spec.feature_stop(manifest), counter=counter):
        table = sampled_rows(table, spec)
        reduced.append(reducer.transform(embedding_matrix(table)))
        pooled.append(pooled_matrix(table))
        keys.append(table.select(list(KEY_COLUMNS)))
        numbers.append(table.drop_columns([c for c in ("embedding", "question_id", "span", POOLED)
                                           if c in table.column_names]))
    maps = None if any(p is None for p in pooled) else np.concatenate(pooled)
    return pa.concat_tables(keys), pa.concat_tables(numbers), np.concatenate(reduced), counter.count, maps


def fit_groups(manifests: list[Manifest], spec: SampleSpec, fit_rows: int
               ) -> tuple[dict[int, list[int] | None], float]:
    """A seeded choice of row groups holding about FIT_GROUP_ROWS x fit_rows sampled rows, by shard (None: the
    whole shard, for format 1), and the share of their rows the fit sample takes."""
    groups = []
    for manifest in manifests:
        if manifest.row_groups is None:
            groups.append((manifest.shard, None, spec.selected_rows(manifest)))
            continue
        groups += [(manifest.shard, i, rows) for i, group in enumerate(manifest.row_groups)
                   if (rows := spec.selected_rows(manifest, group.features))]
    order = np.random.RandomState(spec.seed).permutation(len(groups))
    chosen: dict[int, list[int] | None] = {}
    total = 0.0
    for i in order:
        shard, group, rows = groups[i]
        if group is None:
            chosen[shard] = None
        else:
            chosen.setdefault(shard, []).append(group)
        total += rows
        if total >= FIT_GROUP_ROWS * fit_rows:
            break
    share = min(1.0, FIT_OVERSAMPLE * fit_rows / max(total, 1))
    return {shard: sorted(g) if g is not None else None for shard, g in chosen.items()}, share


def _on_worker(job, *args):
    """`job(*args)`, retried on transient faults; a damaged shard's ShardError is returned as the result rather than
    raised (the worker would log a failed task with its traceback)."""
    try:
        return retrying(job, *args)
    except ShardError as exc:
        return exc


def _shard_error(result) -> ShardError | None:
    return result if isinstance(result, ShardError) else None


def _gather_or_skip(client, futures: list, manifests: list[Manifest], on_bad_shard: str,
                    skipped: dict[int, str]) -> list[tuple[Manifest, object]]:
    """The futures of `_on_worker` jobs that read their shard, with their manifests; a shard that is damaged is
    skipped and named where on_bad_shard is 'skip', else its ShardError is raised; every other failure is raised."""
    done = []
    for manifest, future, error in zip(manifests, futures, client.gather(client.map(_shard_error, futures))):
        if error is None:
            done.append((manifest, future))
        elif on_bad_shard == "skip":
            skipped[manifest.shard] = str(error)
        else:
            raise error
    return done


def spill_keys(client, parts: list, folder: Path) -> list[Path]:
    """The key tables of the `_project_job` results `parts`, fetched from the workers a part at a time and written
    to Parquet files in a fresh folder inside `folder`; their paths, in order."""
    spilled = Path(tempfile.mkdtemp(prefix="sample-keys-", dir=folder))
    paths = []
    for index, future in enumerate(client.map(_KEYS, parts)):
        paths.append(spilled / f"part-{index:06d}.parquet")
        pq.write_table(future.result(), paths[-1])
    return paths


def _row_group_rows(manifest: Manifest) -> int:
    return max((g.rows for g in manifest.row_groups), default=0) if manifest.row_groups else manifest.rows


def load_sample(client, dataset: Location, manifests: list[Manifest], spec: SampleSpec, pca: Projection,
                standardize: bool, dim: int, budget: MemoryBudget, keys: Path, on_bad_shard: str = "fail",
                skipped: dict[int, str] | None = None) -> Sample:
    """Fits the PCA (`pca`) on a seeded sample of rows, then reads and projects every selected row on the workers;
    the rows' keys are spilled to Parquet files under the folder `keys`, which the caller owns and removes.
    A missing or corrupt shard fails the run, or with on_bad_shard 'skip' is left out and named (beside those in
    `skipped`, already left out: their manifests could not be read)."""
    components, fit_rows = pca.pca_components, pca.pca_fit_rows
    selected = sum(spec.selected_rows(m) for m in manifests)
    if selected == 0:
        raise InputError(f"{dataset.url}: the sample is empty (mode {spec.mode}, fraction {spec.fraction})")
    largest = max(manifests, key=_row_group_rows)
    budget.check("sample: reading a row group", _row_group_rows(largest), 3 * _row_group_rows(largest) * dim * 4,
                 "rows are read a row group at a time (format 2); format 1 shards are read whole")
    budget.check_pca_fit("sample", fit_rows, selected, dim)
    pooled_bytes = POOLED_ROW_BYTES if any(m.head_js is not None for m in manifests) else 0  # format 4 has both
    budget.check("sample: projected rows", selected,
                 selected * ((min(components, fit_rows, selected, dim) + 16) * 4 * 2 + pooled_bytes),
                 "lower --features-per-shard or --fraction, or fewer --pca-components")
    skipped = dict(skipped or {})
    seconds: dict[str, float] = {}
    with timed(seconds, "sample: PCA fit"):
        groups, share = fit_groups(manifests, spec, fit_rows)
        fitting = [m for m in manifests if m.shard in groups]
        fits = client.map(_on_worker, [fit_vectors] * len(fitting), [dataset] * len(fitting), fitting,
                          [groups[m.shard] for m in fitting], [spec] * len(fitting), [share] * len(fitting),
                          pure=False)
        fitted = _gather_or_skip(client, fits, fitting, on_bad_shard, skipped)
        if not fitted:
            raise ShardError(f"{dataset.url}: every shard chosen for the PCA fit is unreadable: {skipped}")
        vectors = np.concatenate([f.result() for _, f in fitted])
        if len(vectors) > fit_rows:
            vectors = vectors[np.sort(np.random.RandomState(spec.seed).choice(len(vectors), fit_rows, replace=False))]
        reducer = fit_reducer(vectors, capped_components(components, *vectors.shape), standardize, spec.seed)
    with timed(seconds, "sample: read and project"):
        readable = [m for m in manifests if m.shard not in skipped]
        shared = client.scatter(reducer, broadcast=True, hash=False)
        reads = client.map(_on_worker, [_project_job] * len(readable), [dataset] * len(readable), readable,
                           [spec] * len(readable), [shared] * len(readable), pure=False)
        done = _gather_or_skip(client, reads, readable, on_bad_shard, skipped)
        if not done:
            raise ShardError(f"{dataset.url}: every shard is unreadable: {skipped}")
        parts = [future for _, future in done]
        numbers = client.gather(client.map(_NUMBERS, parts))
        rows = pa.concat_tables(numbers).to_pandas()
        if len(rows) == 0:
            raise InputError(f"{dataset.url}: the sample is empty (mode {spec.mode}, fraction {spec.fraction})")
        reduced = np.concatenate(client.gather(client.map(_REDUCED, parts)))
        pooled = client.gather(client.map(_POOLED, parts))
        pooled = None if any(p is None for p in pooled) else np.concatenate(pooled)
        key_files = spill_keys(client, parts, keys)
    return Sample(
        rows=rows, reduced=reduced, reducer=reducer, key_files=key_files, pooled=pooled,
        part_shards=[m.shard for m, _ in done], part_rows=[t.num_rows for t in numbers], dim=vectors.shape[1],
        fit_rows=len(vectors), bytes_read=sum(client.gather(client.map(_BYTES, parts))),
        bytes_selected=sum(m.bytes * spec.selected_rows(m) // m.rows for m, _ in done),
        skipped=dict(sorted(skipped.items())), seconds=seconds)
