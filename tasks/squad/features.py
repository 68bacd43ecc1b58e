"""SQuAD examples as QA features (Hugging Face run_qa windows) and the plan of which features make each shard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.errors import InputError
from tasks.squad.load import Example

if TYPE_CHECKING:
    from tasks.storage import Manifest


@dataclass
class Features:
    """Tokenized QA features, one row per doc-stride window, in global feature order."""

    feature_id: np.ndarray  # int64 [n]
    example_index: np.ndarray  # int64 [n], index into the examples
    question_id: list[str]
    span: np.ndarray  # int16 [n], window number within the question
    input_ids: np.ndarray  # int32 [n, max_length]
    token_type_ids: np.ndarray  # int8 [n, max_length]
    attention_mask: np.ndarray  # int8 [n, max_length]
    offsets: np.ndarray  # int32 [n, max_length, 2], character offsets into the context; (-1, -1) outside it

    def __len__(self) -> int:
        return len(self.feature_id)

    def take(self, rows: slice) -> Features:
        """The features in a contiguous slice."""
        return Features(
            feature_id=self.feature_id[rows],
            example_index=self.example_index[rows],
            question_id=self.question_id[rows],
            span=self.span[rows],
            input_ids=self.input_ids[rows],
            token_type_ids=self.token_type_ids[rows],
            attention_mask=self.attention_mask[rows],
            offsets=self.offsets[rows],
        )


@dataclass(frozen=True)
class ShardPlan:
    """Which features make a shard, and the examples that produce them."""

    index: int
    feature_start: int
    feature_stop: int
    example_start: int
    example_stop: int
    first_span: int  # windows of the first example that belong to the previous shard

    @property
    def n_features(self) -> int:
        return self.feature_stop - self.feature_start

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ShardPlan:
        """The plan a published shard was made from, as its manifest records it."""
        return cls(manifest.shard, *manifest.features, *manifest.examples, manifest.first_span)


class WindowError(InputError, ValueError):
    """A question leaves too little room in the window for the context and the stride."""


def question_tokens(questions: list[str], tokenizer: Any, max_query_length: int | None) -> np.ndarray:
    """Each question's token count (no special tokens) after the `max_query_length` truncation."""
    counts = np.array([len(ids) for ids in tokenizer([q.lstrip() for q in questions],
                                                      add_special_tokens=False)["input_ids"]], dtype=np.int64)
    return counts if max_query_length is None else np.minimum(counts, max_query_length)


def check_windows(examples: list[Example], tokenizer: Any, max_length: int, doc_stride: int,
                  max_query_length: int | None) -> None:
    """Every question leaves room for more context tokens than the stride (else the tokenizer panics): raises
    WindowError naming the first question that does not, its token count and what would fit."""
    counts = question_tokens([e.question for e in examples], tokenizer, max_query_length)
    special = tokenizer.num_special_tokens_to_add(pair=True)
    too_long = np.flatnonzero(counts + special + doc_stride >= max_length)
    if not len(too_long):
        return
    first, n = int(too_long[0]), int(counts[too_long[0]])
    room = max_length - n - special
    others = f" ({len(too_long) - 1:,} more questions too)" if len(too_long) > 1 else ""
    cut = f" (after --max-query-length {max_query_length})" if max_query_length is not None else ""
    raise WindowError(
        f"question '{examples[first].question_id}': {n} question tokens{cut} + {special} special tokens leave "
        f"{max(room, 0)} context tokens in --max-length {max_length}, which must exceed --doc-stride {doc_stride}"
        f"{others}: raise --max-length above {n + special + doc_stride}, or lower --max-query-length or --doc-stride")


def _truncate_questions(questions: list[str], tokenizer: Any, max_query_length: int | None) -> list[str]:
    """Each question cut after its first `max_query_length` tokens, as the original's preprocessing did."""
    questions = [q.lstrip() for q in questions]  # as run_qa.py: leading spaces waste tokens
    if max_query_length is None:
        return questions
    offsets = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [q if len(o) <= max_query_length else q[: o[max_query_length - 1][1]] for q, o in zip(questions, offsets)]


