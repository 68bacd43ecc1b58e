"""The on-disk records, typed: dataset.json (`DatasetRecord`), each shard's manifest (`Manifest`) and the lease of
a destination (`LeaseRecord`).

Every reader and writer goes through these types. `format` names the layout version; a dataset written by an
earlier version that this code still reads is listed in `READABLE_FORMATS`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from tasks.errors import InputError

# 2: row groups of whole features, page checksums, footer sha256; 3: role statistics; 4: pooled maps, head divergences
FORMAT = "squad-attention-atlas/4"
READABLE_FORMATS = ("squad-attention-atlas/1", "squad-attention-atlas/2", "squad-attention-atlas/3", FORMAT)


class RecordError(InputError):
    """A dataset record or manifest that is not valid JSON of its type; the message names the file and field."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def parse(cls, data: bytes | str | dict, where: str):
        """The record in `data` (JSON text or a dict), or a RecordError naming `where` and the first bad field."""
        try:
            return cls.model_validate_json(data) if isinstance(data, (bytes, str)) else cls.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(map(str, error["loc"])) or "(the document)"
            raise RecordError(f"{where}: field '{field}': {error['msg']}") from None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class SourceRecord(_Record):
    """The SQuAD file the dataset was made from."""

    location: str
    sha256: str
    examples: int
    features: int


class ModelRecord(_Record):
    """The QA model: its name, revision, grid, and how it was loaded (seed or commit)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    model: str
    revision: str | None = None
    layers: int
    heads: int


class EncoderRecord(_Record):
    """The image encoder: architecture, weights (and their sha256 where loaded from a file), modes, width."""

    model_config = ConfigDict(frozen=True, extra="allow")

    encoder: str
    weights: str
    bn_mode: str
    normalise: bool
    dim: int


class ShardLayout(_Record):
    count: int
    size: int
    rows_per_feature: int


class DatasetRecord(_Record):
    """dataset.json: the full extraction config, its fingerprint, where the input came from, the models."""

    format: str
    fingerprint: str
    config: dict[str, Any]
    source: SourceRecord
    model: ModelRecord
    encoder: EncoderRecord
    statistics: list[str]
    shards: ShardLayout
    created: str | None = None

    @classmethod
    def parse(cls, data: bytes | str | dict, where: str) -> DatasetRecord:
        record = super().parse(data, where)
        if record.format not in READABLE_FORMATS:
            raise RecordError(f"{where}: field 'format': {record.format} is not one this version reads "
                              f"({', '.join(READABLE_FORMATS)})")
        return record


class RowGroupRecord(_Record):
    """One row group of a shard's Parquet file: the features it holds and its rows."""

    features: tuple[int, int]  # feature ids [start, stop)
    rows: int


class Manifest(_Record):
    """A published shard's manifest: the marker that the shard is complete, and what to check it against."""

    shard: int
    file: str
    fingerprint: str
    rows: int
    bytes: int
    sha256: str
    published: str
    features: tuple[int, int]  # feature ids [start, stop)
    examples: tuple[int, int]  # example indices [start, stop)
    first_span: int
    seconds: float
    maps_per_second: float
    row_groups: list[RowGroupRecord] | None = None  # format 2: read selectively, pages checked by CRC
    footer_sha256: str | None = None  # format 2: the Parquet footer, checked at every read
    head_js: list[list[float]] | None = None  # format 4: heads x heads sum over the features of their JS divergence
    head_js_features: int | None = None  # format 4: the features summed in head_js

    @field_validator("head_js")
    @classmethod
    def _square(cls, value: list[list[float]] | None) -> list[list[float]] | None:
        if value is not None and any(len(row) != len(value) for row in value):
            raise ValueError("not a square matrix")
        return value


def head_js_sum(manifests: Iterable[Manifest]) -> tuple[np.ndarray, int] | None:
    """The sum of the shards' head divergence sums (heads x heads, float64, heads flat as layer * heads + head) and
    of the features summed; None where a manifest has none (format 3 or older) or there are no manifests."""
    total, features = None, 0
    for manifest in manifests:
        if manifest.head_js is None or manifest.head_js_features is None:
            return None
        values = np.asarray(manifest.head_js, dtype=np.float64)
        total = values if total is None else total + values
        features += manifest.head_js_features
    return None if total is None else (total, features)


class LeaseRecord(_Record):
    """.atlas-lease.json: the run that owns a destination, and when it last said it is alive."""

    host: str
    pid: int
    token: str  # random, one per run: tells this run's lease from another's
    command: str
    started: str  # ISO 8601, UTC
    heartbeat: str  # ISO 8601, UTC; renewed while the run lives
    stale_after: float  # seconds without a heartbeat after which another run may take the lease over
