"""Gradient importance of each head (Michel et al. 2019): the expected absolute gradient of the QA loss with
respect to the head's mask, over the examples, each layer's scores then divided by their L2 norm."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from tasks.importance.masking import head_mask


def gradient_importance(model: Any, batches: Iterable[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Layers x heads importance of `model`'s heads over `batches` (model inputs with `start_positions` and
    `end_positions`): one backward pass a batch, |d loss / d mask| of the batch's mean loss (as Michel et al.'s
    code accumulates it), averaged over the batches weighted by their examples. The model's weights get no
    gradient."""
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    device = next(model.parameters()).device
    total, examples = torch.zeros(layers, heads, dtype=torch.float64), 0
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for parameter, _ in frozen:
        parameter.requires_grad_(False)
    try:
        for batch in batches:
            size = len(batch["input_ids"])
            mask = torch.ones(layers, heads, device=device, requires_grad=True)
            with head_mask(model, mask):
                loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            (grad,) = torch.autograd.grad(loss, mask)
            total += grad.abs().double().cpu() * size
            examples += size
    finally:
        for parameter, wanted in frozen:
            parameter.requires_grad_(wanted)
    if examples == 0:
        raise ValueError("gradient importance needs at least one example")
    return total / examples


def per_layer_normalised(importance: torch.Tensor) -> torch.Tensor:
    """Each layer's scores divided by their L2 norm, as Michel et al. compare heads across layers."""
    return importance / importance.norm(dim=1, keepdim=True).clamp_min(1e-20)
