"""What the SQuAD source says of each clustered feature: its context (article and paragraph) and whether its
question is answerable."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from tasks.errors import InputError
from tasks.extract import config_of, squad_file
from tasks.storage import DatasetRecord


def feature_questions(key_tables: Iterable[pa.Table]) -> pd.DataFrame:
    """feature_id -> question_id, one row per feature, from the sample's key tables (one at a time)."""
    parts = [table.select(["feature_id", "question_id"]).to_pandas().drop_duplicates("feature_id")
             for table in key_tables]
    return pd.concat(parts, ignore_index=True).drop_duplicates("feature_id", ignore_index=True)


def feature_facts(record: DatasetRecord, dataset: str, credentials: str | None, questions: pd.DataFrame
                  ) -> tuple[pd.DataFrame | None, str]:
    """(feature_id -> context (an integer per distinct title and paragraph) and answerable, or None; why not)
    from the source file the dataset was made from, checked by its sha256."""
    try:
        squad = squad_file(config_of(record, dataset, credentials))
    except (InputError, OSError) as exc:
        return None, f"the dataset's source cannot be read ({str(exc).splitlines()[0]})"
    if squad.sha256 != record.source.sha256:
        return None, f"{record.source.location} differs from the file the dataset was made from"
    examples = {e.question_id: e for e in squad.examples}
    contexts: dict[tuple[str, str], int] = {}
    context, answerable = [], []
    for question in questions["question_id"]:
        example = examples[question]
        context.append(contexts.setdefault((example.title, example.context), len(contexts)))
        answerable.append(not example.is_impossible)
    return questions[["feature_id"]].assign(context=np.asarray(context, np.int64),
                                             answerable=np.asarray(answerable, bool)), ""
