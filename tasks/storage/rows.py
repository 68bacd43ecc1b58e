"""The row schema (one row per feature x layer x head) and the Arrow table of a batch of features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

KEY_COLUMNS = ("feature_id", "question_id", "span", "layer", "head")  # which row it is: feature, window, head


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
    """Rows for a batch of features in (feature, layer, head) order; a NaN statistic is written as null.

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
        columns[name] = pa.array(stats[:, i], pa.float32(), from_pandas=True)  # NaN (not defined here) as null
    return pa.table(columns, schema=schema)


def embedding_matrix(table: pa.Table) -> np.ndarray:
    """The embedding column of rows as a float32 (rows, dim) array."""
    embedding = table["embedding"].combine_chunks()
    return embedding.values.to_numpy(zero_copy_only=False).reshape(-1, embedding.type.list_size).astype(np.float32)
