"""Evaluation: logits over every window, answers by the SQuAD v2 post-processing, the official metrics."""

from __future__ import annotations

import numpy as np
import torch

from tasks.config import Evaluation, FinetuneConfig
from tasks.device import resolve_device, resolve_precision
from tasks.extract import QAModel
from tasks.finetune.data import QADataset, features_of
from tasks.squad import Features, SquadFile, predict_answers, squad_v2_metrics


@torch.inference_mode()
def predict_logits(qa: QAModel, features: Features, cfg: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits (features, tokens) of every feature, in batches of eval_batch_size."""
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    model = qa.model.to(device).eval()
    starts, ends = [], []
    for batch in torch.utils.data.DataLoader(QADataset(features), batch_size=cfg.eval_batch_size):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(**{k: v.to(device) for k, v in batch.items()})
        starts.append(out.start_logits.float().cpu().numpy())
        ends.append(out.end_logits.float().cpu().numpy())
    return np.concatenate(starts), np.concatenate(ends)


def evaluate(qa: QAModel, squad: SquadFile, cfg: FinetuneConfig) -> tuple[dict, dict[str, str], dict[str, float]]:
    """SQuAD v2 metrics of `qa` on `squad`, with the answers and no-answer odds they were computed from."""
    features = features_of(squad, qa, cfg)
    start, end = predict_logits(qa, features, cfg)
    answers, odds = predict_answers(squad.examples, features, start, end, cfg.n_best, cfg.max_answer_length,
                                    cfg.null_threshold)
    return squad_v2_metrics(squad.examples, answers, odds, cfg.null_threshold), answers, odds
