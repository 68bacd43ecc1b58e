"""Attention maps of a BERT-family QA model: the forward with attentions, map scaling, per-head statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

STATISTICS = ("entropy", "cls_mass", "sep_mass", "prev_mass", "next_mass", "diag_mass", "punct_mass", "segment_focus",
              "question_to_context", "context_to_question", "answer_from_question", "answer_from_cls")


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


@dataclass
class TokenMasks:
    """What each token of a batch of features is, every field a (batch, seq) bool tensor: `real` (not padding),
    `cls`, `sep`, `punct` (punctuation), `question` and `context` (their words, no special tokens), `segment_a`
    (token type 0: [CLS], the question, the first [SEP]) and `answer` (the gold answer's tokens, none where the
    answer is not in the window or there is none)."""

    real: torch.Tensor
    cls: torch.Tensor
    sep: torch.Tensor
    punct: torch.Tensor
    question: torch.Tensor
    context: torch.Tensor
    segment_a: torch.Tensor
    answer: torch.Tensor


def _row_mean(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean of `values` (batch, layers, heads, seq) over the query rows in `rows` (batch, seq); NaN for none."""
    rows = rows.to(values.dtype)[:, None, None, :]
    return (values * rows).sum(-1) / rows.sum(-1)


def head_statistics(maps: torch.Tensor, tokens: TokenMasks) -> torch.Tensor:
    """Per-map statistics, shape (batch, layers, heads, len(STATISTICS)), each a mean over query rows (real rows
    unless said): entropy (nats); cls_mass, sep_mass, punct_mass: attention to those tokens; prev_mass,
    next_mass, diag_mass: to the previous token, the next one, itself; segment_focus: the row's attention to its
    own segment (token type) above what a uniform row would give, scaled so that uniform is 0 and all of it is 1;
    question_to_context / context_to_question: from question rows to context words / the reverse;
    answer_from_question: from question rows to the gold answer's tokens; answer_from_cls: from the [CLS] row to
    them (both NaN where the window holds no answer)."""
    maps = maps.float()
    real = tokens.real
    in_a, in_b = tokens.segment_a & real, real & ~tokens.segment_a
    columns = torch.stack([tokens.cls, tokens.sep, tokens.punct, tokens.question, tokens.context,
                           tokens.answer, in_a, in_b], -1).to(maps.dtype)[:, None, None]
    cls, sep, punct, to_question, to_context, to_answer, to_a, to_b = (maps @ columns).unbind(-1)  # one product
    entropy = torch.special.entr(maps).sum(-1)  # -p log p, 0 at p = 0
    share_a = (in_a.sum(-1) / real.sum(-1).clamp_min(1))[:, None, None, None]
    row_in_a = in_a[:, None, None]
    own = torch.where(row_in_a, to_a, to_b)
    expected = torch.where(row_in_a, share_a, 1 - share_a)
    focus = (own - expected) / (1 - expected).clamp_min(1e-6)
    pairs = real[:, 1:] & real[:, :-1]  # both tokens of an adjacent pair are real
    has_answer = tokens.answer.any(-1)
    cls_row = torch.where(has_answer[:, None, None], to_answer[..., 0], torch.nan)
    return torch.stack([
        _row_mean(entropy, real),
        _row_mean(cls, real),
        _row_mean(sep, real),
        _row_mean(maps.diagonal(offset=-1, dim1=-2, dim2=-1), pairs),
        _row_mean(maps.diagonal(offset=1, dim1=-2, dim2=-1), pairs),
        _row_mean(maps.diagonal(dim1=-2, dim2=-1), real),
        _row_mean(punct, real),
        _row_mean(focus, real),
        _row_mean(to_context, tokens.question),
        _row_mean(to_question, tokens.context),
        _row_mean(to_answer, tokens.question & has_answer[:, None]),
        cls_row,
    ], dim=-1)
