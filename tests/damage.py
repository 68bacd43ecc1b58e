"""Every way a published shard can be damaged, each applied to one shard of a dataset folder on any fsspec
location: its Parquet file missing, cut short, emptied, its trailing magic or footer length broken, its footer or a
page changed, rewritten with another schema; its manifest not JSON, not a manifest, another shard's, or counting
other rows."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.storage.location import Location
from tasks.storage.shards import shard_name


def _file(index: int) -> str:
    return f"{shard_name(index)}.parquet"


def _rewrite(edit: Callable[[bytes], bytes]) -> Callable[[Location, int], None]:
    def damage(dataset: Location, index: int) -> None:
        path = dataset.path(_file(index))
        dataset.fs.pipe_file(path, edit(dataset.fs.cat_file(path)))
    return damage


def _edit_manifest(edit: Callable[[dict], dict | str]) -> Callable[[Location, int], None]:
    def damage(dataset: Location, index: int) -> None:
        name = f"{shard_name(index)}.json"
        edited = edit(json.loads(dataset.fs.cat_file(dataset.path(name))))
        dataset.fs.pipe_file(dataset.path(name), (edited if isinstance(edited, str) else json.dumps(edited)).encode())
    return damage


def _flip(data: bytes, offset: int) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= 0xFF
    return bytes(changed)


def _corrupt_page(data: bytes) -> bytes:
    """A byte inside the first data page of the embedding column in the first row group."""
    metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
    paths = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    column = metadata.row_group(0).column(next(i for i, path in enumerate(paths) if path.startswith("embedding")))
    return _flip(data, column.data_page_offset + 100)


def _another_schema(data: bytes) -> bytes:
    """The same rows, their float32 statistics written as float64."""
    table = pq.read_table(pa.BufferReader(data))
    schema = pa.schema([pa.field(f.name, pa.float64()) if f.type == pa.float32() else f for f in table.schema])
    out = io.BytesIO()
    pq.write_table(table.cast(schema), out, compression="zstd", write_page_checksum=True)
    return out.getvalue()


def _other_shard(dataset: Location, index: int) -> None:
    """Shard 0's manifest copied over this one's."""
    copied = dataset.fs.cat_file(dataset.path("shard-000000.json"))
    dataset.fs.pipe_file(dataset.path(f"{shard_name(index)}.json"), copied)


# kind: (damage(dataset, index), the file the error names: 'parquet' or 'json')
DAMAGES: dict[str, tuple[Callable[[Location, int], None], str]] = {
    "missing file": (lambda dataset, index: dataset.fs.rm_file(dataset.path(_file(index))), "parquet"),
    "zero-length file": (_rewrite(lambda data: b""), "parquet"),
    "truncated file": (_rewrite(lambda data: data[: len(data) // 2]), "parquet"),
    "damaged trailing magic": (_rewrite(lambda data: data[:-4] + b"PAR0"), "parquet"),
    "footer length past the start": (_rewrite(lambda data: data[:-8] + (2 * len(data)).to_bytes(4, "little") +
                                              data[-4:]), "parquet"),
    "changed footer": (_rewrite(lambda data: _flip(data, len(data) - 20)), "parquet"),
    "corrupt page": (_rewrite(_corrupt_page), "parquet"),
    "another schema": (_rewrite(_another_schema), "parquet"),
    "rows differ from the manifest": (_edit_manifest(lambda m: {**m, "rows": m["rows"] - 1}), "parquet"),
    "manifest not JSON": (_edit_manifest(lambda m: json.dumps(m)[: 40]), "json"),
    "manifest of another type": (_edit_manifest(lambda m: {k: v for k, v in m.items() if k != "sha256"}), "json"),
    "manifest of another shard": (_other_shard, "json"),
}


def damage(dataset: Location, index: int, kind: str) -> str:
    """Damages shard `index` of `dataset` in the way `kind` names; returns the name of the file an error about it
    must name."""
    apply, named = DAMAGES[kind]
    apply(dataset, index)
    return f"{shard_name(index)}.{named}"
