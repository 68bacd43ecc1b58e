"""The per-map cost of the model-free descriptors (the map pooled to 16 x 16, the heads' Jensen-Shannon
divergences) beside the encoder's and the statistics', measured side by side in one run on the same maps:
bert-base-random (144 heads) at 384 tokens on the embedded sample's features, and on full-length random maps
(every token real: the divergence's worst case, quadratic in the real tokens), the divergence eager and
torch.compile'd. Writes a JSON record.

    python bench/descriptors.py --features 2 --encoder-maps 16
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from tasks.config import ExtractConfig
from tasks.extract.descriptors import head_divergence, pooled_maps
from tasks.extract.maps import attention_maps, head_statistics, scale_maps
from tasks.extract.models import models_for
from tasks.extract.plan import resolve
from tasks.extract.qa_model import BASE_RANDOM_MODEL
from tasks.extract.tokens import punctuation_ids, token_masks
from tasks.squad.features import tokenize
from tasks.squad.load import load_squad


def timed(call, repeats: int = 1) -> float:
    """Seconds a call of `call` takes, the best of `repeats` (the machine may be shared)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=2, help="features in the batch")
    parser.add_argument("--encoder-maps", type=int, default=16, help="maps the encoder is timed on")
    parser.add_argument("--repeats", type=int, default=2, help="timings of each step; the best is kept")
    parser.add_argument("--json", default="bench/results/descriptors.json", help="where the JSON record goes")
    args = parser.parse_args()

    cfg = resolve(ExtractConfig(model=BASE_RANDOM_MODEL, max_length=384, doc_stride=128, compile="off",
                                dest="unused"))
    models = models_for(cfg)
    squad = load_squad("embedded")
    tokenizer = models.qa.tokenizer
    batch = tokenize(squad.examples, tokenizer, 384, 128, 64).take(slice(0, args.features))
    device = models.device
    ids, mask, types = (torch.from_numpy(a).long().to(device)
                        for a in (batch.input_ids, batch.attention_mask, batch.token_type_ids))
    lengths = batch.attention_mask.sum(1)
    masks = token_masks(batch, squad.examples, tokenizer.cls_token_id, tokenizer.sep_token_id,
                        punctuation_ids(tokenizer), device)
    maps = attention_maps(models.qa.model, ids, mask, types)
    n_maps = maps.shape[0] * maps.shape[1] * maps.shape[2]
    subset = maps.flatten(0, 2)[:args.encoder_maps]
    full = torch.softmax(torch.randn(1, *maps.shape[1:], generator=torch.Generator().manual_seed(0)), -1).to(device)
    per_map = {  # seconds a map
        "attention (BERT forward)": timed(lambda: attention_maps(models.qa.model, ids, mask, types),
                                          args.repeats) / n_maps,
        "encoder (ResNet-50)": timed(lambda: models.encoder(scale_maps(subset, cfg.scaling), cfg.precision),
                                     args.repeats) / len(subset),
        "statistics": timed(lambda: head_statistics(maps, masks), args.repeats) / n_maps,
        "pooled 16x16": timed(lambda: pooled_maps(maps, torch.from_numpy(lengths).to(device)), args.repeats) / n_maps,
        "head JS, these features": timed(lambda: head_divergence(maps, lengths.tolist()), 1) / n_maps,
        "head JS, 384 real tokens": timed(lambda: head_divergence(full, [384]), 1) / (full.shape[1] * full.shape[2]),
        # compiled: the first call compiles (the extraction's --compile on); the best of two is kept
        "head JS compiled, these": timed(lambda: head_divergence(maps, lengths.tolist(), compiled=True), 2) / n_maps,
        "head JS compiled, 384": timed(lambda: head_divergence(full, [384], compiled=True), 2) / (
            full.shape[1] * full.shape[2]),
    }
    encoder = per_map["encoder (ResNet-50)"]
    print(f"device {device}, {torch.get_num_threads()} threads, precision {cfg.precision}: {args.features} features "
          f"x {maps.shape[1]}x{maps.shape[2]} heads at 384 tokens, real tokens {lengths.tolist()}")
    for name, seconds in per_map.items():
        print(f"  {name:26s} {seconds * 1e3:9.3f} ms a map  {seconds / encoder:7.3f} x the encoder")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({
        "device": str(device), "threads": torch.get_num_threads(), "precision": cfg.precision,
        "features": args.features, "real_tokens": lengths.tolist(), "heads": maps.shape[1] * maps.shape[2],
        "seconds_per_map": per_map, "ratio_to_encoder": {k: v / encoder for k, v in per_map.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
