"""Head-importance flow: which heads matter to a QA model's answers on SQuAD v2. The gradient importance of every
head (Michel et al. 2019), each head's ablation (exact match and F1 with it alone masked, the drop with a bootstrap
interval over questions) and the pruning curve (heads masked least important first, against random orders).

Each finished unit (the unmasked scores, the gradient, a head, a pruning step) is kept in a progress folder beside
--out: a killed run, repeated, resumes without redoing them.

`python flows/importance.py` runs the offline demo: MiniLM-L6 fine-tuned first on the embedded sample (its shipped
QA head is untrained), then scored on it; `--model PATH --dev dev-v2.0.json` is the study; `--help` lists the
flags."""

from __future__ import annotations

import flows  # noqa: F401  (first: Prefect's environment, flows/__init__.py, also when run as a script)

import sys
import time
from typing import Sequence

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from flows.command import run_command
from flows.finetune import finetune
from flows.retries import RETRIES
from tasks.cli import config_from_args
from tasks.config import ImportanceConfig, fingerprint
from tasks.extract import QAModel, load_qa_model
from tasks.importance import (
    GradientRecord, Progress, PruningStep, Questions, ScoresRecord, ablated, chosen_heads, chosen_questions, gradient,
    importance_findings, importance_sections, importance_table, progress_root, pruned, pruning_steps, pruning_table,
    unmasked, weights_sha256, write_importance,
)
from tasks.preflight import check_importance, importance_folders
from tasks.report import output_folder
from tasks.squad import SquadFile, cached_squad, check_answers
from tasks.storage import storage_options


@task(name="check-output", **RETRIES)
def check_output_task(config: ImportanceConfig) -> None:
    """Fail at once where --out may not be replaced, before any model loads or trains."""
    output_folder(config.out, importance_folders(config))


@task(name="load-squad", task_run_name="load {source}", cache_policy=NO_CACHE, **RETRIES)
def load_squad_task(source: str, credentials: str | None) -> SquadFile:
    return cached_squad(source, credentials)


@task(name="load-model", task_run_name="load {model}", cache_policy=NO_CACHE, **RETRIES)
def load_model_task(model: str, config: ImportanceConfig) -> QAModel:
    return load_qa_model(model, config.model_revision, config.seed, storage_options(model, config.credentials),
                         attention="sdpa")


@task(name="unmasked", cache_policy=NO_CACHE)
def unmasked_task(qa: QAModel, questions: Questions, config: ImportanceConfig, progress: Progress) -> ScoresRecord:
    return unmasked(qa, questions, config, progress)


@task(name="gradient", cache_policy=NO_CACHE)
def gradient_task(qa: QAModel, questions: Questions, config: ImportanceConfig, progress: Progress) -> GradientRecord:
    return gradient(qa, questions, config, progress)


@task(name="ablate", task_run_name="ablate head {layer}.{head}", cache_policy=NO_CACHE)
def ablate_task(qa: QAModel, questions: Questions, config: ImportanceConfig, progress: Progress, layer: int,
                head: int) -> ScoresRecord:
    return ablated(qa, questions, config, progress, layer, head)


@task(name="prune", task_run_name="prune {step.name}", cache_policy=NO_CACHE)
def prune_task(qa: QAModel, questions: Questions, config: ImportanceConfig, progress: Progress,
               step: PruningStep) -> ScoresRecord:
    return pruned(qa, questions, config, progress, step)


def trained_model(config: ImportanceConfig) -> str:
    """--model, or the offline demo's: MiniLM-L6 fine-tuned on --train (a subflow, resumed from its checkpoints)."""
    if config.model is not None:
        return config.model
    get_run_logger().info("no --model: the offline demo fine-tunes MiniLM-L6 on %s for %d steps first (its shipped "
                          "QA head is untrained), to %s", config.train, config.demo_steps, config.demo_model)
    return finetune(config.demo_tuning())["out"]


