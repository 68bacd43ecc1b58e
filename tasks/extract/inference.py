"""The encoder rewritten for inference: BatchNorm folded, a one-channel stem, channels_last, bf16/fp16 copies,
optionally compiled; the same function as the reference encoder."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from tasks.device import DTYPES
from tasks.extract.encoder import IMAGENET_MEAN, IMAGENET_STD, Encoder


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
    channels shift_c under the same zero padding, which depends only on the map's size: a small part of
    this convolution's work eagerly, and folded to a constant when compiled with frozen weights (a cache of it
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
    (README, Performance, has the measurements).

    With `compile_batch`, the module is compiled (torch.compile, inductor, weights frozen) for batches of that
    many maps; shorter batches are padded to it, so that one shape compiles once; with `graphs` too, on a GPU
    its kernels are captured once as CUDA graphs and replayed (torch.compile's 'reduce-overhead' mode; CPUs
    ignore it). Where the compiler backend fails (no C++ compiler, say), it warns and runs eagerly."""

    def __init__(self, encoder: Encoder, device: torch.device, compile_batch: int | None = None,
                 graphs: bool = False) -> None:
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
        self.graphs = graphs
        self._forwards: dict[str, nn.Module] = {}

    def _forward(self, precision: str) -> nn.Module:
        """The module (compiled where asked) whose weights are in `precision`'s type, made once."""
        if precision not in self._forwards:
            module = self.module if precision == "fp32" else copy.deepcopy(self.module).to(DTYPES[precision])
            if self.compiled:
                from torch._inductor import config as inductor

                inductor.freezing = True  # weights are constants: folded, and prepacked for oneDNN on CPUs
                module = torch.compile(module, dynamic=False, mode="reduce-overhead" if self.graphs else None)
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
        # a copy: a CUDA graph's replay overwrites the outputs of the one before
        return self._run(maps, precision)[:n].to(torch.float32, copy=True)
