"""Image encoders for attention maps: ResNet-50 without its last linear layer (2048-d), Barlow Twins weights."""

from __future__ import annotations

import copy
import hashlib
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import fsspec
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from tasks.errors import InputError
from tasks.storage import cache_dir

BARLOW_TWINS_URL = "https://dl.fbaipublicfiles.com/barlowtwins/ljng/resnet50.pth"
EMBEDDING_DIM = 2048
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class WeightsError(InputError):
    """Encoder weights are missing, altered or do not fit the architecture."""


@dataclass
class Encoder:
    """An encoder as built: the reference module (torchvision ResNet-50 without `fc`, fed 3-channel images
    made by `to_images`), whether inputs get ImageNet normalisation, and what it is."""

    module: nn.Module
    normalise: bool
    identity: dict


class PerSampleBatchNorm2d(nn.Module):
    """What BatchNorm2d computes in training mode on a batch of one map, for a whole batch at once:
    each sample is normalised by its own per-channel mean and biased variance, then the layer's affine.
    On CPUs run eagerly that is the training-mode kernel run sample by sample (measured on 2 cores at 384x384,
    1.7x faster than instance_norm in channels_last layout); elsewhere instance_norm, one kernel for the batch,
    which the compiler turns into one reduction and one fused pass (compiled bf16 on 2 AMX cores: 0.044 s a
    map against 0.054 for the loop)."""

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.shape[-2] * x.shape[-1] > 1 and not torch.compiler.is_compiling():
            return torch.cat([F.batch_norm(sample[None], None, None, self.weight, self.bias, training=True,
                                           eps=self.eps) for sample in x])
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def cpu_flags() -> str:
    """The CPU feature flags of this machine ('' where /proc/cpuinfo is not there)."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def resolve_precision(precision: str, device: torch.device, flags: str | None = None) -> str:
    """The concrete precision for 'auto': bf16 on GPUs that have it (else fp16), and on CPUs with AMX tiles;
    fp32 on other CPUs. AVX512-BF16 alone does not pay: measured on such a 2-core CPU, a ResNet-50 forward at
    384x384 took 0.193 s a map in bf16 against 0.176 in fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if "amx_bf16" in (cpu_flags() if flags is None else flags) else "fp32"


def default_batches(device: torch.device, map_size: int) -> tuple[int, int]:
    """(features per BERT forward, maps per encoder forward) for a device. CPUs want small encoder batches
    whose activations stay in cache (measured on 2 cores at 384x384, side by side: 0.10 s a map in batches of
    2, 0.12 in batches of 8, 0.21 in batches of 32); GPUs want large ones, scaled so that a batch's activations
    stay the same size at any map size."""
    if device.type == "cuda":
        return 32, max(16, int(256 * (384 / map_size) ** 2))
    return 8, 2


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


def _fold_batchnorm(module: nn.Module) -> None:
    """Folds every eval-mode BatchNorm2d into the Conv2d registered just before it in the same parent (the
    layout of torchvision's ResNets), leaving an Identity in its place."""
    previous: tuple[str, nn.Module] | None = None
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            if previous is None or not isinstance(previous[1], nn.Conv2d):
                raise ValueError(f"BatchNorm2d '{name}' does not follow a Conv2d")
            setattr(module, previous[0], fuse_conv_bn_eval(previous[1], child))
            setattr(module, name, nn.Identity())
        else:
            _fold_batchnorm(child)
        previous = (name, child)


class SingleChannelStem(nn.Module):
    """A first convolution whose 3 input channels are affine copies of one map (x_c = scale_c * m + shift_c),
    computed as one convolution over the map: conv(m, sum_c scale_c W_c), plus the response of the constant
    channels shift_c under the same zero padding, which depends only on the map's size: about 1% of this
    convolution's work eagerly, and folded to a constant when compiled with frozen weights (a cache of it
    made the compiler recompile at the second call)."""

    def __init__(self, conv: nn.Conv2d, scale: Sequence[float], shift: Sequence[float]) -> None:
        super().__init__()
        weight = conv.weight.detach()
        per_channel = lambda values: torch.tensor(values, dtype=weight.dtype)[None, :, None, None]  # noqa: E731
        self.conv = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              bias=conv.bias is not None)
        self.conv.weight = nn.Parameter((weight * per_channel(scale)).sum(1, keepdim=True), requires_grad=False)
        if conv.bias is not None:
            self.conv.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.register_buffer("shift_weight", (weight * per_channel(shift)).sum(1, keepdim=True))
        self.has_shift = any(value != 0 for value in shift)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        out = self.conv(maps)
        if not self.has_shift:
            return out
        ones = maps.new_ones(1, 1, *maps.shape[-2:])  # the constant channels' response, the same for every map
        return out + F.conv2d(ones, self.shift_weight, None, self.conv.stride, self.conv.padding)


