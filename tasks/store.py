"""Dataset storage: row schema, Parquet shards, manifests, dataset.json, over any fsspec destination.

A shard is published in two steps: the Parquet file appears whole under its final name (a rename on local
disk, a single object write on object stores), then its manifest is written. The manifest is the marker of a
complete shard: readers and re-runs ignore a Parquet file without one."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import InputError
from tasks.storage import Location

DATASET_RECORD = "dataset.json"
VERSIONS = "versions"
KEY_COLUMNS = ("feature_id", "layer", "head")


class DatasetMismatchError(InputError):
    """The destination holds a dataset made with another configuration."""


class ShardError(InputError):
    """A shard is missing, incomplete or does not match its manifest."""


def row_schema(dim: int, dtype: str, statistics: Sequence[str]) -> pa.Schema:
    """One row per (feature, layer, head): keys, the embedding, and per-head statistics."""
    value = pa.float16() if dtype == "float16" else pa.float32()
    return pa.schema(
        [
            ("feature_id", pa.int64()),
            ("question_id", pa.string()),
            ("span", pa.int16()),
            ("layer", pa.int16()),
            ("head", pa.int16()),
            ("embedding", pa.list_(value, dim)),
        ]
        + [(name, pa.float32()) for name in statistics]
    )


def rows_table(
    schema: pa.Schema,
    feature_id: np.ndarray,
    question_id: Sequence[str],
    span: np.ndarray,
    embeddings: np.ndarray,
    statistics: np.ndarray,
) -> pa.Table:
    """Rows for a batch of features in (feature, layer, head) order.

    embeddings: (features * layers * heads, dim); statistics: (features, layers, heads, n_statistics)."""
    n, layers, heads, _ = statistics.shape
    per_feature = layers * heads
    if embeddings.shape[0] != n * per_feature:
        raise ValueError(f"{embeddings.shape[0]} embeddings for {n} features x {layers} layers x {heads} heads")
    value_type = schema.field("embedding").type.value_type
    flat = pa.array(embeddings.astype(value_type.to_pandas_dtype(), copy=False).reshape(-1))
    columns = {
        "feature_id": np.repeat(feature_id.astype(np.int64), per_feature),
        "question_id": pa.array(np.repeat(np.asarray(question_id, dtype=object), per_feature), pa.string()),
        "span": np.repeat(span.astype(np.int16), per_feature),
        "layer": np.tile(np.repeat(np.arange(layers, dtype=np.int16), heads), n),
        "head": np.tile(np.arange(heads, dtype=np.int16), n * layers),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[1]),
    }
    stats = statistics.reshape(n * per_feature, -1).astype(np.float32)
    for i, name in enumerate(schema.names[len(columns):]):
        columns[name] = stats[:, i]
    return pa.table(columns, schema=schema)


def shard_name(index: int) -> str:
    return f"shard-{index:06d}"


def _differences(existing: dict, record: dict) -> list[str]:
    return sorted(
        f"{part}.{key}"
        for part in ("config", "source", "model", "encoder")
        for key in set(existing.get(part, {})) | set(record.get(part, {}))
        if existing.get(part, {}).get(key) != record.get(part, {}).get(key)
    )


def ensure_dataset_record(dest: Location, record: dict, new_version: bool = False) -> Location:
    """The folder this dataset goes to: `dest` when it is empty (dataset.json is written, with its creation
    time) or holds the same fingerprint; with `new_version`, `dest/versions/FINGERPRINT` when `dest` holds
    another dataset. Otherwise the run is refused, naming what differs."""
    existing = dest.read_json(DATASET_RECORD)
    if existing is None:
        dest.write_json(DATASET_RECORD, {**record, "created": datetime.now(timezone.utc).isoformat()})
        return dest
    if existing.get("fingerprint") == record["fingerprint"]:
        return dest
    version = f"{VERSIONS}/{record['fingerprint']}"
    if new_version:
        return ensure_dataset_record(dest.child(version), record)
    raise DatasetMismatchError(
        f"{dest.url}: holds a dataset with fingerprint {existing.get('fingerprint')}, this run has "
        f"{record['fingerprint']} (differs in: {', '.join(_differences(existing, record)) or 'format'}); "
        f"choose another destination, or pass --new-version to write it to {dest.url}/{version}"
    )


def dataset_versions(root: Location) -> list[Location]:
    """The dataset at `root` (if any) and those under its versions/ folder."""
    try:
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in root.fs.ls(root.path(VERSIONS), detail=False))
    except FileNotFoundError:
        names = []
    candidates = [root, *(root.child(f"{VERSIONS}/{name}") for name in names)]
    return [c for c in candidates if c.read_json(DATASET_RECORD) is not None]


def is_complete(dataset: Location) -> bool:
    """Every shard that dataset.json plans is published."""
    record = dataset.read_json(DATASET_RECORD)
    return record is not None and len(published_manifests(dataset, record["fingerprint"])) == record["shards"]["count"]


def newest_complete(root: Location) -> Location:
    """The most recently created complete dataset among `root` and its versions."""
    complete = [d for d in dataset_versions(root) if is_complete(d)]
    if not complete:
        raise ShardError(f"{root.url}: no complete dataset here or under {VERSIONS}/")
    return max(complete, key=lambda d: d.read_json(DATASET_RECORD).get("created", ""))


@contextmanager
def staging_dir(dest: Location) -> Iterator[Path]:
    """A local folder for files on their way to `dest`, removed afterwards whatever happens.
    For a local destination it sits inside it, so that publishing is a rename."""
    if dest.is_local:
        os.makedirs(dest.root, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.root))
    else:
        path = Path(tempfile.mkdtemp(prefix="atlas-staging-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_staging(dest: Location) -> None:
    """Removes the staging folders and half-written JSON files that a killed run left in a local destination."""
    if dest.is_local and os.path.isdir(dest.root):
        for entry in Path(dest.root).glob(".partial-*"):
            shutil.rmtree(entry, ignore_errors=True)
        for entry in Path(dest.root).glob(".*.partial-*"):
            entry.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def publish_shard(
    dest: Location, index: int, local: Path, schema: pa.Schema, expected_rows: int, manifest: dict
) -> dict:
    """Verifies a locally written shard, puts it under its final name, then writes its manifest."""
    meta = pq.ParquetFile(local)
    if meta.metadata.num_rows != expected_rows:
        raise ShardError(f"{local}: {meta.metadata.num_rows} rows written, expected {expected_rows}")
    if not meta.schema_arrow.equals(schema):
        raise ShardError(f"{local}: schema differs from the dataset's row schema")
    name = shard_name(index)
    manifest = {
        **manifest,
        "shard": index,
        "file": f"{name}.parquet",
        "rows": expected_rows,
        "bytes": local.stat().st_size,
        "sha256": _sha256(local),
        "published": datetime.now(timezone.utc).isoformat(),
    }
    if dest.is_local:
        os.replace(local, dest.path(f"{name}.parquet"))
    else:
        dest.fs.put_file(str(local), dest.path(f"{name}.parquet"))
    dest.write_json(f"{name}.json", manifest)
    return manifest


def published_manifest(dest: Location, index: int, fingerprint: str) -> dict | None:
    """The manifest of shard `index` if it is published in `dest` for this fingerprint."""
    record = dest.read_json(f"{shard_name(index)}.json")
    return record if record is not None and record.get("fingerprint") == fingerprint else None


def published_manifests(dest: Location, fingerprint: str) -> dict[int, dict]:
    """Manifests of the shards that are complete in `dest` for this fingerprint, by shard index."""
    try:
        names = dest.fs.glob(dest.path("shard-*.json"))
    except FileNotFoundError:
        return {}
    manifests = {}
    for path in names:
        record = dest.read_json(path.rsplit("/", 1)[-1])
        if record is not None and record.get("fingerprint") == fingerprint:
            manifests[record["shard"]] = record
    return manifests


def read_shard(dest: Location, index: int, verify: bool = True) -> pa.Table:
    """A published shard as an Arrow table, checked against its manifest (row count and sha256)."""
    name = shard_name(index)
    manifest = dest.read_json(f"{name}.json")
    if manifest is None:
        raise ShardError(f"{dest.url}: {name} is not published (no manifest)")
    try:
        data = dest.fs.cat_file(dest.path(manifest["file"]))
    except FileNotFoundError as exc:
        raise ShardError(f"{dest.url}: {manifest['file']} is missing") from exc
    if verify and hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise ShardError(f"{dest.url}: {manifest['file']} does not match its manifest's sha256")
    table = pq.read_table(pa.BufferReader(data))
    if table.num_rows != manifest["rows"]:
        raise ShardError(f"{dest.url}: {manifest['file']} has {table.num_rows} rows, manifest says {manifest['rows']}")
    return table
