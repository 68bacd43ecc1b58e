"""A QA model's answers to a set of questions scored with the official SQuAD v2 metric, question by question,
with some heads masked; the drop from the unmasked model with a bootstrap interval over questions."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tasks.config import Evaluation, Windows
from tasks.extract import QAModel
from tasks.finetune import QADataset, answer_positions, labelled_features, predict_logits
from tasks.importance.masking import head_mask
from tasks.research import bootstrap_interval
from tasks.squad import Example, Features, SquadFile, predict_answers, question_scores, tokenize


@dataclass(frozen=True)
class Questions:
    """The questions that score the heads, and their features (windows) as the model reads them."""

    examples: list[Example]
    features: Features

    @property
    def ids(self) -> list[str]:
        return [e.question_id for e in self.examples]


def chosen_questions(squad: SquadFile, qa: QAModel, windows: Windows, questions: int | None, seed: int) -> Questions:
    """`questions` of the file's questions (a seeded choice, in file order; all where None), windowed."""
    examples = squad.examples
    if questions is not None and questions < len(examples):
        chosen = np.sort(np.random.default_rng(seed).choice(len(examples), questions, replace=False))
        examples = [examples[i] for i in chosen]
    return Questions(examples, tokenize(examples, qa.tokenizer, windows.max_length, windows.doc_stride,
                                        windows.max_query_length))


@dataclass(frozen=True)
class Scores:
    """Each question's exact match and F1 (0 to 1), in the questions' order."""

    exact: np.ndarray
    f1: np.ndarray

    def metrics(self) -> dict[str, float]:
        """exact and f1 in percent, as squad_v2_metrics gives them."""
        return {"exact": 100 * float(self.exact.mean()), "f1": 100 * float(self.f1.mean())}


def score(qa: QAModel, questions: Questions, cfg: Evaluation, mask: torch.Tensor | None = None) -> Scores:
    """The model's answers scored question by question, with `mask` (layers x heads, see `head_mask`) applied."""
    with head_mask(qa.model, mask) if mask is not None else nullcontext():
        start, end = predict_logits(qa, questions.features, cfg)
    answers, odds = predict_answers(questions.examples, questions.features, start, end, cfg.n_best,
                                    cfg.max_answer_length, cfg.null_threshold)
    exact, f1 = question_scores(questions.examples, answers, odds, cfg.null_threshold)
    return Scores(np.array([exact[q] for q in questions.ids], np.float64),
                  np.array([f1[q] for q in questions.ids], np.float64))


def drop(base: np.ndarray, masked: np.ndarray, resamples: int, seed: int) -> tuple[float, float, float]:
    """(drop, low, high) in percentage points: the mean of base minus masked over the questions, with its
    paired bootstrap percentile interval over questions."""
    difference = 100 * (np.asarray(base) - np.asarray(masked))

    def mean(weights: np.ndarray) -> float:
        return float(weights @ difference / weights.sum())

    estimate, low, high = bootstrap_interval(mean, np.arange(len(difference)), resamples, seed)
    return float(estimate), float(low), float(high)


def labelled_batches(questions: Questions, batch_size: int) -> Any:
    """The questions' features that can be labelled, with their answer positions (run_qa's labels), in batches:
    the gradient's input."""
    positions = answer_positions(questions.examples, questions.features)
    labelled = torch.utils.data.Subset(QADataset(questions.features, positions),
                                       labelled_features(questions.examples, questions.features))
    return torch.utils.data.DataLoader(labelled, batch_size=batch_size)
