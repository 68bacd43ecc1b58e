"""Two hand-made datasets in the real format, identical (up to small noise) except in planted heads whose
embeddings move far away and whose [SEP] mass rises: what the comparison must find, and only that."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from records import shard_details, synthetic_record

from tasks.storage.dataset import ensure_dataset_record
from tasks.storage.location import Location
from tasks.storage.rows import row_schema
from tasks.storage.shards import publish_shard, staging_dir
from tasks.storage.writer import ShardFileWriter

LAYERS, HEADS, DIM = 3, 4, 16
STATS = ["entropy", "cls_mass", "sep_mass", "punct_mass", "prev_mass", "next_mass", "diag_mass", "segment_focus"]
CHANGED = {(2, 1), (2, 3)}  # (layer, head) moved in B
SEP_RISE = 0.4  # B minus A of sep_mass in the changed heads: [SEP] becomes their role
FEATURES, SHARD_SIZE = 40, 20
FAST = dict(permutations=200, bootstrap=50)  # fewer resamples than the defaults: enough for planted changes
CENTRES = np.random.default_rng(11).normal(size=(LAYERS * HEADS, DIM)) * 10


def _statistics(features: np.ndarray, moved: bool, shared: np.random.Generator, noise: np.random.Generator
                ) -> np.ndarray:
    """(features, layers, heads, stats): entropy and masses below every role threshold; in B, small noise, and
    in the changed heads [SEP] mass raised past the threshold."""
    base = np.array([2.0, 0.1, 0.2, 0.05, 0.05, 0.05, 0.05, 0.2], np.float32)
    stats = np.broadcast_to(base, (len(features), LAYERS, HEADS, len(STATS))).copy()
    stats += shared.normal(scale=0.01, size=stats.shape).astype(np.float32)
    if moved:
        stats += noise.normal(scale=0.002, size=stats.shape).astype(np.float32)
        for layer, head in CHANGED:
            stats[:, layer, head, STATS.index("sep_mass")] += SEP_RISE
    return stats


def write_dataset(path: Path, moved: bool, *, sha256: str = "0" * 64, layers: int = LAYERS,
                  features: int = FEATURES, question_prefix: str = "q") -> str:
    """Dataset A (moved=False) or B (moved=True) of the same features (same seeds for what they share)."""
    dest = Location.open(str(path))
    record = synthetic_record(f"planted-{int(moved)}", layers, HEADS, STATS, -(-features // SHARD_SIZE))
    record = record.model_copy(update={"source": record.source.model_copy(update={"sha256": sha256})})
    ensure_dataset_record(dest, record)
    schema = row_schema(DIM, "float32", STATS)
    shared, noise = np.random.default_rng(0), np.random.default_rng(1)
    for index, start in enumerate(range(0, features, SHARD_SIZE)):
        ids = np.arange(start, min(start + SHARD_SIZE, features))
        slots = np.tile(np.arange(layers * HEADS), len(ids))
        vectors = CENTRES[slots % len(CENTRES)] + shared.normal(size=(len(slots), DIM))
        stats = _statistics(ids, moved, shared, noise)[:, :layers]
        if moved:
            vectors += noise.normal(scale=0.05, size=vectors.shape)
            for layer, head in CHANGED:
                vectors[slots == layer * HEADS + head, 0] += 100
        with staging_dir(dest) as staging:
            writer = ShardFileWriter(staging / "s.parquet", schema, group_features=4)
            writer.write(ids, [f"{question_prefix}{f // 2}" for f in ids], ids % 2, vectors, stats)
            details = shard_details(record.fingerprint, (int(ids[0]), int(ids[-1]) + 1)) | {"row_groups": writer.close()}
            publish_shard(dest, index, staging / "s.parquet", schema, len(slots), details)
    return str(path)
