"""The GPU count and the backend choice: torch counts the devices this process may use (none with
CUDA_VISIBLE_DEVICES empty, none and no error without a driver), and a local GPU cluster asked for more workers
than GPUs fails in one line before anything starts."""

from __future__ import annotations

import pytest
import torch

from tasks.compute import gpus
from tasks.config import ClusterConfig
from tasks.errors import InputError
from tasks.preflight import check_backend


@pytest.fixture
def extra_installed(monkeypatch):
    """The gpu extra's module check pointed at a module that is installed here (dask-cuda is not)."""
    monkeypatch.setattr(gpus, "GPU_MODULES", ("distributed",))
    assert gpus.gpu_extra_installed()


def test_without_the_gpu_extra_no_gpu_is_counted():
    assert not gpus.gpu_extra_installed() and gpus.visible_gpus() == 0


def test_an_empty_cuda_visible_devices_counts_no_gpu(extra_installed, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus.visible_gpus() == 0
    assert not gpus.choose_backend("auto", gpus.visible_gpus())


def test_a_machine_without_a_driver_counts_no_gpu_and_raises_nothing(extra_installed):
    assert not torch.cuda.is_available()  # this machine has no NVIDIA driver
    assert gpus.visible_gpus() == 0
    with pytest.raises(InputError, match="--backend gpu: no GPU is visible"):
        check_backend(None, "gpu", None)
    check_backend(None, "auto", 4)  # auto falls back to the CPU, where any worker count is fine


@pytest.mark.parametrize("backend, visible, workers", [("gpu", 2, 3), ("auto", 1, 2)])
def test_more_gpu_workers_than_gpus_is_one_line(backend, visible, workers):
    with pytest.raises(InputError) as raised:
        gpus.choose_backend(backend, visible, workers)
    message = str(raised.value)
    assert "\n" not in message and f"--n-workers {workers}" in message and f"{visible} GPU" in message
    assert gpus.choose_backend(backend, visible, visible) and gpus.choose_backend(backend, visible, None)
    assert not gpus.choose_backend("cpu", visible, workers + 8)


def test_the_cluster_preflight_checks_the_worker_count(extra_installed, monkeypatch):
    monkeypatch.setattr("tasks.preflight.visible_gpus", lambda: 1)  # as on a one-GPU machine
    config = ClusterConfig(dataset="d", out="o", backend="gpu", n_workers=2)
    with pytest.raises(InputError, match="--n-workers 2: the GPU backend runs one worker per GPU and 1 GPU is"):
        check_backend(config.compute.scheduler, config.compute.backend, config.compute.n_workers)
    check_backend("tcp://scheduler:8786", "gpu", 2)  # an existing scheduler's workers are its own
