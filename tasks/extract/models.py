"""What a process holds for a whole extraction run, loaded once: the SQuAD file, the QA model, the reference
encoder (weights read and verified once) and the inference encoder built from it with the compile decision
already made."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import torch

from tasks.config import ExtractConfig
from tasks.device import resolve_device
from tasks.extract.encoder import Encoder, build_encoder
from tasks.extract.inference import InferenceEncoder
from tasks.extract.qa_model import QAModel, load_qa_model
from tasks.squad import SquadFile, cached_squad
from tasks.storage import storage_options

_loading = threading.Lock()  # models and inputs load once per process, also when shard tasks run in threads
_compute_slots: dict[str, threading.Lock] = {}


@dataclass
class Models:
    """What a worker process holds for the whole run: the QA model, the encoder and their device."""

    qa: QAModel
    encoder: InferenceEncoder
    device: torch.device


@functools.lru_cache(maxsize=2)
def _qa_model(model: str, revision: str | None, seed: int, device: str, credentials: str | None) -> QAModel:
    qa = load_qa_model(model, revision, seed, storage_options(model, credentials))
    qa.model.to(resolve_device(device))
    return qa


@functools.lru_cache(maxsize=2)
def _encoder(weights: str, sha256: str | None, seed: int, bn_mode: str, normalise: bool) -> Encoder:
    return build_encoder(weights, sha256, seed, bn_mode, normalise)


@functools.lru_cache(maxsize=2)
def _inference_encoder(encoder: Encoder, device: str, compile_batch: int | None, graphs: bool) -> InferenceEncoder:
    return InferenceEncoder(encoder, resolve_device(device), compile_batch, graphs)


def qa_model_for(cfg: ExtractConfig) -> QAModel:
    """The QA model and tokenizer of `cfg` on its device, loaded once per process."""
    with _loading:
        return _qa_model(cfg.model, cfg.model_revision, cfg.seed, cfg.device, cfg.credentials)


def encoder_for(cfg: ExtractConfig) -> Encoder:
    """The reference encoder of `cfg` (weights fetched and verified), built once per process."""
    with _loading:
        return _encoder(cfg.encoder_weights, cfg.encoder_sha256, cfg.seed, cfg.bn_mode, cfg.scaling == "map")


def models_for(cfg: ExtractConfig) -> Models:
    """The models that compute `cfg`'s rows, built once per process. `cfg.compile` must be decided (see
    `tasks.extract.plan.resolve_compile`)."""
    if cfg.compile == "auto":
        raise ValueError("models_for needs the compile decision made: call resolve_compile(cfg, maps) first")
    qa, encoder = qa_model_for(cfg), encoder_for(cfg)
    with _loading:
        inference = _inference_encoder(encoder, cfg.device, cfg.encoder_batch if cfg.compile != "off" else None,
                                       cfg.compile == "graphs")
    return Models(qa, inference, inference.device)


def compute_slot(device: torch.device) -> threading.Lock:
    """The lock that lets one shard at a time compute on `device` (and use the shared tokenizer), while the
    shards around it upload."""
    with _loading:
        return _compute_slots.setdefault(str(device), threading.Lock())


def squad_file(cfg: ExtractConfig) -> SquadFile:
    """The validated SQuAD file of `cfg`, read once per process."""
    with _loading:
        return cached_squad(cfg.source, cfg.credentials, cfg.max_context_chars)
