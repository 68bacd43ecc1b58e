"""A dataset folder: its dataset.json, the versions beside it, and which of them is complete."""

from __future__ import annotations

from datetime import datetime, timezone

from tasks.errors import InputError
from tasks.storage.location import Location
from tasks.storage.records import DatasetRecord
from tasks.storage.shards import ShardError, manifest_listing

DATASET_RECORD = "dataset.json"
VERSIONS = "versions"


class DatasetMismatchError(InputError):
    """The destination holds a dataset made with another configuration."""


def read_dataset_record(dataset: Location) -> DatasetRecord | None:
    """The dataset.json of `dataset`, typed, or None where there is none."""
    data = dataset.read_bytes(DATASET_RECORD)
    return None if data is None else DatasetRecord.parse(data, dataset.path(DATASET_RECORD))


def dataset_record(dataset: Location) -> DatasetRecord:
    """The dataset.json of `dataset`; a folder without one is an input error."""
    record = read_dataset_record(dataset)
    if record is None:
        raise InputError(f"{dataset.url}: no {DATASET_RECORD}: not a dataset folder (run the extraction first)")
    return record


def _differences(existing: DatasetRecord, record: DatasetRecord) -> list[str]:
    old, new = existing.to_json(), record.to_json()
    return sorted(
        f"{part}.{key}"
        for part in ("config", "source", "model", "encoder")
        for key in set(old[part]) | set(new[part])
        if old[part].get(key) != new[part].get(key)
    )


def ensure_dataset_record(dest: Location, record: DatasetRecord, new_version: bool = False) -> Location:
    """The folder this dataset goes to: `dest` when it is empty (dataset.json is written, with its creation
    time) or holds the same fingerprint; with `new_version`, `dest/versions/FINGERPRINT` when `dest` holds
    another dataset. Otherwise the run is refused, naming what differs."""
    existing = read_dataset_record(dest)
    if existing is None:
        created = record.model_copy(update={"created": datetime.now(timezone.utc).isoformat()})
        dest.write_json(DATASET_RECORD, created.to_json())
        return dest
    if existing.fingerprint == record.fingerprint:
        return dest
    version = f"{VERSIONS}/{record.fingerprint}"
    if new_version:
        return ensure_dataset_record(dest.child(version), record)
    raise DatasetMismatchError(
        f"{dest.url}: holds a dataset with fingerprint {existing.fingerprint}, this run has "
        f"{record.fingerprint} (differs in: {', '.join(_differences(existing, record)) or 'format'}); "
        f"choose another destination, or pass --new-version to write it to {dest.url}/{version}"
    )


def dataset_versions(root: Location) -> list[tuple[Location, DatasetRecord]]:
    """The dataset at `root` (if any) and those under its versions/ folder, with their records."""
    try:
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in root.fs.ls(root.path(VERSIONS), detail=False))
    except FileNotFoundError:
        names = []
    candidates = [root, *(root.child(f"{VERSIONS}/{name}") for name in names)]
    return [(c, record) for c in candidates if (record := read_dataset_record(c)) is not None]


def is_complete(dataset: Location, record: DatasetRecord) -> bool:
    """Every shard that dataset.json plans is published (a manifest that cannot be read counts as not published)."""
    return len(manifest_listing(dataset, record.fingerprint)[0]) == record.shards.count


def newest_complete(root: Location) -> Location:
    """The most recently created complete dataset among `root` and its versions."""
    complete = [(d, r) for d, r in dataset_versions(root) if is_complete(d, r)]
    if not complete:
        raise ShardError(f"{root.url}: no complete dataset here or under {VERSIONS}/")
    return max(complete, key=lambda pair: pair[1].created or "")[0]
