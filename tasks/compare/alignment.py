"""Two datasets of the same features: their records and manifests side by side, refused in one line naming the
dataset and what differs where they do not hold the same SQuAD features (source, windows, grid, shards, keys)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tasks.errors import InputError
from tasks.storage import DatasetRecord, KEY_COLUMNS, Location, Manifest, dataset_record, read_rows, select_manifests

WINDOWS = ("max_length", "doc_stride", "max_query_length")  # the config fields that cut contexts into features


class AlignmentError(InputError):
    """Dataset B does not hold the same features (or grid) as dataset A."""


@dataclass(frozen=True)
class Pair:
    """Dataset A (the reference) and dataset B, checked to hold the same features: the shards to read of each."""

    a: Location
    b: Location
    record_a: DatasetRecord
    record_b: DatasetRecord
    manifests_a: list[Manifest]
    manifests_b: list[Manifest]

    @property
    def layers(self) -> int:
        return self.record_a.model.layers

    @property
    def heads(self) -> int:
        return self.record_a.model.heads

    @property
    def statistics(self) -> list[str]:
        """The per-map statistics both datasets hold, in A's order."""
        return [name for name in self.record_a.statistics if name in self.record_b.statistics]


def _record_difference(a: DatasetRecord, b: DatasetRecord) -> str | None:
    """What differs between the two records for the features and grid, in words; None where nothing does."""
    if a.source.sha256 != b.source.sha256:
        return f"made from another SQuAD file (source sha256 {b.source.sha256[:12]}... against {a.source.sha256[:12]}...)"
    for name in WINDOWS:
        if a.config.get(name) != b.config.get(name):
            return f"features cut with {name} {b.config.get(name)} against {a.config.get(name)}"
    if a.source.features != b.source.features:
        return f"{b.source.features} features against {a.source.features}"
    if (a.model.layers, a.model.heads) != (b.model.layers, b.model.heads):
        return (f"a grid of {b.model.layers} layers x {b.model.heads} heads against "
                f"{a.model.layers} x {a.model.heads}")
    if a.encoder.dim != b.encoder.dim:
        return f"{b.encoder.dim}-d embeddings against {a.encoder.dim}-d"
    return None


def _manifest_difference(a: list[Manifest], b: list[Manifest]) -> str | None:
    shards_a, shards_b = [m.shard for m in a], [m.shard for m in b]
    if shards_a != shards_b:
        return f"shards {shards_b} published against {shards_a} (choose common ones with --shards)"
    for ma, mb in zip(a, b):
        if (mb.features, mb.examples, mb.first_span, mb.rows) != (ma.features, ma.examples, ma.first_span, ma.rows):
            return (f"shard {mb.shard} holds features {list(mb.features)}, examples {list(mb.examples)}, "
                    f"{mb.rows} rows against {list(ma.features)}, {list(ma.examples)}, {ma.rows}")
        groups_a = [g.features for g in ma.row_groups] if ma.row_groups else None
        groups_b = [g.features for g in mb.row_groups] if mb.row_groups else None
        if groups_a != groups_b:
            return f"shard {mb.shard} is split into other row groups (re-extract one dataset with the other's version)"
    return None


def open_pair(a_url: str, b_url: str, credentials: str | None, shards: list[int] | None) -> Pair:
    """The two datasets with the shards to read; an AlignmentError names B (or A) and what differs."""
    a, b = Location.at(a_url, credentials), Location.at(b_url, credentials)
    record_a, record_b = dataset_record(a), dataset_record(b)
    difference = _record_difference(record_a, record_b)
    if difference is None:
        manifests_a, manifests_b = select_manifests(a, record_a, shards), select_manifests(b, record_b, shards)
        difference = _manifest_difference(manifests_a, manifests_b)
    if difference is not None:
        raise AlignmentError(f"{b.url} does not hold the same features as {a.url}: {difference}")
    return Pair(a, b, record_a, record_b, manifests_a, manifests_b)


def check_keys(pair: Pair, table_a: pa.Table, table_b: pa.Table) -> None:
    """The rows of A and B read side by side have the same feature, question, span, layer and head, row for row;
    else an AlignmentError names the first feature that differs."""
    if table_a.num_rows != table_b.num_rows:
        raise AlignmentError(f"{pair.b.url} does not hold the same features as {pair.a.url}: {table_b.num_rows} rows "
                             f"read against {table_a.num_rows}")
    for column in KEY_COLUMNS:
        left, right = table_a[column].to_numpy(zero_copy_only=False), table_b[column].to_numpy(zero_copy_only=False)
        differs = np.flatnonzero(left != right)
        if len(differs):
            row = int(differs[0])
            raise AlignmentError(
                f"{pair.b.url} does not hold the same features as {pair.a.url}: feature "
                f"{table_a['feature_id'][row].as_py()} has {column} {right[row]!r} against {left[row]!r}")


def check_first_rows(pair: Pair) -> None:
    """check_keys on the first row group of the first shard of each (key columns only): the cheap check the
    command line runs before anything starts; the flow checks every row it reads."""
    first_a = next(read_rows(pair.a, pair.manifests_a[0], columns=KEY_COLUMNS))
    first_b = next(read_rows(pair.b, pair.manifests_b[0], columns=KEY_COLUMNS))
    check_keys(pair, first_a, first_b)
