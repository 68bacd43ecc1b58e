"""Extraction benchmark: the original's method step by step (the seed-style reference) against the project's
pipeline, on the same models and features, in one process; and the pipeline against a pure encoder forward on
the same batch shape and precision (its compute ceiling). Prints a table and writes a JSON record.

The reference mirrors the original notebooks: one feature at a time through BERT with autograd on, every
(layer, head) map copied to the host and scaled by scikit-learn's MinMaxScaler to 0-255, stacked into 3
channels, one map per forward through a ResNet-50 left in training mode (the original never called .eval()),
each embedding appended to a pandas DataFrame as a row, the frame written as CSV. The pipeline is the real
`extract_shard` with the same models in the faithful modes (same function), so the embeddings of the two are
compared (fp32: equal up to rounding; other precisions: their drift).

    python bench/extract.py                                  # MiniLM (6 x 12 heads), 384 tokens, this device
    python bench/extract.py --model bert-base-random --features 64 --reference-features 2
    python bench/extract.py --model tiny-random-bert --max-length 128 --precision bf16
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import torch
from sklearn.preprocessing import MinMaxScaler

from tasks.attention import BASE_RANDOM_MODEL, TINY_RANDOM_MODEL
from tasks.config import OFFLINE_MODEL, ExtractConfig
from tasks.encode import IMAGENET_MEAN, IMAGENET_STD, build_encoder
from tasks.extract import extract_shard, models_for, plan_extraction, resolve, resolve_compile, squad_file
from tasks.squad import ShardPlan, shard_features
from tasks.storage import Location
from tasks.store import read_shard


class PeakMemory:
    """Peak resident memory of this process (sampled) and peak device memory, over a `with` block."""

    def __enter__(self) -> PeakMemory:
        self.process, self.peak, self.running = psutil.Process(), 0, True
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self.running = False
        self.sampler.join()
        self.host_gb = round(self.peak / 2**30, 2)
        self.device_gb = round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _scale_on_host(attention: np.ndarray, scaling: str) -> np.ndarray:
    """One map to a 3-channel 0-255 image on the host: the original's MinMaxScaler ('faithful'), or the whole
    map's min-max followed by ImageNet normalisation ('map')."""
    if scaling == "faithful":
        return np.stack([MinMaxScaler(feature_range=(0, 255)).fit_transform(attention)] * 3)
    span = attention.max() - attention.min()
    scaled = (attention - attention.min()) / (span if span > 0 else 1) * 255
    mean, std = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]
    return (np.stack([scaled] * 3) / 255 - mean) / std


def seed_style_reference(cfg: ExtractConfig, features, csv: Path) -> tuple[np.ndarray, float]:
    """The original's method, step by step, at `cfg`'s scaling and BatchNorm modes (the original's are both
    'faithful'); returns the embeddings in (feature, layer, head) order and the seconds it took."""
    models = models_for(cfg)
    device = models.device
    bert = models.qa.model
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
                image = torch.tensor(_scale_on_host(attention, cfg.scaling), dtype=torch.float32)[None].to(device)
                embedding = resnet(image)[0].detach().cpu().numpy()
                row = {"feature_id": int(features.feature_id[i]), "layer": layer, "head": head,
                       **{f"e{d}": value for d, value in enumerate(embedding)}}
                frame = pd.concat([frame, pd.DataFrame([row])], ignore_index=True)
    frame.to_csv(csv, index=False)
    _synchronize(device)
    seconds = time.perf_counter() - started
    return frame[[f"e{d}" for d in range(2048)]].to_numpy(np.float32), seconds


def warm_up(cfg: ExtractConfig) -> float:
    """Seconds of one encoder batch outside the timings: the compiling, where the encoder is compiled (once a
    run, under a minute, against the hours of a full train set)."""
    models = models_for(cfg)
    started = time.perf_counter()
    models.encoder(torch.zeros(cfg.encoder_batch, cfg.max_length, cfg.max_length, device=models.device),
                   cfg.precision)
    _synchronize(models.device)
    return time.perf_counter() - started


def pipeline(cfg: ExtractConfig, plan: ShardPlan, record: dict) -> tuple[np.ndarray, float]:
    """The project's extract_shard on one shard, written and published to `cfg.dest`; returns the embeddings
    and the seconds it took."""
    models = models_for(cfg)
    started = time.perf_counter()
    extract_shard(cfg, plan, record, show_progress=False)
    _synchronize(models.device)
    seconds = time.perf_counter() - started
    table = read_shard(Location.open(cfg.dest), plan.index)
    embedding = table["embedding"].combine_chunks()
    vectors = embedding.values.to_numpy(zero_copy_only=False).reshape(-1, embedding.type.list_size)
    return vectors.astype(np.float32), seconds


def encoder_ceiling(cfg: ExtractConfig, map_size: int, maps: int) -> float:
    """Maps/s of the pipeline's encoder alone on batches of its batch size and precision, maps already on the
    device and scaled, over at least `maps` maps and three batches (fewer were noisier than the ratio)."""
    repeats = max(3, math.ceil(maps / cfg.encoder_batch))
    models = models_for(cfg)
    batch = (torch.rand(cfg.encoder_batch, map_size, map_size, generator=torch.Generator().manual_seed(0)) * 255)
    batch = batch.to(models.device)
    models.encoder(batch, cfg.precision)  # warm-up (and compilation)
    _synchronize(models.device)
    started = time.perf_counter()
    for _ in range(repeats):
        models.encoder(batch, cfg.precision)
    _synchronize(models.device)
    return repeats * cfg.encoder_batch / (time.perf_counter() - started)


