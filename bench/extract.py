"""Extraction benchmark: the original's method step by step (the seed-style reference) against the project's
pipeline, on the same models and features, in one process; and the pipeline against a pure encoder forward on
the same batch shape and precision (its compute ceiling). Prints a table and writes a JSON record.

The reference is `tasks.extract.reference` (the original notebooks' method, step by step). The pipeline is the real
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
import psutil
import torch

from tasks.config import OFFLINE_MODEL, ExtractConfig
from tasks.device import synchronize
from tasks.extract.models import models_for, squad_file
from tasks.extract.plan import plan_extraction, resolve, resolve_compile
from tasks.extract.qa_model import BASE_RANDOM_MODEL, TINY_RANDOM_MODEL
from tasks.extract.reference import compare, seed_style_reference
from tasks.extract.shard import extract_shard
from tasks.squad.features import ShardPlan, shard_features
from tasks.storage.location import Location
from tasks.storage.reading import read_shard
from tasks.storage.records import DatasetRecord
from tasks.storage.rows import embedding_matrix


COMPILED = {"off": "", "on": " compiled", "graphs": " compiled, CUDA graphs"}  # a run's label, by its compile


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


def warm_up(cfg: ExtractConfig) -> float:
    """Seconds of one encoder batch outside the timings: the compiling, where the encoder is compiled (once a
    run, under a minute, against the hours of a full train set)."""
    models = models_for(cfg)
    started = time.perf_counter()
    models.encoder(torch.zeros(cfg.encoder_batch, cfg.max_length, cfg.max_length, device=models.device),
                   cfg.precision)
    synchronize(models.device)
    return time.perf_counter() - started


def pipeline(cfg: ExtractConfig, plan: ShardPlan, record: DatasetRecord) -> tuple[np.ndarray, float]:
    """The project's extract_shard on one shard, written and published to `cfg.dest`; returns the embeddings
    and the seconds it took."""
    models = models_for(cfg)
    started = time.perf_counter()
    extract_shard(cfg, plan, record, show_progress=False)
    synchronize(models.device)
    seconds = time.perf_counter() - started
    return embedding_matrix(read_shard(Location.open(cfg.dest), plan.index)), seconds


def encoder_ceiling(cfg: ExtractConfig, map_size: int, maps: int) -> float:
    """Maps/s of the pipeline's encoder alone on batches of its batch size and precision, maps already on the
    device and scaled, over at least `maps` maps and three batches (fewer were noisier than the ratio)."""
    repeats = max(3, math.ceil(maps / cfg.encoder_batch))
    models = models_for(cfg)
    batch = (torch.rand(cfg.encoder_batch, map_size, map_size, generator=torch.Generator().manual_seed(0)) * 255)
    batch = batch.to(models.device)
    models.encoder(batch, cfg.precision)  # warm-up (and compilation)
    synchronize(models.device)
    started = time.perf_counter()
    for _ in range(repeats):
        models.encoder(batch, cfg.precision)
    synchronize(models.device)
    return repeats * cfg.encoder_batch / (time.perf_counter() - started)


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
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off", "graphs"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ceiling-maps", type=int, default=128, help="maps timed for the ceiling")
    parser.add_argument("--json", default="bench/results/extract.json", help="where the JSON record goes")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    base = dict(model=args.model, max_length=args.max_length, doc_stride=min(128, args.max_length // 2),
                scaling=args.scaling, bn_mode=args.bn_mode,
                device=args.device, bert_batch=args.bert_batch, encoder_batch=args.encoder_batch,
                shard_size=args.features, shards=[0])
    exact = resolve(ExtractConfig(dest=str(work / "fp32"), precision="fp32", compile="off", **base))
    plan = plan_extraction(exact)
    maps_per_feature = plan.record.shards.rows_per_feature
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
        label = f"pipeline {row['precision']}{COMPILED[row['compile']]}"
        print(f"{label:24} {row['maps_per_second']:9.2f} {row['speedup_over_reference']:12.2f} "
              f"{row['fraction_of_ceiling']:11.3f} {row['peak_host_gb']:8.2f} "
              f"{row['versus_reference_fp32']['mean_cosine']:11.6f} {row['warm_up_seconds']:10.1f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
