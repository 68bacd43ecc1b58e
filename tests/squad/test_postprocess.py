"""Post-processing of hand-made logits: spans across windows, the context, the answer length, n-best and the
no-answer score."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.squad.features import Features
from tasks.squad.load import Example
from tasks.squad.postprocess import NO_SPAN_ODDS, predict_answers

CONTEXT_A = "Denver Broncos won the game"  # Denver 0-6, Broncos 7-14, won 15-18, the 19-22, game 23-27
CONTEXT_B = "It rained"  # It 0-2, rained 3-9
OUT = (-1, -1)
# tokens: [CLS] question [SEP] four context tokens [SEP]
OFFSETS = np.array([
    [OUT, OUT, OUT, (0, 6), (7, 14), (15, 18), (19, 22), OUT],  # A, window 0: Denver Broncos won the
    [OUT, OUT, OUT, (7, 14), (15, 18), (19, 22), (23, 27), OUT],  # A, window 1: Broncos won the game
    [OUT, OUT, OUT, (0, 2), (3, 9), OUT, OUT, OUT],  # B: It rained
], dtype=np.int32)
EXAMPLES = [Example("a", "t", "Who won?", CONTEXT_A, (("Denver Broncos", 0),), False),
            Example("b", "t", "Who won?", CONTEXT_B, (), True)]


def _features() -> Features:
    n, length = OFFSETS.shape[:2]
    zeros = np.zeros((n, length), np.int32)
    return Features(feature_id=np.arange(n), example_index=np.array([0, 0, 1]), question_id=["a", "a", "b"],
                    span=np.array([0, 1, 0], np.int16), input_ids=zeros, token_type_ids=zeros.astype(np.int8),
                    attention_mask=np.ones_like(zeros, np.int8), offsets=OFFSETS)


def _logits() -> tuple[np.ndarray, np.ndarray]:
    start, end = np.zeros((3, 8)), np.zeros((3, 8))
    start[0, 0], end[0, 0] = 1.0, 1.0  # A window 0: null 2
    start[0, 3], end[0, 4] = 5.0, 4.0  # "Denver Broncos": 9
    end[0, 2] = 10.0  # an end on a question token: not a span
    end[0, 6] = 6.0  # "Denver Broncos won the" would score 11, but is 4 tokens long
    start[1, 0], end[1, 0] = 0.5, 0.5  # A window 1: null 1 (the lowest over the windows)
    start[1, 3], end[1, 3] = 6.0, 2.0  # "Broncos": 8
    start[1, 6], end[1, 4] = 7.0, 2.5  # ends before it starts: not a span
    start[2, 0], end[2, 0] = 4.0, 4.0  # B: null 8
    start[2, 3], end[2, 4] = 2.0, 2.0  # "It rained": 4
    return start, end


def test_best_span_over_every_window_of_a_question():
    answers, odds = predict_answers(EXAMPLES, _features(), *_logits(), n_best=20, max_answer_length=3)
    assert answers["a"] == "Denver Broncos"
    assert odds["a"] == pytest.approx(1.0 - 9.0)  # the lowest null score minus the best span's score


def test_max_answer_length_admits_longer_spans():
    answers, _ = predict_answers(EXAMPLES, _features(), *_logits(), n_best=20, max_answer_length=4)
    assert answers["a"] == "Denver Broncos won the"


def test_no_answer_wins_by_more_than_the_threshold():
    answers, odds = predict_answers(EXAMPLES, _features(), *_logits(), max_answer_length=3)
    assert answers["b"] == "" and odds["b"] == pytest.approx(8.0 - 4.0)
    answers, _ = predict_answers(EXAMPLES, _features(), *_logits(), max_answer_length=3, null_threshold=4.5)
    assert answers["b"] == "It rained"


def test_n_best_limits_the_candidates():
    start, end = _logits()
    # with one start and one end per window, window 0 pairs its best start (3) with its best end (2, a
    # question token) and window 1 its best start (6) with its best end (4): no valid span in either
    answers, odds = predict_answers(EXAMPLES, _features(), start, end, n_best=1, max_answer_length=3)
    assert answers["a"] == "" and odds["a"] == NO_SPAN_ODDS


def test_logits_must_match_the_features():
    start, end = _logits()
    with pytest.raises(ValueError, match="do not match 3 features"):
        predict_answers(EXAMPLES, _features(), start[:2], end[:2])