def compare(actual: np.ndarray, expected: np.ndarray) -> dict:
    cosine = np.sum(actual * expected, 1) / (np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1))
    return {"max_abs_difference": float(np.abs(actual - expected).max()),
            "relative_error": float(np.linalg.norm(actual - expected) / np.linalg.norm(expected)),
            "mean_cosine": float(cosine.mean()), "min_cosine": float(cosine.min())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=OFFLINE_MODEL, choices=[TINY_RANDOM_MODEL, OFFLINE_MODEL, BASE_RANDOM_MODEL])
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--features", type=int, default=16, help="features through the pipeline")
    parser.add_argument("--reference-features", type=int, default=2, help="features through the slow reference")
    parser.add_argument("--scaling", default="faithful", choices=["faithful", "map"], help="default: the original's")
    parser.add_argument("--bn-mode", default="faithful", choices=["faithful", "eval"], help="default: the original's")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--encoder-batch", type=int, default=None)
    parser.add_argument("--bert-batch", type=int, default=None)
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ceiling-maps", type=int, default=128, help="maps timed for the ceiling")
    parser.add_argument("--json", default="bench-extract.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    base = dict(model=args.model, max_length=args.max_length, doc_stride=min(128, args.max_length // 2),
                scaling=args.scaling, bn_mode=args.bn_mode,
                device=args.device, bert_batch=args.bert_batch, encoder_batch=args.encoder_batch,
                shard_size=args.features, shards=[0])
    exact = resolve(ExtractConfig(dest=str(work / "fp32"), precision="fp32", compile="off", **base))
    plan = plan_extraction(exact)
    maps_per_feature = plan.record["shards"]["rows_per_feature"]
    chosen = resolve_compile(resolve(ExtractConfig(dest=str(work / "chosen"), precision=args.precision,
                                                   compile=args.compile, **base)), args.features * maps_per_feature)
    settings = {"fp32": exact} | ({"chosen": chosen} if (chosen.precision, chosen.compile) != ("fp32", "off") else {})
    runs = {}
    for name, cfg in settings.items():
        warm_up_seconds = warm_up(cfg)  # models loaded and the encoder compiled, outside the timing
        with PeakMemory() as memory:
            embeddings, seconds = pipeline(cfg, plan.shards[0], plan.record)
        runs[name] = {"cfg": cfg, "embeddings": embeddings, "maps_per_second": len(embeddings) / seconds,
                      "seconds": seconds, "memory": memory, "warm_up_seconds": warm_up_seconds,
                      "ceiling": encoder_ceiling(cfg, args.max_length, args.ceiling_maps)}

    fp32 = runs["fp32"]
    features = shard_features(squad_file(exact).examples, plan.shards[0], models_for(exact).qa.tokenizer,
                              exact.max_length, exact.doc_stride, exact.max_query_length)
    with PeakMemory() as reference_memory:
        reference_embeddings, reference_seconds = seed_style_reference(
            exact, features.take(slice(0, args.reference_features)), work / "reference.csv")
    reference_rate = len(reference_embeddings) / reference_seconds
    n = len(reference_embeddings)

    device = models_for(fp32["cfg"]).device
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "model": args.model, "max_length": args.max_length,
        "scaling": args.scaling, "bn_mode": args.bn_mode,
        "maps_per_feature": maps_per_feature,
        "reference": {"features": args.reference_features, "maps_per_second": round(reference_rate, 2),
                      "peak_host_gb": reference_memory.host_gb, "peak_device_gb": reference_memory.device_gb},
        "pipeline": {},
    }
    for name, run in runs.items():
        cfg = run["cfg"]
        result["pipeline"][name] = {
            "precision": cfg.precision, "compile": cfg.compile, "encoder_batch": cfg.encoder_batch,
            "bert_batch": cfg.bert_batch, "features": args.features,
            "warm_up_seconds": round(run["warm_up_seconds"], 1),
            "maps_per_second": round(run["maps_per_second"], 2),
            "speedup_over_reference": round(run["maps_per_second"] / reference_rate, 2),
            "encoder_ceiling_maps_per_second": round(run["ceiling"], 2),
            "fraction_of_ceiling": round(run["maps_per_second"] / run["ceiling"], 3),
            "peak_host_gb": run["memory"].host_gb, "peak_device_gb": run["memory"].device_gb,
            "versus_reference_fp32": compare(run["embeddings"][:n], reference_embeddings),
            "projected_hours_for_squad_v2_train": round(131_944 * maps_per_feature / run["maps_per_second"] / 3600, 1),
        }
        if name != "fp32":
            result["pipeline"][name]["drift_versus_pipeline_fp32"] = compare(run["embeddings"], fp32["embeddings"])

    print(f"device {result['device']}, model {args.model} ({maps_per_feature} maps a feature), {args.max_length} "
          f"tokens, scaling {args.scaling}, bn mode {args.bn_mode}")
    print(f"{'':24} {'maps/s':>9} {'x reference':>12} {'of ceiling':>11} {'host GB':>8} {'cos vs ref':>11} "
          f"{'warm-up s':>10}")
    print(f"{'seed-style reference':24} {reference_rate:9.2f} {1:12.2f} {'':>11} {reference_memory.host_gb:8.2f}")
    for name, row in result["pipeline"].items():
        label = f"pipeline {row['precision']}{' compiled' if row['compile'] == 'on' else ''}"
        print(f"{label:24} {row['maps_per_second']:9.2f} {row['speedup_over_reference']:12.2f} "
              f"{row['fraction_of_ceiling']:11.3f} {row['peak_host_gb']:8.2f} "
              f"{row['versus_reference_fp32']['mean_cosine']:11.6f} {row['warm_up_seconds']:10.1f}")
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