def ablate_heads(qa: QAModel, questions: Questions, config: ImportanceConfig, progress: Progress, base: ScoresRecord
                 ) -> list[ScoresRecord]:
    """Every chosen head ablated in turn, its F1 drop and time logged and the progress artifact moved on."""
    log = get_run_logger()
    heads = chosen_heads(config.heads, qa.n_layers, qa.n_heads, qa.identity["model"])
    artifact = create_progress_artifact(0.0, key="importance-ablation",
                                        description=f"heads ablated, of {len(heads)}")
    records = []
    for i, (layer, head) in enumerate(heads, 1):
        record = ablate_task(qa, questions, config, progress, layer, head)
        records.append(record)
        log.info("head %d.%d (%d/%d): F1 %.2f -> %.2f, %.1f s", layer, head, i, len(heads), 100 * np.mean(base.f1),
                 100 * np.mean(record.f1), record.seconds)
        update_progress_artifact(artifact, 100.0 * i / len(heads))
    return records


@flow(name="importance")
def importance(config: ImportanceConfig = ImportanceConfig()) -> dict:
    """Scores every head of the QA model on --dev's questions: gradient importance, ablation, pruning curves;
    writes --out and returns its summary."""
    log = get_run_logger()
    started = time.perf_counter()
    check_output_task(config)
    model = trained_model(config)
    squad = load_squad_task(config.dev, config.credentials)
    check_answers(squad, config.strict_answers)
    qa = load_model_task(model, config)
    questions = chosen_questions(squad, qa, config, config.questions, config.seed)
    key = fingerprint({"weights": weights_sha256(qa.model), "dev": squad.sha256, **config.scoring_content()})
    progress = Progress(progress_root(config.out, config.progress), key)
    finished = progress.finished()
    if finished:
        log.info("resuming: %d units finished in %s", finished, progress.folder)
    base = unmasked_task(qa, questions, config, progress)
    log.info("unmasked: exact %.2f, f1 %.2f on %d questions (%d features), %.1f s", *base.scores.metrics().values(),
             len(questions.examples), len(questions.features), base.seconds)
    grad = gradient_task(qa, questions, config, progress)
    ablations = ablate_heads(qa, questions, config, progress, base)
    steps = pruning_steps(np.asarray(grad.importance), config.pruning_steps, config.random_orders, config.seed)
    curves = [prune_task(qa, questions, config, progress, step) for step in steps]
    table = importance_table(grad, base, ablations, config.bootstrap, config.seed)
    pruning = pruning_table(base, steps, curves, qa.n_layers * qa.n_heads)
    findings = importance_findings(table, pruning)
    seconds_per_head = float(np.mean([r.seconds for r in ablations])) if ablations else None
    notes = [f"{len(questions.examples)} questions ({len(questions.features)} features) of {config.dev}; "
             f"model {model}; {len(ablations)} heads ablated, {seconds_per_head or 0:.2f} s a head; every interval "
             "is a 95% bootstrap percentile interval over questions."]
    if config.model is None:
        notes.append(f"The offline demo: MiniLM-L6 fine-tuned for {config.demo_steps} steps on {config.train}, "
                     f"scored on {config.dev}.")
    summary = {
        "model": model, "dev": {"source": squad.source, "sha256": squad.sha256,
                                "questions": len(questions.examples), "features": len(questions.features)},
        "unmasked": base.scores.metrics(), "heads_ablated": len(ablations), "seconds_per_head": seconds_per_head,
        "gradient_seconds": grad.seconds, "findings": [f.model_dump() for f in findings],
        "config": config.model_dump(), "seconds": round(time.perf_counter() - started, 1),
    }
    sections = importance_sections(table, pruning, findings, notes, qa.n_layers, qa.n_heads)
    report = write_importance(config.out, table, pruning, summary, sections)
    progress.remove()
    create_table_artifact([{"finding": f.key, "text": f.text} for f in findings], key="importance-findings",
                          description=f"Which heads matter to {model}")
    create_markdown_artifact(f"[report.html]({report.resolve().as_uri()})", key="importance-report")
    log.info("report: %s", report)
    return summary


def main(argv: Sequence[str] | None = None, checked: bool = False) -> dict:
    """The flow from the command line; `checked`: the inputs were checked already (by `atlas`)."""
    config = config_from_args(ImportanceConfig, __doc__.splitlines()[0], argv)
    summary = run_command(importance, config, check=check_importance, checked=checked)
    print(f"Report: {config.out}/report.html ({summary['heads_ablated']} heads ablated; unmasked f1 "
          f"{summary['unmasked']['f1']:.2f})")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
