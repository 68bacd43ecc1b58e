"""Fine-tuning a QA model on SQuAD v2 with the transformers Trainer, and evaluating one with the official
metrics: training labels, datasets, resumable training, logits over every window, answers, metrics."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tasks.attention import QAModel
from tasks.config import FinetuneConfig, fingerprint
from tasks.encode import resolve_precision
from tasks.errors import InputError
from tasks.qa_postprocess import predict_answers
from tasks.squad import Example, Features, SquadFile, tokenize
from tasks.squad_metrics import squad_v2_metrics
from tasks.storage import cache_dir, protocol_of

RUN_RECORD = "finetune.json"  # in the checkpoints folder: the config that its checkpoints belong to
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class CheckpointMismatchError(InputError):
    """The checkpoints folder holds a run made with another config."""


def answer_positions(examples: list[Example], features: Features) -> tuple[np.ndarray, np.ndarray]:
    """Token index of the first gold answer's start and end in each feature, as run_qa labels them; 0 ([CLS])
    for an unanswerable question or where the answer is not wholly inside the window."""
    starts, ends = np.zeros(len(features), np.int64), np.zeros(len(features), np.int64)
    for i, offsets in enumerate(features.offsets):
        example = examples[int(features.example_index[i])]
        context = np.flatnonzero(offsets[:, 0] >= 0)
        if example.is_impossible or not example.answers or not len(context):
            continue
        text, first = example.answers[0]
        last = first + len(text)
        if offsets[context[0], 0] > first or offsets[context[-1], 1] < last:
            continue
        starts[i] = context[offsets[context, 0] <= first][-1]
        ends[i] = context[offsets[context, 1] >= last][0]
    return starts, ends


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


def features_of(squad: SquadFile, qa: QAModel, cfg: FinetuneConfig) -> Features:
    """Every feature of a SQuAD file, windowed as `cfg` says."""
    return tokenize(squad.examples, qa.tokenizer, cfg.max_length, cfg.doc_stride, cfg.max_query_length)


def device_of(cfg: FinetuneConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def checkpoints_dir(cfg: FinetuneConfig) -> Path:
    """Where the Trainer keeps checkpoints: the configured folder, OUT/checkpoints for a local OUT, or a
    cache folder named after a remote OUT."""
    if cfg.checkpoints:
        return Path(cfg.checkpoints)
    if protocol_of(cfg.out) == "file":
        return Path(cfg.out.removeprefix("file://")) / "checkpoints"
    return cache_dir() / "finetune" / hashlib.sha256(cfg.out.encode()).hexdigest()[:16] / "checkpoints"


def claim_checkpoints(folder: Path, cfg: FinetuneConfig, train_sha256: str) -> Path | None:
    """Prepares `folder` for this run: records the run's config there, or checks that the checkpoints in it
    belong to the same run; removes checkpoints left half-written by a killed run. Returns the last complete
    checkpoint to resume from, or None."""
    record = {"training": cfg.training_content(), "train_sha256": train_sha256}
    record["fingerprint"] = fingerprint(record)
    existing = folder / RUN_RECORD
    if existing.exists():
        previous = json.loads(existing.read_text())
        if previous.get("fingerprint") != record["fingerprint"]:
            changed = sorted(k for k in {**previous["training"], **record["training"]}
                             if previous["training"].get(k) != record["training"].get(k))
            if previous.get("train_sha256") != train_sha256:
                changed.append("train (file contents)")
            raise CheckpointMismatchError(
                f"{folder}: holds checkpoints of another fine-tune (differs in {', '.join(changed)}); "
                "use another --checkpoints or --out, or remove the folder")
    folder.mkdir(parents=True, exist_ok=True)
    existing.write_text(json.dumps(record, indent=2, sort_keys=True))
    complete = []
    for checkpoint in folder.iterdir():
        match = _CHECKPOINT.match(checkpoint.name)
        if match and (checkpoint / "trainer_state.json").exists():  # the Trainer writes it last
            complete.append((int(match.group(1)), checkpoint))
        elif match:
            shutil.rmtree(checkpoint)
    return max(complete)[1] if complete else None


def training_arguments(cfg: FinetuneConfig, folder: Path, show_progress: bool):
    """The Trainer's arguments for `cfg`: linear decay, AdamW, checkpoints every save_steps (two kept)."""
    from transformers import TrainingArguments

    device = device_of(cfg)
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
    dataset = QADataset(features, answer_positions(squad.examples, features))
    folder = checkpoints_dir(cfg)
    resume = claim_checkpoints(folder, cfg, squad.sha256)
    if resume and int(_CHECKPOINT.match(resume.name).group(1)) >= planned_steps(len(dataset), cfg):
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


@torch.inference_mode()
def predict_logits(qa: QAModel, features: Features, cfg: FinetuneConfig) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits (features, tokens) of every feature, in batches of eval_batch_size."""
    device = device_of(cfg)
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


def save_model(qa: QAModel, folder: Path) -> None:
    """The model (safetensors) and its tokenizer, loadable with from_pretrained and by the extraction flow
    (which asks for eager attention itself)."""
    qa.model.save_pretrained(folder)
    qa.tokenizer.save_pretrained(folder)
