"""The rows to cluster: published shards read on Dask workers, sampled, keys kept beside their vectors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from distributed import wait

from tasks.errors import InputError
from tasks.storage.faults import retrying
from tasks.storage.location import Location
from tasks.storage.records import DatasetRecord, Manifest
from tasks.storage.rows import embedding_matrix
from tasks.storage.shards import ShardError, published_manifests, read_shard

KEYS = ("feature_id", "question_id", "span", "layer", "head")


@dataclass(frozen=True)
class SampleSpec:
    """How rows are chosen: the first `features_per_shard` features of each shard (the original's choice,
    which keeps each context's windows together), or a seeded random `fraction` of all rows."""

    mode: Literal["first", "random"] = "first"
    features_per_shard: int | None = None
    fraction: float = 1.0
    seed: int = 0


@dataclass
class Sample:
    """The sampled rows' keys and per-head statistics, here, and their vectors, left on the Dask workers as
    one float32 (rows, dim) array per shard: row i of `rows` is row i of the parts laid end to end."""

    rows: pd.DataFrame
    parts: list  # distributed.Future of np.ndarray, in row order
    part_rows: list[int]
    dim: int
    skipped: dict[int, str] = field(default_factory=dict)  # shard index -> why it was left out

    @classmethod
    def scatter(cls, client, rows: pd.DataFrame, vectors: np.ndarray, n_parts: int = 2) -> Sample:
        """A sample from arrays held here (small data, tests)."""
        blocks = np.array_split(vectors.astype(np.float32), n_parts)
        return cls(rows.reset_index(drop=True), client.scatter(blocks, hash=False), [len(b) for b in blocks],
                   vectors.shape[1])

    def gather(self, client) -> np.ndarray:
        """All vectors here (small data only)."""
        return np.concatenate(client.gather(self.parts))


def select_manifests(dataset: Location, record: DatasetRecord, shards: list[int] | None) -> list[Manifest]:
    """Manifests of the published shards to read, in shard order; asking for an unpublished shard is an error."""
    published = published_manifests(dataset, record.fingerprint)
    if not published:
        raise InputError(f"{dataset.url}: no published shards")
    wanted = sorted(published) if shards is None else sorted(shards)
    missing = [s for s in wanted if s not in published]
    if missing:
        raise InputError(f"{dataset.url}: shards {missing} are not published (published: {sorted(published)})")
    return [published[s] for s in wanted]


def _uniform(feature_id: np.ndarray, layer: np.ndarray, head: np.ndarray, seed: int) -> np.ndarray:
    """A number in [0, 1) per row from (feature_id, layer, head, seed): splitmix64, independent of row order."""
    with np.errstate(over="ignore"):
        z = (feature_id.astype(np.uint64) << np.uint64(20)) ^ (layer.astype(np.uint64) << np.uint64(10))
        z = z ^ head.astype(np.uint64) ^ (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def row_mask(table: pa.Table, manifest: Manifest, spec: SampleSpec) -> np.ndarray:
    """Which rows of a shard the sample keeps."""
    feature_id = table["feature_id"].to_numpy()
    if spec.mode == "first":
        if spec.features_per_shard is None:
            return np.ones(len(feature_id), dtype=bool)
        return feature_id < manifest.features[0] + spec.features_per_shard
    return _uniform(feature_id, table["layer"].to_numpy(), table["head"].to_numpy(), spec.seed) < spec.fraction


def read_sampled_shard(dataset: Location, manifest: Manifest, spec: SampleSpec) -> tuple[pa.Table, np.ndarray]:
    """One shard's sampled rows (verified against its manifest): keys and statistics, and float32 vectors.
    Runs on a Dask worker."""
    table = retrying(read_shard, dataset, manifest.shard)
    table = table.filter(pa.array(row_mask(table, manifest, spec)))
    return table.drop_columns(["embedding"]), embedding_matrix(table)


def _keys(part: tuple[pa.Table, np.ndarray]) -> pa.Table:
    return part[0]


def _vectors(part: tuple[pa.Table, np.ndarray]) -> np.ndarray:
    return part[1]


def load_sample(client, dataset: Location, manifests: list[Manifest], spec: SampleSpec, on_bad_shard: str = "fail"
                ) -> Sample:
    """Reads the shards in parallel on the workers, each checked against its manifest; keys come here, vectors
    stay there. A missing or corrupt shard fails the run, or with on_bad_shard 'skip' is left out and named."""
    read = client.map(read_sampled_shard, [dataset] * len(manifests), manifests, [spec] * len(manifests),
                      pure=False)
    wait(read)
    shards, skipped = [], {}
    for manifest, future in zip(manifests, read):
        if future.status == "error":
            error = future.exception()
            if not (isinstance(error, ShardError) and on_bad_shard == "skip"):
                raise error
            skipped[manifest.shard] = str(error)
        else:
            shards.append(future)
    if not shards:
        raise InputError(f"{dataset.url}: every shard is unreadable: {skipped}")
    keys = client.gather(client.map(_keys, shards))
    vectors = client.map(_vectors, shards)
    rows = pa.concat_tables(keys).to_pandas()
    if len(rows) == 0:
        raise InputError(f"{dataset.url}: the sample is empty (mode {spec.mode}, fraction {spec.fraction})")
    dim = client.submit(np.shape, vectors[0]).result()[1]
    return Sample(rows, vectors, [k.num_rows for k in keys], dim, skipped)
