"""A synthetic dataset in the real format (dataset.json, format-2 shards and manifests), shaped like the demo's
embeddings: one dense cluster holding most rows, satellite clusters each made of a few heads, and noise.

Every row's vector is a point of a low-dimensional latent space mapped into `dim` dimensions by one seeded
random projection, plus a little isotropic noise: the rank structure PCA finds in real ResNet embeddings.
A second dataset of the same features (a `variant`) keeps every row's latent point, draws fresh noise and
statistics, and moves the heads it is told to shift: a comparison's planted change."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tasks.cluster.sample import row_uniform
from tasks.storage.dataset import ensure_dataset_record
from tasks.storage.location import Location
from tasks.storage.records import FORMAT, DatasetRecord
from tasks.storage.rows import row_schema
from tasks.storage.shards import publish_shard, staging_dir
from tasks.storage.writer import ShardFileWriter

LAYERS, HEADS, LATENT = 12, 12, 16
STATISTICS = ("entropy", "cls_mass", "sep_mass", "prev_mass", "next_mass", "diag_mass")
SATELLITES, NOISE = 6, 0.03  # satellite clusters; share of rows that are noise
SHIFT, STATISTIC_SHIFT = 2.0, 0.25  # a shifted head's move in the latent space; what it adds to each statistic


def planted_groups(feature_id: np.ndarray, layer: np.ndarray, head: np.ndarray, seed: int = 0) -> np.ndarray:
    """The planted group of each row, from its keys alone: -1 noise (NOISE of the rows), 1..SATELLITES the
    satellite of heads with (layer * HEADS + head) % 24 == group - 1 (90% of their rows), else 0, the dense
    cluster."""
    slot = layer.astype(np.int64) * HEADS + head
    group = np.where((slot % 24 < SATELLITES) & (row_uniform(feature_id, layer, head, seed) < 0.9), slot % 24 + 1, 0)
    return np.where(row_uniform(feature_id, layer, head, seed + 1) < NOISE, -1, group)


def _latent(features: np.ndarray, rng: np.random.Generator, seed: int) -> np.ndarray:
    """Latent points of every (feature, layer, head) of `features`, in that order."""
    n = len(features) * LAYERS * HEADS
    keys = np.stack(np.meshgrid(features, np.arange(LAYERS), np.arange(HEADS), indexing="ij"), -1).reshape(-1, 3)
    group = planted_groups(keys[:, 0], keys[:, 1], keys[:, 2], seed)
    centres = np.random.default_rng(12345).normal(size=(SATELLITES + 1, LATENT)) * 6.0
    centres[0] = 0.0
    points = centres[np.maximum(group, 0)] + rng.normal(size=(n, LATENT)) * np.where(group == 0, 1.0, 0.4)[:, None]
    noise = group == -1
    points[noise] = rng.uniform(-12, 12, size=(int(noise.sum()), LATENT))
    return points


def _record(fingerprint: str, shards: int, features_per_shard: int, dim: int, dtype: str) -> DatasetRecord:
    return DatasetRecord(
        format=FORMAT, fingerprint=fingerprint, config={"synthetic": True, "dtype": dtype},
        statistics=list(STATISTICS),
        source={"location": "synthetic", "sha256": "0" * 64, "examples": 0, "features": shards * features_per_shard},
        model={"model": "synthetic", "layers": LAYERS, "heads": HEADS},
        encoder={"encoder": "synthetic", "weights": "none", "bn_mode": "eval", "normalise": True, "dim": dim},
        shards={"count": shards, "size": features_per_shard, "rows_per_feature": LAYERS * HEADS})


def write_synthetic(url: str, shards: int, features_per_shard: int, dim: int = 2048, dtype: str = "float32",
                    seed: int = 0, batch_features: int = 100, variant: int = 0, shifted: Sequence[int] = ()
                    ) -> Location:
    """Writes the dataset to `url` (shards of `features_per_shard` features, LAYERS x HEADS rows a feature).
    Datasets of one seed share their latent points; `variant` seeds the noise and the statistics, and the heads
    at the slots `shifted` (layer * HEADS + head) move SHIFT along one seeded latent direction, their
    statistics up by STATISTIC_SHIFT."""
    dest = Location.open(url)
    fingerprint = f"synthetic-{shards}x{features_per_shard}x{dim}-{dtype}-{seed}-{variant}-{sorted(shifted)}"
    ensure_dataset_record(dest, _record(fingerprint, shards, features_per_shard, dim, dtype))
    projection = np.random.default_rng(seed).normal(size=(LATENT, dim)).astype(np.float32) / np.sqrt(LATENT)
    direction = np.random.default_rng([seed, 1]).normal(size=LATENT)
    schema = row_schema(dim, dtype, STATISTICS)
    moved = np.isin(np.arange(LAYERS * HEADS), list(shifted))
    for shard in range(shards):
        rng, noise = np.random.default_rng([seed, shard]), np.random.default_rng([seed, shard, variant])
        first = shard * features_per_shard
        with staging_dir(dest) as staging:
            writer = ShardFileWriter(staging / "shard.parquet", schema)
            for start in range(first, first + features_per_shard, batch_features):
                features = np.arange(start, min(start + batch_features, first + features_per_shard))
                points = _latent(features, rng, seed)
                points[np.tile(moved, len(features))] += direction * (SHIFT / np.linalg.norm(direction))
                vectors = points.astype(np.float32) @ projection
                vectors += noise.standard_normal((len(points), dim), dtype=np.float32) * np.float32(0.05)
                statistics = noise.random((len(features), LAYERS, HEADS, len(STATISTICS)), dtype=np.float32)
                statistics.reshape(len(features), LAYERS * HEADS, -1)[:, moved] += np.float32(STATISTIC_SHIFT)
                writer.write(features, [f"q{f}" for f in features], np.zeros(len(features), np.int16), vectors,
                             statistics)
            groups = writer.close()
            rows = features_per_shard * LAYERS * HEADS
            publish_shard(dest, shard, staging / "shard.parquet", schema, rows, {
                "fingerprint": fingerprint, "features": (first, first + features_per_shard),
                "examples": (first, first + features_per_shard), "first_span": 0, "seconds": 0.0,
                "maps_per_second": 0.0, "row_groups": groups})
    return dest
