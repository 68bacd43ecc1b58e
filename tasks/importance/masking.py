"""Head masking for the BERT-family models of transformers 5.x, which have no `head_mask` argument: each head's
context is scaled by a layers x heads mask just before the attention's output projection. A zero there is the
model with that head's value weights and bias zeroed; a mask that requires grad gives each head's gradient, the
importance of Michel et al. 2019."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch


def attention_projections(model: Any) -> list[torch.nn.Linear]:
    """The output projection of every layer's self-attention, in layer order (`layer.attention.output.dense`)."""
    return [layer.attention.output.dense for layer in model.base_model.encoder.layer]


def _scaler(mask: torch.Tensor, layer: int) -> Callable:
    def scale(module: torch.nn.Module, args: tuple) -> tuple:
        context, *rest = args
        batch, tokens, width = context.shape
        heads = mask.shape[1]
        by_head = context.view(batch, tokens, heads, width // heads)
        weights = mask[layer].to(device=context.device, dtype=context.dtype)[:, None]
        return ((by_head * weights).view(batch, tokens, width), *rest)

    return scale


@contextmanager
def head_mask(model: Any, mask: torch.Tensor) -> Iterator[torch.Tensor]:
    """Within the block, `model`'s forward passes scale head h of layer l by `mask[l, h]` (shape layers x heads;
    1 keeps a head, 0 removes it); the hooks are removed on leaving it."""
    projections = attention_projections(model)
    expected = (len(projections), model.config.num_attention_heads)
    if tuple(mask.shape) != expected:
        raise ValueError(f"head mask of shape {tuple(mask.shape)}; this model needs layers x heads = {expected}")
    handles = [projection.register_forward_pre_hook(_scaler(mask, layer))
               for layer, projection in enumerate(projections)]
    try:
        yield mask
    finally:
        for handle in handles:
            handle.remove()
