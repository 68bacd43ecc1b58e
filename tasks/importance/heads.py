"""Which heads a run ablates: --heads as LAYER.HEAD, counted from 0, checked against the model's grid."""

from __future__ import annotations

from tasks.config import parse_head
from tasks.errors import InputError


def chosen_heads(heads: list[str] | None, layers: int, per_layer: int, model: str) -> list[tuple[int, int]]:
    """The heads to ablate, in layer and head order (every head where None); an InputError names a head the
    model does not have."""
    if heads is None:
        return [(layer, head) for layer in range(layers) for head in range(per_layer)]
    chosen = sorted({parse_head(text) for text in heads})
    outside = [f"{layer}.{head}" for layer, head in chosen if layer >= layers or head >= per_layer]
    if outside:
        raise InputError(f"--heads {', '.join(outside)}: model '{model}' has {layers} layers of {per_layer} heads "
                         f"(0.0 to {layers - 1}.{per_layer - 1})")
    return chosen
