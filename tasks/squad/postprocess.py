"""Start/end logits of every window of a question to one answer, with SQuAD v2's no-answer option, as Hugging
Face's run_qa post-processing does it: the n best starts and ends of each window, spans inside the context
and at most `max_answer_length` tokens long, scored by start + end logit; the no-answer score is the lowest
[CLS] start + end over the windows; the empty answer wins where it beats the best span by more than the
threshold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tasks.squad.features import Features
from tasks.squad.load import Example

NO_SPAN_ODDS = 1e9  # no-answer odds where no window holds a valid span: above any threshold


def window_spans(start: np.ndarray, end: np.ndarray, offsets: np.ndarray, n_best: int,
                 max_answer_length: int) -> list[tuple[float, int, int]]:
    """(score, first character, end character) of the valid spans among one window's `n_best` best starts and
    ends; `offsets` are the window's token character offsets, (-1, -1) outside the context."""
    starts = np.argsort(start, kind="stable")[::-1][:n_best]
    ends = np.argsort(end, kind="stable")[::-1][:n_best]
    s, e = starts[:, None], ends[None, :]
    valid = (offsets[s, 0] >= 0) & (offsets[e, 0] >= 0) & (e >= s) & (e - s + 1 <= max_answer_length)
    return [(float(start[starts[i]] + end[ends[j]]), int(offsets[starts[i], 0]), int(offsets[ends[j], 1]))
            for i, j in zip(*np.nonzero(valid))]


def predict_answers(examples: Sequence[Example], features: Features, start_logits: np.ndarray,
                    end_logits: np.ndarray, n_best: int = 20, max_answer_length: int = 30,
                    null_threshold: float = 0.0) -> tuple[dict[str, str], dict[str, float]]:
    """The answer to each question that has features, and its no-answer odds (no-answer score minus the best
    span's score; the answer is empty where the odds are over `null_threshold`). `features.example_index`
    indexes `examples`; the logits are (features, tokens) in the features' order."""
    if start_logits.shape != end_logits.shape or len(start_logits) != len(features):
        raise ValueError(f"logits {start_logits.shape} / {end_logits.shape} do not match {len(features)} features")
    answers, odds = {}, {}
    boundaries = np.flatnonzero(np.diff(features.example_index)) + 1
    for rows in np.split(np.arange(len(features)), boundaries):
        example = examples[int(features.example_index[rows[0]])]
        null_score = float(min(start_logits[r, 0] + end_logits[r, 0] for r in rows))
        spans = [span for r in rows
                 for span in window_spans(start_logits[r], end_logits[r], features.offsets[r], n_best,
                                          max_answer_length)]
        if not spans:
            answers[example.question_id], odds[example.question_id] = "", NO_SPAN_ODDS
            continue
        score, first, last = max(spans, key=lambda span: span[0])
        odds[example.question_id] = null_score - score
        answers[example.question_id] = "" if odds[example.question_id] > null_threshold else example.context[first:last]
    return answers, odds
