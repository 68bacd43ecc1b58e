"""Which backend clusters: the GPU extra and the GPUs this process sees, found without importing Dask."""

from __future__ import annotations

import importlib.util
from typing import Literal

from tasks.errors import InputError

Backend = Literal["auto", "cpu", "gpu"]
GPU_MODULES = ("cudf", "cuml", "dask_cudf", "dask_cuda")


def gpu_extra_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in GPU_MODULES)


def visible_gpus() -> int:
    """Number of GPUs this process can use (0 without the gpu extra)."""
    if not gpu_extra_installed():
        return 0
    from dask_cuda.utils import get_n_gpus

    return get_n_gpus()


def choose_backend(backend: Backend, gpus: int) -> bool:
    """True for the GPU backend. 'gpu' without GPUs is an error rather than a silent CPU run."""
    if backend == "gpu" and gpus == 0:
        raise InputError("--backend gpu: no GPU is visible, or the gpu extra is not installed "
                         "(pip install -e '.[gpu]'); use --backend cpu or auto")
    return backend == "gpu" or (backend == "auto" and gpus > 0)
