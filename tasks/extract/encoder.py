"""The image encoder as built: ResNet-50 without its last linear layer (2048-d), Barlow Twins or seeded random
weights, the original's per-map BatchNorm, and the reference forward that every faster path must match."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import fsspec
import torch
import torch.nn.functional as F
from torch import nn

from tasks.errors import InputError
from tasks.storage import cache_dir, file_sha256

BARLOW_TWINS_URL = "https://dl.fbaipublicfiles.com/barlowtwins/ljng/resnet50.pth"


EMBEDDING_DIM = 2048


IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsError(InputError):
    """Encoder weights are missing, altered or do not fit the architecture."""


@dataclass(eq=False)  # hashed by identity: the process-wide caches key on the built encoder
class Encoder:
    """An encoder as built: the reference module (torchvision ResNet-50 without `fc`, fed 3-channel images
    made by `to_images`), whether inputs get ImageNet normalisation, and what it is."""

    module: nn.Module
    normalise: bool
    identity: dict


class PerSampleBatchNorm2d(nn.Module):
    """What BatchNorm2d computes in training mode on a batch of one map, for a whole batch at once:
    each sample is normalised by its own per-channel mean and biased variance, then the layer's affine.
    On CPUs run eagerly that is the training-mode kernel run sample by sample (faster there than instance_norm
    in channels_last layout); elsewhere instance_norm, one kernel for the batch, which the compiler turns into
    one reduction and one fused pass."""

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.shape[-2] * x.shape[-1] > 1 and not torch.compiler.is_compiling():
            return torch.cat([F.batch_norm(sample[None], None, None, self.weight, self.bias, training=True,
                                           eps=self.eps) for sample in x])
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def fetch_weights(location: str, expected_sha256: str | None) -> tuple[Path, str]:
    """A local copy of a weights file (downloaded once into the cache for URLs) and its verified sha256."""
    if "://" in location and not location.startswith("file://"):
        local = cache_dir() / "weights" / hashlib.sha256(location.encode()).hexdigest()[:12] / Path(location).name
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            partial = local.with_name(f".{local.name}.{uuid.uuid4().hex}")
            try:
                fs, remote = fsspec.core.url_to_fs(location)
                fs.get_file(remote, str(partial))  # a plain streamed GET: no range requests needed
                partial.replace(local)
            except Exception as exc:
                partial.unlink(missing_ok=True)
                raise WeightsError(f"encoder weights {location}: download failed ({exc})") from exc
    else:
        local = Path(location.removeprefix("file://"))
        if not local.is_file():
            raise WeightsError(f"encoder weights {location}: no such file")
    actual = file_sha256(local)
    if expected_sha256 is not None and actual != expected_sha256.lower():
        raise WeightsError(f"encoder weights {location}: sha256 is {actual}, expected {expected_sha256}")
    return local, actual


def _resnet50_backbone() -> nn.Module:
    from torchvision.models import resnet50

    model = resnet50(weights=None)
    model.fc = nn.Identity()
    return model


def load_backbone_state(model: nn.Module, path: Path, location: str) -> None:
    """Loads a ResNet-50 backbone state dict (no code execution: weights_only=True); a classifier is ignored."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"encoder weights {location}: not a loadable tensor file ({exc})") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"encoder weights {location}: expected a state dict, got {type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that do not fit
        raise WeightsError(f"encoder weights {location}: not a ResNet-50 backbone ({str(exc)[:300]})") from exc
    if missing or unexpected:
        raise WeightsError(
            f"encoder weights {location}: not a ResNet-50 backbone "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]})"
        )


def _per_sample_batchnorm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, PerSampleBatchNorm2d(child))
        else:
            _per_sample_batchnorm(child)


def build_encoder(
    weights: str = "random",
    sha256: str | None = None,
    seed: int = 0,
    bn_mode: Literal["eval", "faithful"] = "eval",
    normalise: bool = True,
) -> Encoder:
    """ResNet-50 with `fc` removed: 2048-d pooled features.

    weights: 'random' (seeded initialisation, for offline runs and tests), 'barlowtwins' (the official
    checkpoint), or a path / URL of a state dict. bn_mode 'faithful' reproduces the original's train-mode,
    one-map-at-a-time forward (per-sample BatchNorm statistics) while batching."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _resnet50_backbone()
    identity: dict = {"encoder": "resnet50", "bn_mode": bn_mode, "normalise": normalise}
    if weights == "random":
        identity["weights"] = f"random-seed{seed}"
    else:
        location = BARLOW_TWINS_URL if weights == "barlowtwins" else weights
        path, digest = fetch_weights(location, sha256)
        load_backbone_state(model, path, location)
        identity.update(weights=location, sha256=digest)
    if bn_mode == "faithful":
        _per_sample_batchnorm(model)
    model.eval()
    return Encoder(model, normalise, identity)


def to_images(scaled: torch.Tensor, normalise: bool) -> torch.Tensor:
    """(n, s, s) maps in 0-255 to (n, 3, s, s) images: copies of the map in each channel, with ImageNet
    normalisation of the 0-1 values when `normalise`, else the raw 0-255 values (the original's input)."""
    x = scaled[:, None]
    if normalise:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype)[None, :, None, None]
        std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype)[None, :, None, None]
        x = (x / 255.0 - mean) / std
    else:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def reference_embed(encoder: Encoder, scaled: torch.Tensor) -> torch.Tensor:
    """2048-d float32 embeddings of (n, s, s) maps scaled to 0-255, through the module as built: 3-channel
    images into torchvision's ResNet-50. The definition that `InferenceEncoder` must match."""
    return encoder.module(to_images(scaled.float(), encoder.normalise))
