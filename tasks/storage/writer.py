"""Writing a shard's Parquet file: rows buffered into row groups of whole features (`ROW_GROUP_FEATURES` each),
zstd pages with CRC checksums, and the record of which features each row group holds, so that a reader can
fetch and verify only the row groups it needs; the sha256 digests that verify a file and its footer."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.storage.records import RowGroupRecord
from tasks.storage.rows import rows_table

ROW_GROUP_FEATURES = 32  # BERT-base: 4,608 rows, about 38 MB of float32 embeddings a row group


class ShardFileWriter:
    """Rows of consecutive features into one Parquet file, a row group every `group_features` features."""

    def __init__(self, path: Path, schema: pa.Schema, group_features: int = ROW_GROUP_FEATURES) -> None:
        self.path, self.schema, self.group_features = path, schema, group_features
        self.file = pq.ParquetWriter(path, schema, compression="zstd", write_page_checksum=True)
        self.pending: list[pa.Table] = []
        self.pending_features: list[int] = []
        self.row_groups: list[RowGroupRecord] = []

    def write(self, feature_id: np.ndarray, question_id: Sequence[str], span: np.ndarray, embeddings: np.ndarray,
              statistics: np.ndarray, pooled: np.ndarray | None = None) -> None:
        """Rows of a batch of features (see `rows_table`); a row group is written once enough have come."""
        self.pending.append(rows_table(self.schema, feature_id, question_id, span, embeddings, statistics, pooled))
        self.pending_features += [int(f) for f in feature_id]
        while len(self.pending_features) >= self.group_features:
            self._flush(self.group_features)

    def _flush(self, features: int) -> None:
        table = pa.concat_tables(self.pending)
        rows = table.num_rows * features // len(self.pending_features)
        self.file.write_table(table.slice(0, rows), row_group_size=max(rows, 1))
        ids = self.pending_features[:features]
        self.row_groups.append(RowGroupRecord(features=(ids[0], ids[-1] + 1), rows=rows))
        rest = table.slice(rows)
        self.pending = [rest] if rest.num_rows else []
        self.pending_features = self.pending_features[features:]

    def close(self) -> list[RowGroupRecord]:
        """Writes what is left and the footer; returns the row groups' records."""
        if self.pending_features:
            self._flush(len(self.pending_features))
        self.file.close()
        return self.row_groups

    def discard(self) -> None:
        """Closes the file after a failed write, whatever closing raises: the caller removes the file."""
        try:
            self.file.close()
        except (OSError, pa.ArrowException):
            pass


def file_sha256(path: str | Path) -> str:
    """sha256 of a local file's bytes, read a block at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def footer_sha256(path: Path) -> str:
    """sha256 of a Parquet file's footer (the file metadata that locates every page)."""
    with open(path, "rb") as f:
        return hashlib.sha256(read_footer(f)).hexdigest()


def read_footer(f) -> bytes:
    """The footer bytes of the Parquet file open as `f` (seekable, binary); ValueError where the file cannot hold
    one (too short, no PAR1 magic at its end, a footer length past its start)."""
    size = f.seek(0, 2)
    if size < 12:
        raise ValueError(f"not a Parquet file ({size} bytes)")
    f.seek(size - 8)
    tail = f.read(8)
    if tail[4:] != b"PAR1":
        raise ValueError("not a Parquet file (no PAR1 magic at its end)")
    length = int.from_bytes(tail[:4], "little")
    if length > size - 12:
        raise ValueError(f"not a Parquet file (a footer of {length} bytes in a file of {size})")
    f.seek(size - 8 - length)
    return f.read(length)
