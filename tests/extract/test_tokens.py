"""Token roles of real features: punctuation in the vocabulary, the gold answer's tokens, question and context."""

from __future__ import annotations

import dataclasses

import torch

from tasks.extract.tokens import answer_tokens, is_punctuation, punctuation_ids, token_masks
from tasks.squad.features import tokenize


def test_punctuation_is_recognised_across_word_piece_styles():
    assert all(is_punctuation(t) for t in [".", ",", "##.", "\u0120?", "\u2581\u00bb", "--", "\u3002"])
    assert not any(is_punctuation(t) for t in ["the", "##s", "a.b", "", "##", "1", "$"])


def test_punctuation_table_covers_the_vocabulary(tokenizer):
    table = punctuation_ids(tokenizer)
    assert table.shape == (len(tokenizer),)
    assert table[tokenizer.convert_tokens_to_ids(".")] and table[tokenizer.convert_tokens_to_ids(",")]
    assert not table[tokenizer.convert_tokens_to_ids("the")]


def test_answer_tokens_spell_the_gold_answer(tokenizer, sample):
    examples = sample.examples[:40]
    features = tokenize(examples, tokenizer, 128, 64, 64)
    answers = answer_tokens(features, examples)
    checked = 0
    for row, index in enumerate(features.example_index):
        example = examples[index]
        if example.is_impossible:
            assert not answers[row].any()
            continue
        text, start = example.answers[0]
        inside = features.offsets[row, :, 0]
        whole = (inside >= 0).any() and inside[inside >= 0].min() <= start and features.offsets[row, :, 1].max() >= start + len(text)
        if whole:
            spans = features.offsets[row][answers[row]]
            assert example.context[spans[0, 0]:spans[-1, 1]].lower().find(text.lower().strip()) >= 0
            assert spans[0, 0] <= start and spans[-1, 1] >= start + len(text)
            checked += 1
    assert checked >= 10


def test_token_masks_split_question_context_and_specials(tokenizer, sample):
    examples = sample.examples[:5]
    features = tokenize(examples, tokenizer, 128, 64, 64)
    masks = token_masks(features, examples, tokenizer.cls_token_id, tokenizer.sep_token_id,
                        punctuation_ids(tokenizer), torch.device("cpu"))
    real = torch.from_numpy(features.attention_mask.astype(bool))
    assert torch.equal(masks.real, real)
    assert (masks.cls.sum(-1) == 1).all() and (masks.sep.sum(-1) == 2).all()
    assert not (masks.question & masks.context).any()
    assert torch.equal(masks.question | masks.context | masks.cls | masks.sep, real)
    assert not (masks.answer & ~masks.context).any()
    assert torch.equal(masks.segment_a & masks.context, torch.zeros_like(real))


def test_an_answer_the_context_does_not_hold_marks_no_tokens(tokenizer, sample):
    example = next(e for e in sample.examples if not e.is_impossible)
    text, start = example.answers[0]
    moved = dataclasses.replace(example, answers=((text, start + 1),))
    assert example.context[start + 1 : start + 1 + len(text)] != text
    features = tokenize([example, moved], tokenizer, 128, 64, 64)
    answers = answer_tokens(features, [example, moved])
    assert answers[features.example_index == 0].any()
    assert not answers[features.example_index == 1].any()  # not the shifted, wrong tokens
