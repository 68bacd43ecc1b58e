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


# On a GPU, BERT's maps of a batch and the encoder's activations each get at most a quarter of the device's memory:
# the maps in float32, held twice (each layer's, and their stack), for up to BERT-large's 24 x 16 heads; a map's
# activations about four tensors the size of ResNet-50's first stage (256 channels at a quarter of its side).
MEMORY_SHARE = 4
MAX_MAPS_PER_FEATURE = 24 * 16
GPU_BERT_BATCH = 32


def gpu_batches(memory: int, map_size: int, precision: str) -> tuple[int, int]:
    """(features per BERT forward, maps per encoder forward) on a GPU of `memory` bytes: at most 32 features and
    256 maps at 384 tokens (scaled so that a batch's activations stay the same size at any map size), fewer
    where the device's memory is short."""
    budget = memory // MEMORY_SHARE
    bert = budget // (2 * MAX_MAPS_PER_FEATURE * map_size**2 * 4)
    encoder = budget // (4 * 256 * (map_size // 4) ** 2 * DTYPES[precision].itemsize)
    return max(1, min(GPU_BERT_BATCH, bert)), max(1, min(max(16, int(256 * (384 / map_size) ** 2)), encoder))


def default_batches(device: torch.device, map_size: int, precision: str = "fp32") -> tuple[int, int]:
    """(features per BERT forward, maps per encoder forward) for a device. CPUs want small encoder batches
    whose activations stay in cache; GPUs large ones, as their memory allows (`gpu_batches`)."""
    if device.type == "cuda":
        return gpu_batches(torch.cuda.get_device_properties(device).total_memory, map_size, precision)
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
