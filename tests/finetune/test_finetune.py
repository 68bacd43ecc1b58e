"""Fine-tuning and evaluation on the embedded sample with a tiny model: labels, a real Trainer run that learns,
the published model taken by evaluation and extraction, resumption after a kill, checkpoints of another run."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny import TINY, run_flow

from flows.extract import extract
from flows.finetune import finetune
from tasks.config import ExtractConfig, FinetuneConfig
from tasks.extract.qa_model import load_qa_model
from tasks.finetune.checkpoints import CheckpointMismatchError, claim_checkpoints
from tasks.finetune.data import answer_positions, labelled_features
from tasks.squad.features import tokenize

# 128-token windows: the sample's long context needs several, so some windows lack the answer
TRAIN = dict(model="tiny-random-bert", max_length=128, doc_stride=64, batch_size=8, learning_rate=1e-3,
             logging_steps=1, precision="fp32")


def _flags(**values) -> list[str]:
    return [part for key, value in values.items() for part in (f"--{key.replace('_', '-')}", str(value))]


@pytest.fixture(autouse=True)
def _server(prefect_server):
    yield


def test_answer_positions_cover_the_answer_or_point_at_cls(sample, tokenizer):
    features = tokenize(sample.examples, tokenizer, 128, 64, 64)
    starts, ends = answer_positions(sample.examples, features)
    labelled = outside = 0
    for i, (start, end) in enumerate(zip(starts, ends)):
        example = sample.examples[features.example_index[i]]
        offsets = features.offsets[i]
        context = offsets[:, 0] >= 0
        if example.is_impossible:
            assert start == end == 0
            continue
        text, first = example.answers[0]
        last = first + len(text)
        inside = offsets[context, 0].min() <= first and offsets[context, 1].max() >= last
        if not inside:
            assert start == end == 0
            outside += 1
            continue
        labelled += 1
        assert context[start] and context[end] and start <= end
        # the smallest token span that holds the answer
        assert offsets[start, 0] <= first < offsets[start, 1] and offsets[end, 0] < last <= offsets[end, 1]
        assert text in example.context[offsets[start, 0]:offsets[end, 1]]
    assert labelled > 0 and outside > 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prefect_server):
    """A 16-step fine-tune of the tiny model on the sample, published to a local folder."""
    out = tmp_path_factory.mktemp("finetune") / "model"
    record = finetune(FinetuneConfig(out=str(out), max_steps=16, save_steps=8, **TRAIN))
    return out, record


def test_features_of_mismatched_answers_are_left_out_of_training_not_labelled_unanswerable(sample, tokenizer):
    example = next(e for e in sample.examples if not e.is_impossible)
    impossible = next(e for e in sample.examples if e.is_impossible)
    text, start = example.answers[0]
    moved = dataclasses.replace(example, question_id="moved", answers=((text, start + 1),))
    examples = [example, moved, impossible]
    features = tokenize(examples, tokenizer, 128, 64, 64)
    kept = labelled_features(examples, features)
    assert {int(features.example_index[i]) for i in kept} == {0, 2}
    assert [i for i in range(len(features)) if features.example_index[i] != 1] == kept


def test_fine_tuning_lowers_the_loss_and_publishes_model_and_metrics(trained, sample):
    out, record = trained
    losses = [entry["loss"] for entry in record["training"]["loss_history"]]
    assert len(losses) == 16 and np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.1
    assert record["training"]["steps"] == 16 and record["training"]["resumed_from"] is None
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    questions = len(sample.examples)
    assert metrics["total"] == questions
    assert metrics["HasAns_total"] + metrics["NoAns_total"] == questions
    assert {"exact", "f1", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"} <= set(metrics)
    assert set(json.loads((out / "predictions.json").read_text())) == {e.question_id for e in sample.examples}
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-16", "checkpoint-8", "finetune.json"]
    # what was published is the trained model, not the initial one
    published = load_file(out / "model.safetensors")
    initial = load_qa_model("tiny-random-bert", seed=0).model.state_dict()
    assert not torch.equal(published["qa_outputs.weight"], initial["qa_outputs.weight"])


def test_evaluate_only_on_the_published_model_gives_the_same_metrics(trained, tmp_path):
    out, record = trained
    evaluated = finetune(FinetuneConfig(model=str(out), evaluate_only=True, out=str(tmp_path / "eval"),
                                        **{k: v for k, v in TRAIN.items() if k != "model"}))
    assert evaluated["metrics"] == pytest.approx(record["metrics"])
    assert "training" not in evaluated and not (tmp_path / "eval" / "model.safetensors").exists()


def test_extraction_takes_the_fine_tuned_model(trained, tmp_path):
    out, _ = trained
    summary = extract(ExtractConfig(**{**TINY, "model": str(out)}, dest=str(tmp_path / "dataset"), shards=[0]))
    record = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    assert record["model"]["model"] == str(out) and summary["rows"] == TINY["shard_size"] * 2 * 4


def test_the_model_loads_from_object_storage(trained, object_stores):
    import fsspec

    out, _ = trained
    fsspec.filesystem("s3").put([str(p) for p in out.glob("*.*")], "s3://atlas/models/tiny/")
    qa = load_qa_model("s3://atlas/models/tiny")
    assert torch.equal(qa.model.state_dict()["qa_outputs.weight"], load_file(out / "model.safetensors")["qa_outputs.weight"])


def test_a_killed_fine_tune_resumes_from_its_last_checkpoint(tmp_path):
    flags = _flags(**TRAIN, max_steps=60, save_steps=5)
    killed = run_flow("finetune.py", *flags, "--out", str(tmp_path / "resumed"), wait=False)
    checkpoint = tmp_path / "resumed" / "checkpoints" / "checkpoint-10" / "trainer_state.json"
    killed.wait_until(checkpoint.exists, "checkpoint-10")
    killed.kill()
    assert not (tmp_path / "resumed" / "metrics.json").exists()

    resumed = run_flow("finetune.py", *flags, "--out", str(tmp_path / "resumed"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    training = json.loads((tmp_path / "resumed" / "metrics.json").read_text())["training"]
    first_step = int(training["resumed_from"].removeprefix("checkpoint-"))
    assert 10 <= first_step < 60 and training["steps"] == 60

    whole = run_flow("finetune.py", *flags, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    # data order, dropout and optimizer state all come back: the resumed run ends where an unbroken one does
    expected, actual = (load_file(tmp_path / name / "model.safetensors") for name in ("whole", "resumed"))
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_a_run_killed_after_its_last_checkpoint_publishes_that_checkpoint(tmp_path):
    """The Trainer, resumed from the checkpoint of its last step, trains one step more: such a run is finished."""
    cfg = FinetuneConfig(out=str(tmp_path / "out"), max_steps=4, save_steps=2, **TRAIN)
    first = finetune(cfg)
    (tmp_path / "out" / "metrics.json").unlink()  # as if killed before publishing
    trained = load_file(tmp_path / "out" / "model.safetensors")
    again = finetune(cfg)
    assert again["training"]["steps"] == 4 and again["training"]["resumed_from"] == "checkpoint-4"
    assert again["training"]["loss_history"] == first["training"]["loss_history"]
    assert again["metrics"] == first["metrics"]
    for name, tensor in load_file(tmp_path / "out" / "model.safetensors").items():
        assert torch.equal(tensor, trained[name]), name


def test_checkpoints_of_another_run_are_refused(tmp_path):
    cfg = FinetuneConfig(out=str(tmp_path), **TRAIN)
    assert claim_checkpoints(tmp_path / "checkpoints", cfg, "sha-a") is None
    (tmp_path / "checkpoints" / "checkpoint-5").mkdir()  # killed while saving: no trainer_state.json
    assert claim_checkpoints(tmp_path / "checkpoints", cfg.model_copy(update={"max_steps": 9}), "sha-a") is None
    assert not (tmp_path / "checkpoints" / "checkpoint-5").exists()
    with pytest.raises(CheckpointMismatchError, match=r"differs in learning_rate, train \(file contents\)"):
        claim_checkpoints(tmp_path / "checkpoints", cfg.model_copy(update={"learning_rate": 1e-4}), "sha-b")