def _tokenize_chunk(examples: list[Example], tokenizer: Any, max_length: int, doc_stride: int,
                    max_query_length: int | None) -> dict[str, np.ndarray]:
    encoded = tokenizer(
        _truncate_questions([e.question for e in examples], tokenizer, max_query_length),
        [e.context for e in examples],
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    n = len(encoded["input_ids"])
    offsets = np.asarray(encoded["offset_mapping"], dtype=np.int32)
    context_tokens = np.array([[s == 1 for s in encoded.sequence_ids(i)] for i in range(n)], dtype=bool)
    offsets[~context_tokens] = -1
    return {
        "example": np.asarray(encoded["overflow_to_sample_mapping"], dtype=np.int64),
        "input_ids": np.asarray(encoded["input_ids"], dtype=np.int32),
        "token_type_ids": np.asarray(encoded["token_type_ids"], dtype=np.int8),
        "attention_mask": np.asarray(encoded["attention_mask"], dtype=np.int8),
        "offsets": offsets,
    }


def tokenize(
    examples: list[Example],
    tokenizer: Any,
    max_length: int,
    doc_stride: int,
    max_query_length: int | None,
    first_example: int = 0,
    first_feature: int = 0,
    chunk: int = 1000,
) -> Features:
    """QA features as Hugging Face's run_qa preprocessing builds them: question first, context second,
    only the context truncated, overlapping windows of `doc_stride` tokens, padded to `max_length`.

    `first_example` and `first_feature` are the global indices of `examples[0]` and of its first feature,
    so that tokenizing a slice of the examples yields the same ids as tokenizing them all. Examples are
    tokenized `chunk` at a time to bound memory."""
    if doc_stride >= max_length:
        raise ValueError(f"doc_stride ({doc_stride}) must be smaller than max_length ({max_length})")
    check_windows(examples, tokenizer, max_length, doc_stride, max_query_length)
    parts = [
        _tokenize_chunk(examples[start : start + chunk], tokenizer, max_length, doc_stride, max_query_length)
        for start in range(0, len(examples), chunk)
    ]
    for start, part in zip(range(0, len(examples), chunk), parts):
        part["example"] += start
    merged = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    local_example = merged["example"]
    n = len(local_example)
    new_example = np.ones(n, dtype=bool)
    new_example[1:] = local_example[1:] != local_example[:-1]
    first_row = np.maximum.accumulate(np.where(new_example, np.arange(n), 0))
    return Features(
        feature_id=np.arange(first_feature, first_feature + n, dtype=np.int64),
        example_index=local_example + first_example,
        question_id=[examples[i].question_id for i in local_example],
        span=(np.arange(n) - first_row).astype(np.int16),
        input_ids=merged["input_ids"],
        token_type_ids=merged["token_type_ids"],
        attention_mask=merged["attention_mask"],
        offsets=merged["offsets"],
    )


def plan_shards(features: Features, shard_size: int) -> list[ShardPlan]:
    """Splits the features into shards of `shard_size`, recording which examples each shard needs."""
    plans = []
    for index, start in enumerate(range(0, len(features), shard_size)):
        stop = min(start + shard_size, len(features))
        plans.append(ShardPlan(
            index=index, feature_start=start, feature_stop=stop,
            example_start=int(features.example_index[start]),
            example_stop=int(features.example_index[stop - 1]) + 1,
            first_span=int(features.span[start]),
        ))
    return plans


def shard_features(
    examples: list[Example],
    plan: ShardPlan,
    tokenizer: Any,
    max_length: int,
    doc_stride: int,
    max_query_length: int | None,
) -> Features:
    """The features of one shard, re-tokenized from only the examples it needs."""
    features = tokenize(
        examples[plan.example_start : plan.example_stop], tokenizer, max_length, doc_stride, max_query_length,
        first_example=plan.example_start, first_feature=plan.feature_start - plan.first_span,
    )
    shard = features.take(slice(plan.first_span, plan.first_span + plan.n_features))
    if len(shard) != plan.n_features or shard.span[0] != plan.first_span:
        raise ValueError(f"shard {plan.index}: the examples no longer tokenize to the planned features")
    return shard
