"""A head-importance run's table read back for the atlas (`atlas cluster --importance PATH`), checked before any
work starts: the file, its columns and its heads against the dataset's model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import InputError

TABLE = "importance.parquet"
REQUIRED = ("layer", "head", "importance", "f1_drop")


def read_importance(path: str) -> pd.DataFrame:
    """importance.parquet of a head-importance run's output folder (or the file itself); an InputError names the
    file and what is wrong with it."""
    file = Path(path).expanduser()
    file = file / TABLE if file.is_dir() else file
    try:
        table = pq.read_table(file).to_pandas()
    except FileNotFoundError:
        raise InputError(f"--importance {path}: not found (give the --out of `atlas importance`, or its "
                         f"{TABLE})") from None
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"--importance {file}: not a readable Parquet file ({exc})") from None
    missing = [column for column in REQUIRED if column not in table]
    if missing:
        raise InputError(f"--importance {file}: field '{missing[0]}' is missing (a head-importance table has "
                         f"{', '.join(REQUIRED)})")
    return table


def check_importance_grid(table: pd.DataFrame, layers: int, heads: int, path: str, model: str) -> None:
    """The table's heads are the model's grid, each once; an InputError says what differs."""
    keys = list(zip(table["layer"], table["head"]))
    wanted = {(layer, head) for layer in range(layers) for head in range(heads)}
    if len(keys) != len(set(keys)) or set(keys) != wanted:
        raise InputError(f"--importance {path}: its heads ({len(set(keys))} distinct, {len(keys)} rows) are not "
                         f"the {layers} x {heads} heads of the dataset's model {model}")
