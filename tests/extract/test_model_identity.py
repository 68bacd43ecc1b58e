"""What pins the QA model a dataset was made with: the hub commit its revision resolved to, and float32 weights
whatever dtype the checkpoint was saved in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny import TINY, run_flow
from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

from tasks.extract.qa_model import RANDOM_MODELS, TINY_RANDOM_MODEL, _offline_model_path, load_qa_model

HUB_ID = "atlas-test/tiny-bert"
COMMITS = ("1" * 40, "2" * 40)


def _tiny_checkpoint(folder: Path, seed: int, dtype: torch.dtype = torch.float32) -> None:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, **RANDOM_MODELS[TINY_RANDOM_MODEL])
    BertForQuestionAnswering(config).to(dtype).save_pretrained(folder)
    AutoTokenizer.from_pretrained(_offline_model_path()).save_pretrained(folder)


def _hub_cache(root: Path) -> Path:
    """A Hugging Face hub cache holding HUB_ID at two commits (different weights), `main` at the first."""
    repo = root / f"models--{HUB_ID.replace('/', '--')}"
    for seed, commit in enumerate(COMMITS):
        _tiny_checkpoint(repo / "snapshots" / commit, seed)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMITS[0])
    return repo


def test_a_checkpoint_saved_in_float16_loads_in_float32(tmp_path):
    _tiny_checkpoint(tmp_path / "half", seed=0, dtype=torch.float16)
    assert json.loads((tmp_path / "half" / "config.json").read_text())["dtype"] == "float16"
    qa = load_qa_model(str(tmp_path / "half"))
    assert {p.dtype for p in qa.model.parameters()} == {torch.float32}


def test_the_hub_commit_is_pinned_and_a_moved_branch_is_refused(tmp_path, prefect_server):
    repo = _hub_cache(tmp_path / "hub")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**TINY, "model": HUB_ID, "model_revision": "main"}.items()]
    dest = tmp_path / "dataset"
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}

    first = run_flow("extract.py", *flags, "--dest", str(dest), "--shards", "0", **env)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads((dest / "dataset.json").read_text())
    assert record["model"]["commit"] == COMMITS[0] and record["model"]["revision"] == "main"

    (repo / "refs" / "main").write_text(COMMITS[1])  # the branch moves on the hub
    second = run_flow("extract.py", *flags, "--dest", str(dest), **env)
    assert second.returncode == 2
    message = second.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: {dest}: holds a dataset with fingerprint") and "model.commit" in message
    assert sorted(p.name for p in dest.glob("shard-*.json")) == ["shard-000000.json"]


@pytest.mark.parametrize("revision", ["main", COMMITS[1]])
def test_model_and_tokenizer_load_at_the_resolved_commit(tmp_path, revision, monkeypatch):
    repo = _hub_cache(tmp_path / "hub")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("transformers.utils.hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"), raising=False)
    qa = load_qa_model(HUB_ID, revision=revision)
    expected = COMMITS[0] if revision == "main" else COMMITS[1]
    assert qa.identity["commit"] == expected
    weights = BertForQuestionAnswering.from_pretrained(repo / "snapshots" / expected).state_dict()
    for name, value in qa.model.state_dict().items():
        assert torch.equal(value, weights[name]), name
