"""The row schema (one row per feature x layer x head) and the Arrow table of a batch of features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

KEY_COLUMNS = ("feature_id", "question_id", "span", "layer", "head")  # which row it is: feature, window, head
POOLED = "pooled"  # format 4: the map average-pooled over its real tokens, row-major, float16


def row_schema(dim: int, dtype: str, statistics: Sequence[str], pooled: int = 0) -> pa.Schema:
    """One row per (feature, layer, head): keys, the embedding, the pooled map (`pooled` values; no column where
    0, as before format 4) and per-head statistics."""
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
        + ([(POOLED, pa.list_(pa.float16(), pooled))] if pooled else [])
        + [(name, pa.float32()) for name in statistics]
    )


def _fixed_size_list(vectors: np.ndarray, value_type: pa.DataType) -> pa.FixedSizeListArray:
    flat = pa.array(vectors.astype(value_type.to_pandas_dtype(), copy=False).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def rows_table(
    schema: pa.Schema,
    feature_id: np.ndarray,
    question_id: Sequence[str],
    span: np.ndarray,
    embeddings: np.ndarray,
    statistics: np.ndarray,
    pooled: np.ndarray | None = None,
) -> pa.Table:
    """Rows for a batch of features in (feature, layer, head) order; a NaN statistic is written as null.

    embeddings: (features * layers * heads, dim); statistics: (features, layers, heads, n_statistics); pooled:
    (features * layers * heads, size), given exactly where the schema has the column."""
    n, layers, heads, _ = statistics.shape
    per_feature = layers * heads
    for name, vectors in (("embeddings", embeddings), ("pooled maps", pooled)):
        if vectors is not None and vectors.shape[0] != n * per_feature:
            raise ValueError(f"{vectors.shape[0]} {name} for {n} features x {layers} layers x {heads} heads")
    if (pooled is None) == (POOLED in schema.names):
        raise ValueError(f"pooled maps {'missing' if pooled is None else 'given'}: the schema "
                         f"{'has' if pooled is None else 'has no'} a {POOLED} column")
    columns = {
        "feature_id": np.repeat(feature_id.astype(np.int64), per_feature),
        "question_id": pa.array(np.repeat(np.asarray(question_id, dtype=object), per_feature), pa.string()),
        "span": np.repeat(span.astype(np.int16), per_feature),
        "layer": np.tile(np.repeat(np.arange(layers, dtype=np.int16), heads), n),
        "head": np.tile(np.arange(heads, dtype=np.int16), n * layers),
        "embedding": _fixed_size_list(embeddings, schema.field("embedding").type.value_type),
    }
    if pooled is not None:
        columns[POOLED] = _fixed_size_list(pooled, pa.float16())
    stats = statistics.reshape(n * per_feature, -1).astype(np.float32)
    for i, name in enumerate(schema.names[len(columns):]):
        columns[name] = pa.array(stats[:, i], pa.float32(), from_pandas=True)  # NaN (not defined here) as null
    return pa.table(columns, schema=schema)


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    vectors = column.combine_chunks()
    return vectors.values.to_numpy(zero_copy_only=False).reshape(-1, vectors.type.list_size)


def embedding_matrix(table: pa.Table) -> np.ndarray:
    """The embedding column of rows as a float32 (rows, dim) array."""
    return _matrix(table["embedding"]).astype(np.float32)


def pooled_matrix(table: pa.Table) -> np.ndarray | None:
    """The pooled maps of rows as a float16 (rows, size * size) array, row-major; None where the rows have no
    such column (a dataset of format 3 or older, or a read that did not ask for it)."""
    return _matrix(table[POOLED]) if POOLED in table.column_names else None
