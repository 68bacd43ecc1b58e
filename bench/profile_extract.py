"""Where the time of extract_shard's batches goes: one shard through the real `extract_shard` under torch.profiler
(CPU activities, and CUDA's on a GPU), broken down by the phases that tasks/extract/shard.py labels (BERT's
forward, statistics, scaling, encoder, device-to-host copy, waiting for the writer), and on a GPU how long it
idled between kernels. The encoder is warmed up (and compiled) before the profile.

    python bench/profile_extract.py                                   # MiniLM, 16 features, this device
    python bench/profile_extract.py --model tiny-random-bert --features 8 --max-length 128
    python bench/profile_extract.py --model bert-base-random --features 96 --precision bf16 --compile on
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from extract import COMPILED, warm_up
from torch.profiler import ProfilerActivity, profile

from tasks.config import OFFLINE_MODEL, ExtractConfig
from tasks.device import synchronize
from tasks.extract.models import models_for
from tasks.extract.phases import BATCH, PHASES, PhaseTime, device_idle, device_work, phase_times
from tasks.extract.plan import ExtractionPlan, plan_extraction, resolve, resolve_compile
from tasks.extract.qa_model import BASE_RANDOM_MODEL, TINY_RANDOM_MODEL
from tasks.extract.shard import extract_shard


def profiled_shard(cfg: ExtractConfig, plan: ExtractionPlan, trace: str | None = None) -> tuple[list, float]:
    """The profiler's events of the plan's first shard through extract_shard (written to `cfg.dest`), and its
    seconds."""
    device = models_for(cfg).device
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        extract_shard(cfg, plan.shards[0], plan.record, show_progress=False)
        synchronize(device)
        seconds = time.perf_counter() - started
    if trace:
        prof.export_chrome_trace(trace)
    return prof.events(), seconds


def breakdown(events: list) -> str:
    """The table of where a batch's time goes, per batch, from a profile's events."""
    times = phase_times(events)
    batch = times.get(BATCH, PhaseTime())
    if not batch.count:
        raise ValueError("the profile holds no labelled batch")
    per = lambda us: us / batch.count / 1000  # noqa: E731  (ms a batch)
    lines = [f"{batch.count} batches; per batch, host (wall) ms and its share of the batch; device ms: the span of "
             "the device work launched in it (GPU only). On a GPU the host runs ahead of the device: its times are "
             "launch times, and writer_wait holds the wait for the device's previous batch",
             f"{'phase':14} {'host ms':>10} {'share':>7} {'device ms':>10}"]
    labelled = 0.0
    for name in PHASES:
        t = times.get(name, PhaseTime())
        labelled += t.host_us
        lines.append(f"{name:14} {per(t.host_us):10.2f} {t.host_us / batch.host_us:7.1%} {per(t.device_us):10.2f}")
    rest = batch.host_us - labelled
    lines.append(f"{'(unlabelled)':14} {per(rest):10.2f} {rest / batch.host_us:7.1%}")
    lines.append(f"{'batch':14} {per(batch.host_us):10.2f} {1:7.1%} {per(batch.device_us):10.2f}")
    idle = device_idle(device_work(events))
    if idle.span_us:
        lines.append(f"device: {idle.span_us / 1000:.1f} ms from first to last kernel, busy {idle.busy_us / 1000:.1f} "
                     f"ms, idle between kernels {idle.idle_us / 1000:.1f} ms ({idle.idle_us / idle.span_us:.1%})")
    else:
        lines.append("device: no device activity recorded (a CPU run)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=OFFLINE_MODEL, choices=[TINY_RANDOM_MODEL, OFFLINE_MODEL, BASE_RANDOM_MODEL])
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--features", type=int, default=16, help="features in the profiled shard")
    parser.add_argument("--scaling", default="map", choices=["faithful", "map"])
    parser.add_argument("--bn-mode", default="eval", choices=["faithful", "eval"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off", "graphs"])
    parser.add_argument("--bert-batch", type=int, default=None)
    parser.add_argument("--encoder-batch", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--trace", default=None, help="also write a Chrome trace (open in Perfetto) here")
    args = parser.parse_args()

    dest = Path(tempfile.mkdtemp(prefix="profile-extract-")) / "dataset"
    cfg = resolve(ExtractConfig(
        model=args.model, max_length=args.max_length, doc_stride=min(128, args.max_length // 2), scaling=args.scaling,
        bn_mode=args.bn_mode, precision=args.precision, compile=args.compile, device=args.device,
        bert_batch=args.bert_batch, encoder_batch=args.encoder_batch, shard_size=args.features, shards=[0],
        dest=str(dest)))
    plan = plan_extraction(cfg)
    cfg = resolve_compile(cfg, args.features * plan.record.shards.rows_per_feature)
    warm_up(cfg)
    events, seconds = profiled_shard(cfg, plan, args.trace)
    device = models_for(cfg).device
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, model {args.model}, "
          f"{args.max_length} tokens, {cfg.precision}{COMPILED[cfg.compile]}, batches of "
          f"{cfg.bert_batch} features / {cfg.encoder_batch} maps; the shard took {seconds:.1f} s under the profiler")
    print(breakdown(events))


if __name__ == "__main__":
    main()
