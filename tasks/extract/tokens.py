"""What each token of a feature is: special tokens, punctuation, question and context words, the gold answer."""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np
import torch

from tasks.extract.maps import TokenMasks
from tasks.squad import Example, Features, gold_span

_PREFIXES = ("##", "\u0120", "\u2581")  # WordPiece continuation, byte-level BPE and SentencePiece word starts


def is_punctuation(token: str) -> bool:
    """Whether a vocabulary entry is punctuation only (Unicode category P*), after any word-piece prefix."""
    for prefix in _PREFIXES:
        token = token.removeprefix(prefix)
    return bool(token) and all(unicodedata.category(c).startswith("P") for c in token)


def punctuation_ids(tokenizer: Any) -> np.ndarray:
    """A bool per vocabulary id: whether that token is punctuation."""
    table = np.zeros(len(tokenizer), bool)
    for token, index in tokenizer.get_vocab().items():
        if index < len(table):
            table[index] = is_punctuation(token)
    return table


def answer_tokens(features: Features, examples: list[Example]) -> np.ndarray:
    """(features, seq) bool: the tokens overlapping the first gold answer's characters that the context holds
    at its answer_start, where the answer lies (even partly) in the feature's window; none for unanswerable
    questions and for those whose answers all differ from the context (they would mark the wrong tokens)."""
    out = np.zeros(features.input_ids.shape, bool)
    for row, index in enumerate(features.example_index):
        example = examples[index]
        span = gold_span(example)
        if example.is_impossible or span is None:
            continue
        text, start = span
        begin, end = features.offsets[row, :, 0], features.offsets[row, :, 1]
        out[row] = (begin >= 0) & (begin < start + len(text)) & (end > start)
    return out


def token_masks(features: Features, examples: list[Example], cls_id: int, sep_id: int, punctuation: np.ndarray,
                device: torch.device) -> TokenMasks:
    """TokenMasks of a batch of features, on `device`."""
    ids = features.input_ids
    real = features.attention_mask.astype(bool)
    cls, sep = ids == cls_id, ids == sep_id
    words = real & ~cls & ~sep
    context = words & (features.offsets[..., 0] >= 0)
    masks = {"real": real, "cls": cls & real, "sep": sep & real, "punct": punctuation[ids] & words,
             "question": words & (features.token_type_ids == 0), "context": context,
             "segment_a": real & (features.token_type_ids == 0), "answer": answer_tokens(features, examples) & context}
    return TokenMasks(**{name: torch.from_numpy(mask).to(device) for name, mask in masks.items()})
