"""The pieces of a head-importance run on their own: per-question scores that average to the official metric,
the paired bootstrap drop, the pruning orders and steps, the records a resumed run reads back, --heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.config import ImportanceConfig
from tasks.errors import InputError
from tasks.importance import (
    Progress, ScoresRecord, chosen_heads, chosen_questions, drop, mask_of, pruning_steps, score,
)
from tasks.importance.pruning import step_sizes
from tasks.squad import cached_squad, predict_answers, question_scores, squad_v2_metrics

EVALUATION = ImportanceConfig(max_length=128, doc_stride=64, precision="fp32", device="cpu")


def test_question_scores_average_to_the_official_metric(tiny_qa):
    squad = cached_squad("embedded", None)
    rng = np.random.default_rng(0)
    answers = {e.question_id: (e.answers[0][0] if e.answers and i % 3 else "the") for i, e in enumerate(squad.examples)}
    odds = {e.question_id: float(rng.normal()) for e in squad.examples}
    exact, f1 = question_scores(squad.examples, answers, odds, 0.5)
    metrics = squad_v2_metrics(squad.examples, answers, odds, 0.5)
    assert 100 * np.mean(list(exact.values())) == pytest.approx(metrics["exact"])
    assert 100 * np.mean(list(f1.values())) == pytest.approx(metrics["f1"])
    assert 0 < metrics["exact"] < 100


def test_scores_of_the_model_are_its_evaluation(tiny_qa):
    from tasks.finetune import predict_logits

    questions = chosen_questions(cached_squad("embedded", None), tiny_qa, EVALUATION, 7, seed=3)
    assert len(questions.examples) == 7
    scores = score(tiny_qa, questions, EVALUATION)
    start, end = predict_logits(tiny_qa, questions.features, EVALUATION)
    answers, odds = predict_answers(questions.examples, questions.features, start, end)
    metrics = squad_v2_metrics(questions.examples, answers, odds, 0.0)
    assert scores.metrics() == pytest.approx({"exact": metrics["exact"], "f1": metrics["f1"]})
    masked = score(tiny_qa, questions, EVALUATION, mask_of([(0, 0), (1, 1)], 2, 4))
    assert masked.exact.shape == scores.exact.shape


def test_the_drop_is_the_paired_mean_with_a_bootstrap_interval():
    base = np.array([1.0, 1.0, 0.0, 1.0, 0.5, 1.0, 0.0, 1.0])
    assert drop(base, base, 100, 0) == (0.0, 0.0, 0.0)
    masked = base.copy()
    masked[[0, 1]] = 0
    estimate, low, high = drop(base, masked, 500, 0)
    assert estimate == pytest.approx(25.0)
    assert 0 <= low < estimate < high <= 100
    assert drop(base, masked, 500, 0) == (estimate, low, high), "seeded"


def test_pruning_orders_mask_the_least_important_first_and_random_orders_are_seeded():
    importance = np.array([[0.3, 0.1, 0.9], [0.2, 0.8, 0.05]])
    steps = pruning_steps(importance, 3, 2, seed=1)
    by_order = {}
    for step in steps:
        by_order.setdefault(step.order, []).append(step.masked)
    assert list(by_order) == ["importance", "random1", "random2"]
    assert by_order["importance"] == [((1, 2), (0, 1)), ((1, 2), (0, 1), (1, 0), (0, 0)),
                                      ((1, 2), (0, 1), (1, 0), (0, 0), (1, 1), (0, 2))]
    assert by_order["random1"] != by_order["random2"] and all(len(set(m[-1])) == 6 for m in by_order.values())
    assert [s.masked for s in pruning_steps(importance, 3, 2, seed=1)] == [s.masked for s in steps]
    assert step_sizes(144, 10) == [14, 29, 43, 58, 72, 86, 101, 115, 130, 144]
    assert step_sizes(3, 10) == [1, 2, 3]
    mask = mask_of([(0, 1), (1, 2)], 2, 3)
    assert torch.equal(mask, torch.tensor([[1.0, 0, 1], [1, 1, 0]]))


def test_records_are_read_back_and_a_record_is_never_half_written(tmp_path):
    progress = Progress(tmp_path, "key")
    assert progress.load("head-0.1", ScoresRecord) is None and progress.finished() == 0
    record = ScoresRecord(name="head-0.1", masked=[(0, 1)], exact=[1.0, 0.0], f1=[1.0, 0.25], seconds=0.5)
    progress.save("head-0.1", record)
    assert progress.load("head-0.1", ScoresRecord) == record and progress.finished() == 1
    assert [p.name for p in (tmp_path / "key").iterdir()] == ["head-0.1.json"]
    progress.remove()
    assert not tmp_path.exists()


def test_heads_are_checked_against_the_models_grid():
    assert chosen_heads(None, 2, 3, "m") == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert chosen_heads(["1.2", "0.0", "1.2"], 2, 3, "m") == [(0, 0), (1, 2)]
    with pytest.raises(InputError, match=r"--heads 0\.3, 2\.0: model 'm' has 2 layers of 3 heads \(0\.0 to 1\.2\)"):
        chosen_heads(["2.0", "0.3"], 2, 3, "m")
    with pytest.raises(ValueError, match="'3' is not LAYER.HEAD"):
        ImportanceConfig(heads=["3"])


def test_the_ablation_finding_says_when_no_head_alone_matters():
    import pandas as pd

    from tasks.importance import importance_findings

    table = pd.DataFrame({"layer": [0, 0, 0], "head": [0, 1, 2], "importance": [0.2, 0.9, 0.5],
                          "f1_drop": [0.0, -1.0, -0.5], "f1_drop_low": [0.0, -3.0, -1.0],
                          "f1_drop_high": [0.0, 0.0, 0.0]})
    pruning = pd.DataFrame({"order": ["importance", "random1"] * 2, "masked": [0, 0, 3, 3],
                            "fraction": [0, 0, 1, 1], "exact": [50.0] * 4, "f1": [60.0, 60.0, 10.0, 20.0]})
    ablation, gradient, pruned = importance_findings(table, pruning)
    assert ablation.text.startswith("No head alone costs F1: masking any one of the 3 heads")
    assert gradient.value == pytest.approx(-1.0)
    assert "With 3 heads masked (100%)" in pruned.text and "F1 is 10.00 (unmasked 60.00)" in pruned.text
