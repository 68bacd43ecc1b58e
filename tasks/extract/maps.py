"""Attention maps of a BERT-family QA model: the forward with attentions, map scaling, per-head statistics."""

from __future__ import annotations

from typing import Any, Literal

import torch

STATISTICS = ("entropy", "cls_mass", "sep_mass", "prev_mass", "next_mass", "diag_mass")


@torch.inference_mode()
def attention_maps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   token_type_ids: torch.Tensor) -> torch.Tensor:
    """Attention probabilities, shape (batch, layers, heads, seq, seq), rows are queries."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                output_attentions=True)
    if not out.attentions:
        raise RuntimeError("the model returned no attentions: load it with attn_implementation='eager'")
    return torch.stack(out.attentions, dim=1)


def scale_maps(maps: torch.Tensor, mode: Literal["map", "faithful"]) -> torch.Tensor:
    """Min-max scales each (seq, seq) map to 0-255.

    'map': over the whole map. 'faithful': per column, exactly as scikit-learn's
    MinMaxScaler(feature_range=(0, 255)).fit_transform(map) (constant columns become 0)."""
    dims = (-2, -1) if mode == "map" else (-2,)
    low = maps.amin(dim=dims, keepdim=True)
    span = maps.amax(dim=dims, keepdim=True) - low
    span = torch.where(span == 0, torch.ones_like(span), span)
    return (maps - low) * (255.0 / span)


def head_statistics(maps: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    cls_id: int, sep_id: int) -> torch.Tensor:
    """Per-map statistics over the non-padding query rows, shape (batch, layers, heads, len(STATISTICS)).

    entropy: mean row entropy (nats); cls_mass / sep_mass: mean attention to [CLS] / [SEP] tokens;
    prev_mass / next_mass: mean attention to the previous / next token; diag_mass: mean attention to itself."""
    maps = maps.float()
    rows = attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, seq): real query rows

    def row_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.to(values.dtype)
        return (values * mask).sum(-1) / mask.sum(-1).clamp_min(1)

    entropy = torch.special.entr(maps).sum(-1)  # -p log p, 0 at p = 0
    tokens = torch.stack([input_ids == cls_id, input_ids == sep_id], -1).to(maps.dtype)[:, None, None]
    cls, sep = (maps @ tokens).unbind(-1)  # one product, not two masked copies of the maps
    pairs = rows[..., 1:] & rows[..., :-1]  # both tokens of an adjacent pair are real
    return torch.stack([
        row_mean(entropy, rows),
        row_mean(cls, rows),
        row_mean(sep, rows),
        row_mean(maps.diagonal(offset=-1, dim1=-2, dim2=-1), pairs),
        row_mean(maps.diagonal(offset=1, dim1=-2, dim2=-1), pairs),
        row_mean(maps.diagonal(dim1=-2, dim2=-1), rows),
    ], dim=-1)
