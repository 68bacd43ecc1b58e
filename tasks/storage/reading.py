"""Reading published shards, checked against their manifests.

Format 2 shards are read selectively: only the row groups that hold the wanted features and only the wanted
columns are fetched; the footer is checked against the manifest's sha256 and every page read against its CRC,
so integrity is verified without ever holding the shard. Format 1 shards (no row-group record) are read whole
and hashed, as format 1 did."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.storage.faults import is_transient
from tasks.storage.location import Location
from tasks.storage.records import Manifest
from tasks.storage.shards import ShardError, read_manifest, shard_name
from tasks.storage.writer import read_footer


@dataclass
class BytesRead:
    """Bytes fetched from storage, counted at the file object pyarrow reads through."""

    count: int = 0


class _CountingFile:
    """A binary file that counts what is read through it."""

    def __init__(self, file, counter: BytesRead) -> None:
        self.file, self.counter = file, counter

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.counter.count += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.file.close()

    @property
    def closed(self) -> bool:
        return self.file.closed


def read_shard(dest: Location, index: int, verify: bool = True) -> pa.Table:
    """A published shard whole, as an Arrow table, checked against its manifest."""
    manifest = read_manifest(dest, f"{shard_name(index)}.json")
    if manifest is None:
        raise ShardError(f"{dest.url}: {shard_name(index)} is not published (no manifest)")
    return pa.concat_tables(read_rows(dest, manifest, verify=verify))


def _check_size(dest: Location, manifest: Manifest, size: int) -> None:
    if size != manifest.bytes:
        raise ShardError(f"{dest.url}: {manifest.file} does not match its manifest ({size} bytes, the manifest says "
                         f"{manifest.bytes}: cut short or overwritten)")


def _read_whole(dest: Location, manifest: Manifest, verify: bool, counter: BytesRead) -> pa.Table:
    data = dest.fs.cat_file(dest.path(manifest.file))
    counter.count += len(data)
    _check_size(dest, manifest, len(data))
    if verify and hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise ShardError(f"{dest.url}: {manifest.file} does not match its manifest's sha256")
    table = pq.read_table(pa.BufferReader(data))
    if table.num_rows != manifest.rows:
        raise ShardError(f"{dest.url}: {manifest.file} has {table.num_rows} rows, manifest says {manifest.rows}")
    return table


def _row_groups(manifest: Manifest, feature_stop: int | None, chosen: Sequence[int] | None) -> list[int]:
    return [i for i, group in enumerate(manifest.row_groups)
            if (feature_stop is None or group.features[0] < feature_stop) and (chosen is None or i in chosen)]


def _before(table: pa.Table, feature_stop: int | None) -> pa.Table:
    if feature_stop is None:
        return table
    return table.filter(pc.less(table["feature_id"], feature_stop))


def _chosen(names: Sequence[str], columns: Sequence[str] | None, exclude: Sequence[str]) -> list[str]:
    return list(columns) if columns else [name for name in names if name not in exclude]


def _selected_rows(dest: Location, manifest: Manifest, feature_stop: int | None, columns: Sequence[str] | None,
                   exclude: Sequence[str], verify: bool, counter: BytesRead, row_groups: Sequence[int] | None
                   ) -> Iterator[pa.Table]:
    if manifest.row_groups is None:
        table = _before(_read_whole(dest, manifest, verify, counter), feature_stop)
        yield table.select(_chosen(table.column_names, columns, exclude))
        return
    with dest.fs.open(dest.path(manifest.file), "rb", cache_type="none") as raw:
        file = _CountingFile(raw, counter)
        _check_size(dest, manifest, file.seek(0, 2))
        footer = read_footer(file)
        if verify and hashlib.sha256(footer).hexdigest() != manifest.footer_sha256:
            raise ShardError(f"{dest.url}: {manifest.file} does not match its manifest (footer sha256)")
        metadata = pq.read_metadata(pa.BufferReader(b"PAR1" + footer + len(footer).to_bytes(4, "little") + b"PAR1"))
        parquet = pq.ParquetFile(file, metadata=metadata, page_checksum_verification=verify)  # footer read once
        if parquet.metadata.num_rows != manifest.rows or parquet.num_row_groups != len(manifest.row_groups):
            raise ShardError(f"{dest.url}: {manifest.file} does not match its manifest (rows, row groups)")
        chosen = _chosen(parquet.schema_arrow.names, columns, exclude)
        wanted = sorted(set(chosen) | ({"feature_id"} if feature_stop else set()))
        for group in _row_groups(manifest, feature_stop, row_groups):
            yield _before(parquet.read_row_group(group, columns=wanted), feature_stop).select(chosen)


def read_rows(dest: Location, manifest: Manifest, feature_stop: int | None = None,
              columns: Sequence[str] | None = None, verify: bool = True, counter: BytesRead | None = None,
              row_groups: Sequence[int] | None = None, exclude: Sequence[str] = ()) -> Iterator[pa.Table]:
    """The shard's rows whose feature id is below `feature_stop` (all where None), `columns` only (where None,
    every column but those in `exclude`, which need not exist), a row group at a time (only `row_groups` where
    given; format 1 shards are one group, read whole). Every way the file can be damaged (missing, cut short, not
    Parquet, a footer or page that fails its check, rows that differ from the manifest) raises ShardError naming
    the dataset and the file; transient storage faults are raised as they are, for the caller's retries."""
    try:
        yield from _selected_rows(dest, manifest, feature_stop, columns, exclude, verify, counter or BytesRead(),
                                  row_groups)
    except ShardError:
        raise
    except FileNotFoundError as exc:
        raise ShardError(f"{dest.url}: {manifest.file} is missing") from exc
    except (OSError, ValueError, pa.ArrowException) as exc:
        if is_transient(exc):
            raise
        detail = " ".join(str(exc).split())[:200]
        raise ShardError(f"{dest.url}: {manifest.file} does not match its manifest ({detail})") from exc
