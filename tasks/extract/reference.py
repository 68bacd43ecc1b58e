"""The original's method, step by step: the oracle that tests and the extraction benchmark compare the pipeline
against.

It mirrors the original notebooks: one feature at a time through BERT with autograd on, every (layer, head) map
copied to the host and scaled by scikit-learn's MinMaxScaler to 0-255, stacked into 3 channels, one map per
forward through a ResNet-50 left in training mode (the original never called .eval()), each embedding appended
to a pandas DataFrame as a row, the frame written as CSV."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import MinMaxScaler

from tasks.config import ExtractConfig
from tasks.device import resolve_device, synchronize
from tasks.extract.encoder import EMBEDDING_DIM, IMAGENET_MEAN, IMAGENET_STD, build_encoder
from tasks.extract.models import qa_model_for
from tasks.squad import Features


def scale_on_host(attention: np.ndarray, scaling: str) -> np.ndarray:
    """One map to a 3-channel 0-255 image on the host: the original's MinMaxScaler ('faithful'), or the whole
    map's min-max followed by ImageNet normalisation ('map')."""
    if scaling == "faithful":
        return np.stack([MinMaxScaler(feature_range=(0, 255)).fit_transform(attention)] * 3)
    span = attention.max() - attention.min()
    scaled = (attention - attention.min()) / (span if span > 0 else 1) * 255
    mean, std = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]
    return (np.stack([scaled] * 3) / 255 - mean) / std


def seed_style_reference(cfg: ExtractConfig, features: Features, csv: Path) -> tuple[np.ndarray, float]:
    """The original's method at `cfg`'s scaling and BatchNorm modes (the original's are both 'faithful');
    returns the embeddings in (feature, layer, head) order and the seconds it took."""
    device = resolve_device(cfg.device)
    bert = qa_model_for(cfg).model
    resnet = build_encoder(cfg.encoder_weights, cfg.encoder_sha256, cfg.seed, "eval", normalise=False).module
    resnet.to(device)
    resnet.train(cfg.bn_mode == "faithful")  # the original never called .eval(): each map's own statistics
    frame = pd.DataFrame()
    started = time.perf_counter()
    for i in range(len(features)):
        ids, mask, types = (torch.from_numpy(a[i:i + 1]).long().to(device)
                            for a in (features.input_ids, features.attention_mask, features.token_type_ids))
        attentions = bert(input_ids=ids, attention_mask=mask, token_type_ids=types, output_attentions=True).attentions
        for layer, per_layer in enumerate(attentions):
            for head in range(per_layer.shape[1]):
                attention = per_layer[0, head].detach().cpu().numpy()
                image = torch.tensor(scale_on_host(attention, cfg.scaling), dtype=torch.float32)[None].to(device)
                embedding = resnet(image)[0].detach().cpu().numpy()
                row = {"feature_id": int(features.feature_id[i]), "layer": layer, "head": head,
                       **{f"e{d}": value for d, value in enumerate(embedding)}}
                frame = pd.concat([frame, pd.DataFrame([row])], ignore_index=True)
    frame.to_csv(csv, index=False)
    synchronize(device)
    seconds = time.perf_counter() - started
    return frame[[f"e{d}" for d in range(EMBEDDING_DIM)]].to_numpy(np.float32), seconds


def compare(actual: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    """How far embeddings are from the expected ones: largest difference, relative error, cosines."""
    cosine = np.sum(actual * expected, 1) / (np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1))
    return {"max_abs_difference": float(np.abs(actual - expected).max()),
            "relative_error": float(np.linalg.norm(actual - expected) / np.linalg.norm(expected)),
            "mean_cosine": float(cosine.mean()), "min_cosine": float(cosine.min())}
