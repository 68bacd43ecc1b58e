"""Training data for SQuAD v2 fine-tuning: answer positions as run_qa labels them, features as a torch dataset."""

from __future__ import annotations

import numpy as np
import torch

from tasks.config import Windows
from tasks.extract import QAModel
from tasks.squad import Example, Features, SquadFile, gold_span, tokenize


def answer_positions(examples: list[Example], features: Features) -> tuple[np.ndarray, np.ndarray]:
    """Token index of the first gold answer's start and end in each feature (the first answer that the context
    holds at its answer_start), as run_qa labels them; 0 ([CLS]) for an unanswerable question or where the
    answer is not wholly inside the window."""
    starts, ends = np.zeros(len(features), np.int64), np.zeros(len(features), np.int64)
    for i, offsets in enumerate(features.offsets):
        example = examples[int(features.example_index[i])]
        context = np.flatnonzero(offsets[:, 0] >= 0)
        span = gold_span(example)
        if example.is_impossible or span is None or not len(context):
            continue
        text, first = span
        last = first + len(text)
        if offsets[context[0], 0] > first or offsets[context[-1], 1] < last:
            continue
        starts[i] = context[offsets[context, 0] <= first][-1]
        ends[i] = context[offsets[context, 1] >= last][0]
    return starts, ends


def labelled_features(examples: list[Example], features: Features) -> list[int]:
    """The features that can be labelled: all but those of answerable questions whose answers all differ from
    the context (labelling them [CLS] would teach that they have no answer)."""
    return [i for i, e in enumerate(features.example_index)
            if examples[int(e)].is_impossible or gold_span(examples[int(e)]) is not None]


class QADataset(torch.utils.data.Dataset):
    """Features as the model's inputs, with answer positions where they are given (training)."""

    def __init__(self, features: Features, positions: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.features, self.positions = features, positions

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        f = self.features
        item = {"input_ids": torch.as_tensor(f.input_ids[i], dtype=torch.long),
                "token_type_ids": torch.as_tensor(f.token_type_ids[i], dtype=torch.long),
                "attention_mask": torch.as_tensor(f.attention_mask[i], dtype=torch.long)}
        if self.positions is not None:
            item["start_positions"] = torch.tensor(self.positions[0][i])
            item["end_positions"] = torch.tensor(self.positions[1][i])
        return item


def features_of(squad: SquadFile, qa: QAModel, cfg: Windows) -> Features:
    """Every feature of a SQuAD file, windowed as `cfg` says."""
    return tokenize(squad.examples, qa.tokenizer, cfg.max_length, cfg.doc_stride, cfg.max_query_length)
