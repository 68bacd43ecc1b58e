"""A dataset, its labels and the research tables from Python: verified reads as pyarrow tables and pandas
frames, for notebooks and scripts. Nothing here starts Prefect or Dask.

    from tasks.notebook import open_dataset, open_labels, open_heads, embeddings
    rows = open_dataset("outputs/dataset", shards=[0], columns=["feature_id", "layer", "head", "entropy"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from tasks.storage import DatasetRecord, Location, dataset_record, embedding_matrix, read_rows, select_manifests


def open_record(dataset: str, credentials: str | None = None) -> DatasetRecord:
    """dataset.json of a dataset folder (path or fsspec URL): model, encoder, statistics, format, shards."""
    return dataset_record(Location.at(dataset, credentials))


def open_dataset(dataset: str, shards: Sequence[int] | None = None, columns: Sequence[str] | None = None,
                 features_per_shard: int | None = None, credentials: str | None = None) -> pa.Table:
    """The published rows of `shards` (all where None), `columns` only (all where None; the embedding column is
    the large one), the first `features_per_shard` features of each shard where given; every row group checked
    against its manifest as it is read; asking for a shard that is not published (or a dataset without any) is an
    InputError naming it. A whole BERT-base dataset is about 155 GB: choose shards or columns."""
    location = Location.at(dataset, credentials)
    parts = []
    for manifest in select_manifests(location, dataset_record(location), None if shards is None else list(shards)):
        stop = None if features_per_shard is None else manifest.features[0] + features_per_shard
        parts += list(read_rows(location, manifest, stop, columns))
    return pa.concat_tables(parts) if parts else pa.table({})


def embeddings(rows: pa.Table) -> np.ndarray:
    """The embedding column as a float32 (rows, 2048) array."""
    return embedding_matrix(rows)


def open_labels(out: str | Path) -> pd.DataFrame:
    """The labels of a clustering run (its --out folder): one row per clustered row, its keys and one column
    per clustering."""
    return pd.read_parquet(Path(out) / "labels.parquet")


def open_heads(out: str | Path) -> pd.DataFrame:
    """The heads table of a clustering run: one row per (layer, head)."""
    return pd.read_parquet(Path(out) / "heads.parquet")
