"""Shards: staged locally, verified, published (the Parquet file first, its manifest last) and listed.

A shard is published in two steps: the Parquet file appears whole under its final name (a rename on local
disk, a single object write on object stores), then its manifest is written. The manifest is the marker of a
complete shard: readers and re-runs ignore a Parquet file without one."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import InputError
from tasks.storage.location import Location
from tasks.storage.records import DatasetRecord, Manifest, RecordError
from tasks.storage.writer import file_sha256, footer_sha256


class ShardError(InputError):
    """A shard is missing, incomplete or does not match its manifest, or its manifest cannot be read."""


MANIFEST_NAME = re.compile(r"shard-(\d{6})\.json")


def shard_name(index: int) -> str:
    return f"shard-{index:06d}"


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
    """Removes the staging folders and half-written JSON files that a killed run left in a local destination.
    Only for the holder of the destination's lease (tasks.storage.lease): a live run's staging looks the same."""
    if dest.is_local and os.path.isdir(dest.root):
        for entry in Path(dest.root).glob(".partial-*"):
            shutil.rmtree(entry, ignore_errors=True)
        for entry in Path(dest.root).glob(".*.partial-*"):
            entry.unlink(missing_ok=True)


def publish_shard(dest: Location, index: int, local: Path, schema: pa.Schema, expected_rows: int,
                  details: dict[str, Any]) -> Manifest:
    """Verifies a locally written shard, puts it under its final name, then writes its manifest (`details`
    are the manifest's fields that describe how the shard was made). Where the manifest cannot be written, the
    Parquet file is taken back: no manifest-less file is left under the final name."""
    meta = pq.ParquetFile(local)
    if meta.metadata.num_rows != expected_rows:
        raise ShardError(f"{local}: {meta.metadata.num_rows} rows written, expected {expected_rows}")
    if not meta.schema_arrow.equals(schema):
        raise ShardError(f"{local}: schema differs from the dataset's row schema")
    name = shard_name(index)
    manifest = Manifest(**details, shard=index, file=f"{name}.parquet", rows=expected_rows,
                        bytes=local.stat().st_size, sha256=file_sha256(local), footer_sha256=footer_sha256(local),
                        published=datetime.now(timezone.utc).isoformat())
    final = dest.path(manifest.file)
    if dest.is_local:
        os.replace(local, final)
    else:
        dest.fs.put_file(str(local), final)
    try:
        dest.write_json(f"{name}.json", manifest.to_json())
    except BaseException:
        _withdraw(dest, final, local)
        raise
    return manifest


def _withdraw(dest: Location, final: str, local: Path) -> None:
    """Takes a shard's Parquet file back from under its final name when its manifest could not be written: back
    to its staged name on local disk (so that publishing can be tried again), removed from an object store."""
    if dest.is_local:
        os.replace(final, local)
        return
    with contextlib.suppress(Exception):  # where even that fails, readers ignore a file without a manifest
        dest.fs.rm_file(final)


def read_manifest(dest: Location, name: str) -> Manifest | None:
    """The manifest `name` (a file name in `dest`), or None where there is none; one that is not a valid
    manifest of the shard its name says is a ShardError naming it."""
    data = dest.read_bytes(name)
    if data is None:
        return None
    try:
        manifest = Manifest.parse(data, f"{dest.url}: {name}")
    except RecordError as exc:
        raise ShardError(f"{exc} (not a valid shard manifest)") from None
    if name != f"{shard_name(manifest.shard)}.json" or manifest.file != f"{shard_name(manifest.shard)}.parquet":
        raise ShardError(f"{dest.url}: {name} is the manifest of shard {manifest.shard} ({manifest.file})")
    return manifest


def manifest_listing(dest: Location, fingerprint: str) -> tuple[dict[int, Manifest], dict[int, ShardError]]:
    """Manifests of the shards that are complete in `dest` for this fingerprint, by shard index, and the shards
    whose manifest cannot be read, with why."""
    try:
        paths = dest.fs.glob(dest.path("shard-*.json"))
    except FileNotFoundError:
        return {}, {}
    manifests: dict[int, Manifest] = {}
    damaged: dict[int, ShardError] = {}
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        if not (match := MANIFEST_NAME.fullmatch(name)):
            continue
        try:
            manifest = read_manifest(dest, name)
        except ShardError as exc:
            damaged[int(match[1])] = exc
            continue
        if manifest is not None and manifest.fingerprint == fingerprint:
            manifests[manifest.shard] = manifest
    return manifests, damaged


def published_manifests(dest: Location, fingerprint: str) -> dict[int, Manifest]:
    """Manifests of the shards that are complete in `dest` for this fingerprint, by shard index; a manifest that
    cannot be read raises its ShardError."""
    manifests, damaged = manifest_listing(dest, fingerprint)
    if damaged:
        raise damaged[min(damaged)]
    return manifests


def readable_manifests(dataset: Location, record: DatasetRecord, shards: list[int] | None, on_bad_shard: str
                       ) -> tuple[list[Manifest], dict[int, str]]:
    """Manifests of the published shards to read (all where `shards` is None), in shard order, and the wanted
    shards whose manifest cannot be read, with why: with on_bad_shard 'fail' the first of them raises, with
    'skip' they are left out. Asking for an unpublished shard is an error."""
    published, damaged = manifest_listing(dataset, record.fingerprint)
    if not published and not damaged:
        raise InputError(f"{dataset.url}: no published shards")
    wanted = sorted(published.keys() | damaged.keys()) if shards is None else sorted(shards)
    missing = [s for s in wanted if s not in published and s not in damaged]
    if missing:
        raise InputError(f"{dataset.url}: shards {missing} are not published (published: {sorted(published)})")
    bad = {s: str(damaged[s]) for s in wanted if s in damaged}
    if bad and on_bad_shard == "fail":
        raise damaged[min(bad)]
    if len(bad) == len(wanted):
        raise ShardError(f"{dataset.url}: every shard is unreadable: {bad}")
    return [published[s] for s in wanted if s in published], bad


def select_manifests(dataset: Location, record: DatasetRecord, shards: list[int] | None) -> list[Manifest]:
    """Manifests of the published shards to read, in shard order; asking for an unpublished shard, or one whose
    manifest cannot be read, is an error."""
    return readable_manifests(dataset, record, shards, "fail")[0]
