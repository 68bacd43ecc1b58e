"""Which backend clusters: the GPUs this process sees (counted by torch) and the gpu extra (dask-cuda), found
without importing Dask."""

from __future__ import annotations

import importlib.util
from typing import Literal

from tasks.errors import InputError

Backend = Literal["auto", "cpu", "gpu"]
GPU_MODULES = ("dask_cuda",)  # the gpu extra; the clustering engine runs on torch, RAPIDS is optional


def gpu_extra_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in GPU_MODULES)


def visible_gpus() -> int:
    """Number of GPUs this process can use: 0 without the gpu extra, without a driver, or with
    CUDA_VISIBLE_DEVICES empty (torch counts the devices it may use, before CUDA starts)."""
    if not gpu_extra_installed():
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def choose_backend(backend: Backend, gpus: int, n_workers: int | None = None) -> bool:
    """True for the GPU backend. 'gpu' without GPUs is an error rather than a silent CPU run, and so are more
    local GPU workers (`n_workers`) than GPUs."""
    if backend == "gpu" and gpus == 0:
        raise InputError("--backend gpu: no GPU is visible, or the gpu extra is not installed "
                         "(pip install -e '.[gpu]'); use --backend cpu or auto")
    gpu = backend == "gpu" or (backend == "auto" and gpus > 0)
    if gpu and n_workers is not None and n_workers > gpus:
        raise InputError(f"--n-workers {n_workers}: the GPU backend runs one worker per GPU and {gpus} "
                         f"GPU{'s are' if gpus != 1 else ' is'} visible; lower --n-workers or use --backend cpu")
    return gpu
