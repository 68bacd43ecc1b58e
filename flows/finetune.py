"""Fine-tuning flow: a QA checkpoint fine-tuned on SQuAD v2 and evaluated with the official SQuAD v2 metrics.

The transformers Trainer trains on the --train file (checkpoints every --save-steps, resumed when the run is
repeated); the model is evaluated on the --dev file and published with its metrics, ready for extraction.

`python flows/finetune.py` fine-tunes MiniLM-L6 on the embedded sample offline;
`python flows/finetune.py --evaluate-only --model PATH` evaluates a saved model; `--help` lists the flags."""

from __future__ import annotations

import flows  # noqa: F401  (first: Prefect's environment, flows/__init__.py, also when run as a script)

import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.command import run_command
from flows.retries import RETRIES
from tasks.cli import config_from_args
from tasks.config import FinetuneConfig
from tasks.extract import QAModel, load_qa_model
from tasks.finetune import TrainingResult, evaluate, save_model, train
from tasks.preflight import check_finetune
from tasks.squad import SquadFile, cached_squad, check_answers
from tasks.storage import Location, storage_options

METRIC_ROWS = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_exact",
               "best_exact_thresh", "best_f1", "best_f1_thresh")


@task(name="check-output", **RETRIES)
def check_output_task(config: FinetuneConfig) -> None:
    """Fail at once where the output cannot be written, before any model loads or trains."""
    Location.at(config.out, config.credentials).check_writable()


@task(name="load-squad", task_run_name="load {source}", cache_policy=NO_CACHE, **RETRIES)
def load_squad_task(source: str, credentials: str | None) -> SquadFile:
    return cached_squad(source, credentials)


@task(name="load-model", cache_policy=NO_CACHE, **RETRIES)
def load_model_task(config: FinetuneConfig) -> QAModel:
    return load_qa_model(config.model, config.model_revision, config.seed,
                         storage_options(config.model, config.credentials), attention="sdpa")


@task(name="train", cache_policy=NO_CACHE)
def train_task(qa: QAModel, squad: SquadFile, config: FinetuneConfig) -> TrainingResult:
    return train(qa, squad, config)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(qa: QAModel, squad: SquadFile, config: FinetuneConfig) -> tuple[dict, dict, dict]:
    return evaluate(qa, squad, config)


@task(name="publish", cache_policy=NO_CACHE, **RETRIES)
def publish_task(config: FinetuneConfig, qa: QAModel | None, answers: dict, odds: dict, record: dict) -> str:
    """Writes the model (where trained), the answers and no-answer odds, then metrics.json last: an output
    with metrics.json is complete."""
    out = Location.at(config.out, config.credentials)
    if out.is_local:
        Path(out.root).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".finetune-", dir=out.root if out.is_local else None) as staging:
        staging = Path(staging)
        if qa is not None:
            save_model(qa, staging)
        (staging / "predictions.json").write_text(json.dumps(answers, indent=1, sort_keys=True))
        (staging / "null_odds.json").write_text(json.dumps(odds, indent=1, sort_keys=True))
        out.put_folder(staging)
    out.write_json("metrics.json", record)
    return out.url


def _identity(squad: SquadFile) -> dict:
    return {"source": squad.source, "sha256": squad.sha256, "questions": len(squad.examples)}


@flow(name="finetune")
def finetune(config: FinetuneConfig = FinetuneConfig()) -> dict:
    """Fine-tunes `config.model` on `config.train` (unless evaluate_only), evaluates it on `config.dev` and
    publishes the model and metrics to `config.out`; returns metrics.json's record."""
    log = get_run_logger()
    started = time.perf_counter()
    check_output_task(config)
    dev = load_squad_task(config.dev, config.credentials)
    qa = load_model_task(config)
    record: dict = {"model": config.model, "out": config.out, "dev": _identity(dev), "config": config.model_dump()}
    if not config.evaluate_only:
        squad = load_squad_task(config.train, config.credentials)
        check_answers(squad, config.strict_answers)
        result = train_task(qa, squad, config)
        log.info("trained %d steps (%s), training loss %.4f", result.steps,
                 f"resumed from {result.resumed_from}" if result.resumed_from else "from the start", result.train_loss)
        record |= {"train": _identity(squad), "training": asdict(result)}
    metrics, answers, odds = evaluate_task(qa, dev, config)
    record |= {"metrics": metrics, "seconds": round(time.perf_counter() - started, 1)}
    record["out"] = publish_task(config, None if config.evaluate_only else qa, answers, odds, record)
    create_table_artifact([{"metric": name, "value": round(metrics[name], 4)} for name in METRIC_ROWS if name in metrics]
                          + [{"metric": "questions", "value": metrics["total"]}],
                          key="finetune-metrics", description=f"SQuAD v2 metrics of {config.model} on {config.dev}")
    log.info("exact %.2f, f1 %.2f on %d questions; output %s", metrics["exact"], metrics["f1"], metrics["total"],
             record["out"])
    return record


def main(argv: Sequence[str] | None = None, checked: bool = False) -> dict:
    """The flow from the command line; `checked`: the inputs were checked already (by `atlas`)."""
    config = config_from_args(FinetuneConfig, __doc__.splitlines()[0], argv)
    record = run_command(finetune, config, check=check_finetune, checked=checked)
    metrics = record["metrics"]
    print(f"{'Evaluated' if config.evaluate_only else 'Model'}: {record['out']} (exact {metrics['exact']:.2f}, f1 {metrics['f1']:.2f} on {metrics['total']} "
          f"questions; metrics.json there)")
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
