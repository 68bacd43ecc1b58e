"""The SQuAD v2 metrics, as the official evaluation script (evaluate-v2.0.py) computes them: exact match and
token F1 against every gold answer after normalisation, split into answerable (HasAns) and unanswerable
(NoAns) questions, with a no-answer threshold and the best threshold for each metric."""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from tasks.squad.load import Example

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, punctuation removed, articles (a, an, the) removed, whitespace collapsed."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(gold: str, prediction: str) -> int:
    """1 where the normalised answers are equal."""
    return int(normalize_answer(gold) == normalize_answer(prediction))


def token_f1(gold: str, prediction: str) -> float:
    """F1 of the normalised answers' tokens (bags of words); an empty answer scores 1 only against an empty one."""
    gold_tokens, predicted_tokens = normalize_answer(gold).split(), normalize_answer(prediction).split()
    if not gold_tokens or not predicted_tokens:
        return float(gold_tokens == predicted_tokens)
    common = sum((collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_answers(example: Example) -> list[str]:
    """The answers a prediction is scored against: the non-empty ones, or the empty answer for an
    unanswerable question."""
    return [text for text, _ in example.answers if normalize_answer(text)] or [""]


def _raw_scores(examples: Sequence[Example], predictions: Mapping[str, str]) -> tuple[dict, dict]:
    exact, f1 = {}, {}
    for example in examples:
        if example.question_id not in predictions:
            continue
        golds, predicted = gold_answers(example), predictions[example.question_id]
        exact[example.question_id] = max(exact_match(gold, predicted) for gold in golds)
        f1[example.question_id] = max(token_f1(gold, predicted) for gold in golds)
    return exact, f1


def _apply_threshold(scores: dict, no_answer_scores: Mapping[str, float], has_answer: dict, threshold: float) -> dict:
    """A question whose no-answer score is over the threshold is answered with the empty answer."""
    return {qid: float(not has_answer[qid]) if no_answer_scores[qid] > threshold else score
            for qid, score in scores.items()}


def _mean(scores: dict, qids: list[str]) -> float:
    return 100.0 * sum(scores[q] for q in qids) / len(qids)


def _best_threshold(predictions: Mapping[str, str], scores: dict, no_answer_scores: Mapping[str, float],
                    has_answer: dict) -> tuple[float, float]:
    """The threshold that maximises the metric: start with every question answered empty, then answer them
    in order of rising no-answer score."""
    current = best = sum(1 for qid in scores if not has_answer[qid])
    threshold = 0.0
    for qid in sorted(scores, key=lambda q: no_answer_scores[q]):
        if has_answer[qid]:
            current += scores[qid]
        elif predictions[qid]:
            current -= 1
        if current > best:
            best, threshold = current, no_answer_scores[qid]
    return 100.0 * best / len(scores), threshold


class _Scored(NamedTuple):
    """Every question's scores, and what the thresholds and the HasAns / NoAns split read."""

    raw: tuple[dict, dict]  # exact, f1 per question, before the no-answer threshold
    thresholded: tuple[dict, dict]
    no_answer_scores: Mapping[str, float]
    has_answer: dict


def _scored(examples: Sequence[Example], predictions: Mapping[str, str],
            no_answer_scores: Mapping[str, float] | None, threshold: float) -> _Scored:
    missing = [e.question_id for e in examples if e.question_id not in predictions]
    if missing:
        raise ValueError(f"{len(missing)} questions have no prediction, e.g. '{missing[0]}'")
    no_answer_scores = no_answer_scores or {e.question_id: 0.0 for e in examples}
    has_answer = {e.question_id: bool(e.answers) for e in examples}
    raw = _raw_scores(examples, predictions)
    thresholded = tuple(_apply_threshold(scores, no_answer_scores, has_answer, threshold) for scores in raw)
    return _Scored(raw, thresholded, no_answer_scores, has_answer)


def question_scores(examples: Sequence[Example], predictions: Mapping[str, str],
                    no_answer_scores: Mapping[str, float] | None = None, threshold: float = 1.0
                    ) -> tuple[dict[str, float], dict[str, float]]:
    """Each question's exact match and F1 (0 to 1) as the official script scores it, with the no-answer
    threshold applied: their means over the questions are `squad_v2_metrics`' exact and f1 (in percent)."""
    return _scored(examples, predictions, no_answer_scores, threshold).thresholded


def squad_v2_metrics(examples: Sequence[Example], predictions: Mapping[str, str],
                     no_answer_scores: Mapping[str, float] | None = None, threshold: float = 1.0) -> dict:
    """exact, f1, total, HasAns_*, NoAns_*, best_exact(_thresh), best_f1(_thresh) in percent, over the
    questions of `examples`. Every question needs a prediction. `no_answer_scores` (default 0 for every
    question) rank how unanswerable each question looks; above `threshold` the answer counts as empty
    (the official script's default threshold is 1.0 for probabilities)."""
    scored = _scored(examples, predictions, no_answer_scores, threshold)
    (exact_raw, f1_raw), (exact, f1) = scored.raw, scored.thresholded
    no_answer_scores, has_answer = scored.no_answer_scores, scored.has_answer
    qids = [e.question_id for e in examples]
    metrics: dict = {"exact": _mean(exact, qids), "f1": _mean(f1, qids), "total": len(qids)}
    for name, subset in (("HasAns", [q for q in qids if has_answer[q]]), ("NoAns", [q for q in qids if not has_answer[q]])):
        if subset:
            metrics |= {f"{name}_exact": _mean(exact, subset), f"{name}_f1": _mean(f1, subset),
                        f"{name}_total": len(subset)}
    for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
        metrics[f"best_{name}"], metrics[f"best_{name}_thresh"] = _best_threshold(predictions, raw,
                                                                                  no_answer_scores, has_answer)
    return metrics
