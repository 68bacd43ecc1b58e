"""Fine-tuning a QA model on SQuAD v2 with the transformers Trainer, resumable from its checkpoints."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tasks.config import FinetuneConfig
from tasks.device import resolve_device, resolve_precision
from tasks.extract import QAModel
from tasks.finetune.checkpoints import CHECKPOINT_NAME, checkpoints_dir, claim_checkpoints
from tasks.finetune.data import QADataset, answer_positions, features_of, labelled_features
from tasks.squad import SquadFile


def training_arguments(cfg: FinetuneConfig, folder: Path, show_progress: bool):
    """The Trainer's arguments for `cfg`: linear decay, AdamW, checkpoints every save_steps (two kept)."""
    from transformers import TrainingArguments

    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    return TrainingArguments(
        output_dir=str(folder), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.gradient_accumulation,
        learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=device.type == "cpu",
        seed=cfg.seed, data_seed=cfg.seed, save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=2,
        logging_strategy="steps", logging_steps=cfg.logging_steps, logging_first_step=True, report_to="none",
        disable_tqdm=not show_progress, eval_strategy="no", dataloader_num_workers=0,
    )


@dataclass
class TrainingResult:
    steps: int
    train_loss: float
    resumed_from: str | None
    seconds: float
    steps_per_second: float
    loss_history: list[dict]  # {"step", "loss"} as logged
    peak_device_gb: float | None


def planned_steps(n_features: int, cfg: FinetuneConfig) -> int:
    """Optimizer steps of the whole run on one device, as the Trainer counts them."""
    if cfg.max_steps:
        return cfg.max_steps
    batches = math.ceil(n_features / cfg.batch_size)
    return math.ceil(cfg.epochs * max(math.ceil(batches / cfg.gradient_accumulation), 1))


def _finished_result(qa: QAModel, checkpoint: Path) -> TrainingResult:
    """The result of a run whose last checkpoint is its end (killed before publishing), its weights loaded:
    the Trainer, resumed there, would train one step too many."""
    qa.model = type(qa.model).from_pretrained(checkpoint, attn_implementation=qa.model.config._attn_implementation)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    history = [{"step": e["step"], "loss": e["loss"]} for e in state["log_history"] if "loss" in e]
    return TrainingResult(steps=state["global_step"], train_loss=float(np.mean([e["loss"] for e in history])),
                          resumed_from=checkpoint.name, seconds=0.0, steps_per_second=0.0, loss_history=history,
                          peak_device_gb=None)


def train(qa: QAModel, squad: SquadFile, cfg: FinetuneConfig, show_progress: bool = True) -> TrainingResult:
    """Fine-tunes `qa.model` in place on `squad`, resuming from the last complete checkpoint of the same run."""
    from transformers import Trainer, default_data_collator

    features = features_of(squad, qa, cfg)
    dataset = torch.utils.data.Subset(QADataset(features, answer_positions(squad.examples, features)),
                                      labelled_features(squad.examples, features))
    folder = checkpoints_dir(cfg)
    resume = claim_checkpoints(folder, cfg, squad.sha256)
    if resume and int(CHECKPOINT_NAME.match(resume.name).group(1)) >= planned_steps(len(dataset), cfg):
        return _finished_result(qa, resume)
    qa.model.train()
    trainer = Trainer(model=qa.model, args=training_arguments(cfg, folder, show_progress), train_dataset=dataset,
                      data_collator=default_data_collator, processing_class=qa.tokenizer)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    output = trainer.train(resume_from_checkpoint=resume and str(resume))
    qa.model.eval()
    history = [{"step": entry["step"], "loss": entry["loss"]} for entry in trainer.state.log_history if "loss" in entry]
    return TrainingResult(
        steps=output.global_step, train_loss=output.training_loss, resumed_from=resume and resume.name,
        seconds=output.metrics.get("train_runtime", 0.0),
        steps_per_second=output.metrics.get("train_steps_per_second", 0.0), loss_history=history,
        peak_device_gb=round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
    )


def save_model(qa: QAModel, folder: Path) -> None:
    """The model (safetensors) and its tokenizer, loadable with from_pretrained and by the extraction flow
    (which asks for eager attention itself)."""
    qa.model.save_pretrained(folder)
    qa.tokenizer.save_pretrained(folder)
