"""Device and precision policy: which device, which compute precision, which batch sizes."""

from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_flags() -> str:
    """The CPU feature flags of this machine ('' where /proc/cpuinfo is not there)."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def resolve_precision(precision: str, device: torch.device, flags: str | None = None) -> str:
    """The concrete precision for 'auto': bf16 on GPUs that have it (else fp16), and on CPUs with AMX tiles;
    fp32 on other CPUs (AVX512-BF16 alone was slower than fp32: README, Performance)."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if "amx_bf16" in (cpu_flags() if flags is None else flags) else "fp32"


def default_batches(device: torch.device, map_size: int) -> tuple[int, int]:
    """(features per BERT forward, maps per encoder forward) for a device. CPUs want small encoder batches
    whose activations stay in cache; GPUs want large ones, scaled so that a batch's activations stay the same
    size at any map size."""
    if device.type == "cuda":
        return 32, max(16, int(256 * (384 / map_size) ** 2))
    return 8, 2


def resolve_device(device: str) -> torch.device:
    """'auto' is the GPU where there is one; anything else is taken as torch names it ('cpu', 'cuda:1')."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work (for timings)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