class InferenceEncoder:
    """The encoder rewritten for inference on `device`, computing the same function as `reference_embed`:
    BatchNorm folded into the convolutions (eval mode), the first convolution folded to the one channel that
    the three copies of a map carry, channels_last layout. Takes (n, s, s) maps in 0-255.

    bf16 and fp16 run a copy of the module whose weights and activations are in that type (made at the first
    call in it): unlike autocast, no weight is cast at every call, and the compiler sees one type throughout
    (measured on 2 AMX cores at 384x384, compiled: 0.020 s a map against 0.052 with autocast).

    With `compile_batch`, the module is compiled (torch.compile, inductor, weights frozen) for batches of that
    many maps; shorter batches are padded to it, so that one shape compiles once. Where the compiler backend
    fails (no C++ compiler, say), it warns and runs eagerly."""

    def __init__(self, encoder: Encoder, device: torch.device, compile_batch: int | None = None) -> None:
        module = copy.deepcopy(encoder.module).eval()
        if encoder.identity["bn_mode"] == "eval":
            _fold_batchnorm(module)
        if encoder.normalise:  # x_c = (m / 255 - mean_c) / std_c
            scale = [1 / (255.0 * std) for std in IMAGENET_STD]
            shift = [-mean / std for mean, std in zip(IMAGENET_MEAN, IMAGENET_STD)]
        else:  # the original's input: the 0-255 map in every channel
            scale, shift = [1.0] * 3, [0.0] * 3
        module.conv1 = SingleChannelStem(module.conv1, scale, shift)
        self.module = module.to(device=device, memory_format=torch.channels_last)
        self.device = device
        self.identity = encoder.identity
        self.compile_batch = compile_batch
        self.compiled = bool(compile_batch)
        self._forwards: dict[str, nn.Module] = {}

    def _forward(self, precision: str) -> nn.Module:
        """The module (compiled where asked) whose weights are in `precision`'s type, made once."""
        if precision not in self._forwards:
            module = self.module if precision == "fp32" else copy.deepcopy(self.module).to(DTYPES[precision])
            if self.compiled:
                from torch._inductor import config as inductor

                inductor.freezing = True  # weights are constants: folded, and prepacked for oneDNN on CPUs
                module = torch.compile(module, dynamic=False)
            self._forwards[precision] = module
        return self._forwards[precision]

    def _run(self, maps: torch.Tensor, precision: str) -> torch.Tensor:
        if not self.compiled:
            return self._forward(precision)(maps)
        from torch._dynamo.exc import BackendCompilerFailed

        try:
            return self._forward(precision)(maps)
        except BackendCompilerFailed as exc:
            warnings.warn(f"torch.compile failed, the encoder runs eagerly: {str(exc).splitlines()[0]}")
            self.compiled = False
            self._forwards.clear()
            return self._forward(precision)(maps)

    @torch.inference_mode()
    def __call__(self, scaled: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        """2048-d float32 embeddings of (n, s, s) maps scaled to 0-255."""
        n = len(scaled)
        if self.compiled and n < self.compile_batch:
            scaled = torch.cat([scaled, scaled.new_zeros((self.compile_batch - n, *scaled.shape[1:]))])
        # always a new tensor made here, in inference mode and in one layout: a view of the caller's tensor or
        # a padded batch would each look different to the compiler's guards, and recompile
        maps = scaled[:, None].to(DTYPES[precision], memory_format=torch.channels_last, copy=True)
        return self._run(maps, precision)[:n].float()
