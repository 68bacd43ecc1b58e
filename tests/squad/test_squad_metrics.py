"""The SQuAD v2 metrics against values worked out by hand, as the official evaluation script defines them."""

from __future__ import annotations

import pytest

from tasks.squad.load import Example
from tasks.squad.metrics import (
    exact_match,
    normalize_answer,
    squad_v2_metrics,
    token_f1,
)


def _example(qid: str, *answers: str) -> Example:
    context = "Denver Broncos. Saint Bernadette Soubirous appeared in 1858."
    return Example(qid, "t", "q?", context, tuple((a, context.find(a)) for a in answers), not answers)


# q1: two gold answers, the prediction matches the second after normalisation (article, case).
# q2: one gold answer of 3 tokens, a 1-token prediction inside it: P = 1, R = 1/3, F1 = 0.5.
# q3: unanswerable, predicted empty: right. q4: unanswerable, predicted a span: wrong.
EXAMPLES = [_example("q1", "Denver Broncos", "Broncos"), _example("q2", "Saint Bernadette Soubirous"),
            _example("q3"), _example("q4")]
PREDICTIONS = {"q1": "the Broncos", "q2": "Bernadette", "q3": "", "q4": "1858"}


@pytest.mark.parametrize("text, normalised", [
    ("The  Quick, brown fox!", "quick brown fox"),
    ("an apple a day", "apple day"),
    ("theatre", "theatre"),  # articles only as whole words
    ("Saint-Bernard's", "saintbernards"),  # punctuation removed, not replaced by spaces
    ("\tA\n", ""),
])
def test_normalisation_is_the_official_one(text, normalised):
    assert normalize_answer(text) == normalised


def test_exact_and_f1_of_single_answers():
    assert exact_match("Denver Broncos", "the denver broncos.") == 1
    assert exact_match("Denver Broncos", "Broncos") == 0
    # gold "cat sat on mat" (4 tokens) vs "cat on mat" (3): 3 in common, P = 1, R = 3/4, F1 = 6/7
    assert token_f1("the cat sat on the mat", "cat on mat") == pytest.approx(6 / 7)
    assert token_f1("x y y", "y y y") == pytest.approx(2 / 3)  # multiset overlap: 2 of 3 either way
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0 and token_f1("x", "") == 0.0


def test_metrics_without_no_answer_scores():
    metrics = squad_v2_metrics(EXAMPLES, PREDICTIONS)
    assert metrics["total"] == 4
    assert metrics["exact"] == pytest.approx(50.0)  # (1 + 0 + 1 + 0) / 4
    assert metrics["f1"] == pytest.approx(62.5)  # (1 + 0.5 + 1 + 0) / 4
    assert (metrics["HasAns_exact"], metrics["HasAns_f1"], metrics["HasAns_total"]) == pytest.approx((50.0, 75.0, 2))
    assert (metrics["NoAns_exact"], metrics["NoAns_f1"], metrics["NoAns_total"]) == pytest.approx((50.0, 50.0, 2))


def test_no_answer_threshold_and_best_thresholds():
    odds = {"q1": -3.0, "q2": 0.5, "q3": 2.0, "q4": 1.5}
    metrics = squad_v2_metrics(EXAMPLES, PREDICTIONS, odds, threshold=1.0)
    # q3 and q4 are over the threshold: counted as empty answers, both right now
    assert metrics["exact"] == pytest.approx(75.0) and metrics["f1"] == pytest.approx(87.5)
    assert metrics["NoAns_exact"] == pytest.approx(100.0)
    # all empty: 2 right; answering q1 (-3.0): 3; q2 (0.5) adds 0 exact, 0.5 F1; q4 (1.5) loses 1
    assert (metrics["best_exact"], metrics["best_exact_thresh"]) == pytest.approx((75.0, -3.0))
    assert (metrics["best_f1"], metrics["best_f1_thresh"]) == pytest.approx((87.5, 0.5))


def test_an_answerable_question_answered_empty_scores_zero():
    metrics = squad_v2_metrics(EXAMPLES[:1], {"q1": ""})
    assert metrics["exact"] == 0.0 and metrics["f1"] == 0.0 and "NoAns_total" not in metrics


def test_every_question_needs_a_prediction():
    with pytest.raises(ValueError, match="1 questions have no prediction, e.g. 'q4'"):
        squad_v2_metrics(EXAMPLES, {k: v for k, v in PREDICTIONS.items() if k != "q4"})
