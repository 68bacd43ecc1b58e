"""The units of a head-importance run, each computed once: the unmasked scores, the gradient importance, one
head's ablation, one step of a pruning curve. A unit already in the run's progress folder is read back instead."""

from __future__ import annotations

import time

from tasks.config import Evaluation
from tasks.device import resolve_device
from tasks.extract import QAModel
from tasks.importance.gradient import gradient_importance, per_layer_normalised
from tasks.importance.progress import GradientRecord, Progress, ScoresRecord
from tasks.importance.pruning import PruningStep, mask_of
from tasks.importance.scoring import Questions, labelled_batches, score

UNMASKED = "unmasked"
GRADIENT = "gradient"


def head_name(layer: int, head: int) -> str:
    return f"head-{layer}.{head}"


def scored(qa: QAModel, questions: Questions, cfg: Evaluation, progress: Progress, name: str,
           masked: list[tuple[int, int]]) -> ScoresRecord:
    """The questions' scores with the heads `masked` removed, saved as `name`, or read back where saved."""
    record = progress.load(name, ScoresRecord)
    if record is not None:
        return record
    started = time.perf_counter()
    scores = score(qa, questions, cfg, mask_of(masked, qa.n_layers, qa.n_heads) if masked else None)
    record = ScoresRecord(name=name, masked=masked, exact=scores.exact.tolist(), f1=scores.f1.tolist(),
                          seconds=round(time.perf_counter() - started, 3))
    progress.save(name, record)
    return record


def unmasked(qa: QAModel, questions: Questions, cfg: Evaluation, progress: Progress) -> ScoresRecord:
    return scored(qa, questions, cfg, progress, UNMASKED, [])


def ablated(qa: QAModel, questions: Questions, cfg: Evaluation, progress: Progress, layer: int, head: int
            ) -> ScoresRecord:
    """The scores with head (layer, head) alone masked."""
    return scored(qa, questions, cfg, progress, head_name(layer, head), [(layer, head)])


def pruned(qa: QAModel, questions: Questions, cfg: Evaluation, progress: Progress, step: PruningStep
           ) -> ScoresRecord:
    """The scores at one step of a pruning curve."""
    return scored(qa, questions, cfg, progress, step.name, list(step.masked))


def gradient(qa: QAModel, questions: Questions, cfg: Evaluation, progress: Progress) -> GradientRecord:
    """The gradient importance over the questions' labelled features, or the saved one."""
    record = progress.load(GRADIENT, GradientRecord)
    if record is not None:
        return record
    started = time.perf_counter()
    batches = labelled_batches(questions, cfg.eval_batch_size)
    raw = gradient_importance(qa.model.to(resolve_device(cfg.device)).eval(), batches)
    record = GradientRecord(importance=per_layer_normalised(raw).tolist(), raw=raw.tolist(),
                            examples=len(batches.dataset), seconds=round(time.perf_counter() - started, 3))
    progress.save(GRADIENT, record)
    return record
