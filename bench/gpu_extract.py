"""A GPU session's one run (issue 23, item 5): one full BERT-base-shaped shard through `extract_shard` to local
disk, its rows checked, its wall time and bytes; then bench/profile_extract.py and bench/extract.py on the same
model and precision. Needs no Prefect and no network: the input is the shipped sample replicated (new question
ids) to the features asked for.

    python bench/gpu_extract.py                                      # 5,000 features, bert-base-random, bf16
    python bench/gpu_extract.py --features 8 --model tiny-random-bert --max-length 128 --precision fp32 \\
        --compile off --bench-features 2                            # a small try on a CPU
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from extract import COMPILED, warm_up

from tasks.config import ExtractConfig
from tasks.extract.maps import STATISTICS
from tasks.extract.models import models_for, squad_file
from tasks.extract.plan import plan_extraction, resolve, resolve_compile
from tasks.extract.qa_model import BASE_RANDOM_MODEL, RANDOM_MODELS
from tasks.extract.shard import embed_features, extract_shard
from tasks.extract.tokens import punctuation_ids
from tasks.squad.features import shard_features
from tasks.squad.load import embedded_sample_path
from tasks.storage import Location, Manifest, embedding_matrix, read_rows

BENCH = Path(__file__).resolve().parent


def replicated_sample(path: Path, features: int) -> Path:
    """The shipped sample written `path` as many times over as makes at least `features` questions (so as many
    features at least), each copy's question ids suffixed with its number."""
    sample = json.loads(Path(embedded_sample_path()).read_text())
    questions = sum(len(p["qas"]) for article in sample["data"] for p in article["paragraphs"])
    data = []
    for copy in range(math.ceil(features / questions)):
        for article in sample["data"]:
            paragraphs = [{**p, "qas": [{**qa, "id": f"{qa['id']}-{copy}"} for qa in p["qas"]]}
                          for p in article["paragraphs"]]
            data.append({**article, "title": f"{article['title']} {copy}", "paragraphs": paragraphs})
    path.write_text(json.dumps({"version": sample.get("version", "v2.0"), "data": data}))
    return path


def check_rows(cfg: ExtractConfig, manifest: Manifest, plan, rows_per_feature: int) -> str:
    """Checks a published shard: its row count, one row per (feature, layer, head) key, and its middle row group
    re-read (footer and page checksums verified) equal to those features computed again. Returns a summary."""
    dest, shard = Location.open(cfg.dest), plan.shards[0]
    expected = shard.n_features * rows_per_feature
    if manifest.rows != expected:
        raise SystemExit(f"rows: the manifest says {manifest.rows}, expected {expected}")
    keys = pa.concat_tables(read_rows(dest, manifest, columns=["feature_id", "layer", "head"]))
    unique = len(set(zip(*(keys[c].to_numpy() for c in ("feature_id", "layer", "head")))))
    ids = np.unique(keys["feature_id"].to_numpy())
    if keys.num_rows != expected or unique != expected or ids.tolist() != list(range(shard.feature_start,
                                                                                      shard.feature_stop)):
        raise SystemExit(f"keys: {keys.num_rows} rows, {unique} distinct keys, features {ids[0]}..{ids[-1]}")
    group = len(manifest.row_groups) // 2
    stored = pa.concat_tables(read_rows(dest, manifest, row_groups=[group]))
    start, stop = manifest.row_groups[group].features
    models = models_for(cfg)
    squad = squad_file(cfg)
    features = shard_features(squad.examples, shard, models.qa.tokenizer, cfg.max_length, cfg.doc_stride,
                              cfg.max_query_length).take(slice(start - shard.feature_start, stop - shard.feature_start))
    embeddings, stats = embed_features(features, squad.examples, punctuation_ids(models.qa.tokenizer), models, cfg)
    again = embeddings.float().cpu().numpy()
    got = embedding_matrix(stored)
    cosine = (got * again).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(again, axis=1))
    statistics = np.stack([stored[name].to_numpy(zero_copy_only=False) for name in STATISTICS], -1).astype(np.float32)
    again_stats = stats.float().cpu().numpy().reshape(len(got), -1)
    if cosine.min() < 0.9999 or not np.allclose(statistics, again_stats, atol=1e-5, equal_nan=True):
        raise SystemExit(f"row group {group}: min cosine {cosine.min():.6f} against a recomputation, statistics "
                         f"differ by up to {np.nanmax(np.abs(statistics - again_stats)):.2e}")
    return (f"{manifest.rows:,} rows, {unique:,} distinct keys over features {ids[0]}..{ids[-1]}; row group {group} "
            f"({stored.num_rows} rows) re-read verified, min cosine {cosine.min():.6f} against a recomputation")


def follow_ups(args: argparse.Namespace) -> list[list[str]]:
    """The profile and the benchmark, on the same model, length and precision."""
    same = ["--model", args.model, "--max-length", str(args.max_length), "--precision", args.precision,
            "--compile", args.compile, "--scaling", "map", "--bn-mode", "eval", "--features", str(args.bench_features)]
    return [[sys.executable, str(BENCH / "profile_extract.py"), *same],
            [sys.executable, str(BENCH / "extract.py"), *same, "--reference-features", "1"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=5000, help="features in the shard (144 maps each for BERT-base)")
    parser.add_argument("--model", default=BASE_RANDOM_MODEL, choices=sorted(RANDOM_MODELS))
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--precision", default="bf16", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--compile", default="on", choices=["auto", "on", "off", "graphs"])
    parser.add_argument("--bench-features", type=int, default=96, help="features through the profile and benchmark")
    parser.add_argument("--work", default=None, help="local folder for the input and the shard (default: a temp one)")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-extract-"))
    work.mkdir(parents=True, exist_ok=True)
    source = replicated_sample(work / "squad.json", args.features)
    cfg = resolve(ExtractConfig(source=str(source), dest=str(work / "dataset"), model=args.model,
                                max_length=args.max_length, doc_stride=min(128, args.max_length // 2), scaling="map",
                                bn_mode="eval", precision=args.precision, compile=args.compile,
                                shard_size=args.features, shards=[0]))
    plan = plan_extraction(cfg)
    per_feature = plan.record.shards.rows_per_feature
    cfg = resolve_compile(cfg, args.features * per_feature)
    warm_up_seconds = warm_up(cfg)
    started = time.perf_counter()
    manifest = extract_shard(cfg, plan.shards[0], plan.record, show_progress=False)
    seconds = time.perf_counter() - started
    written = sum(path.stat().st_size for path in (work / "dataset").iterdir() if path.is_file())
    device = models_for(cfg).device
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; model {args.model}, "
          f"{args.max_length} tokens, {cfg.precision}{COMPILED[cfg.compile]}, batches of "
          f"{cfg.bert_batch} features / {cfg.encoder_batch} maps; warm-up {warm_up_seconds:.1f} s")
    print(f"shard of {plan.shards[0].n_features:,} features ({manifest.rows:,} maps): {seconds:.1f} s wall "
          f"({manifest.rows / seconds:,.1f} maps/s; computing alone {manifest.maps_per_second:,.1f} maps/s), "
          f"{written / 2**30:.2f} GiB written ({written:,} bytes)")
    print("rows:", check_rows(cfg, manifest, plan, per_feature), flush=True)
    if "prefect" in sys.modules:
        raise SystemExit("prefect was imported: the GPU machines have none")
    for command in follow_ups(args):
        print("$", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
