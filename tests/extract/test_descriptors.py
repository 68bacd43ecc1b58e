"""The model-free descriptors: maps pooled to 16 x 16 over their real tokens, and the Jensen-Shannon divergence
between every two heads, against hand-worked cases and float64 references, and as a real extraction writes
them."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch.nn.functional import adaptive_avg_pool2d

from tasks.config import ExtractConfig
from tasks.extract.descriptors import POOLED_SIZE, head_divergence, pooled_maps
from tasks.extract.maps import attention_maps
from tasks.extract.models import qa_model_for, squad_file
from tasks.extract.plan import plan_extraction, resolve
from tasks.extract.shard import extract_shard
from tasks.squad.features import shard_features
from tasks.storage import Location, head_js_sum, pooled_matrix, published_manifests, read_rows

PADDING = 1000.0  # what padding holds in these maps: any of it in a result shows


def _padded(values: torch.Tensor, seq: int) -> torch.Tensor:
    """`values` (..., n, n) in the top-left of (..., seq, seq) maps whose padding rows and columns hold PADDING."""
    n = values.shape[-1]
    maps = torch.full((*values.shape[:-2], seq, seq), PADDING, dtype=values.dtype)
    maps[..., :n, :n] = values
    return maps


def test_pooling_averages_blocks_of_the_real_tokens_and_ignores_padding():
    n = 2 * POOLED_SIZE
    values = torch.arange(n * n, dtype=torch.float32).reshape(1, 1, 1, n, n) / (n * n)
    pooled = pooled_maps(_padded(values, n + 7), torch.tensor([n])).float().reshape(POOLED_SIZE, POOLED_SIZE)
    hand = np.array([[values[0, 0, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean().item() for j in range(POOLED_SIZE)]
                     for i in range(POOLED_SIZE)])
    np.testing.assert_allclose(pooled.numpy(), hand, rtol=1e-3)  # float16 storage


@pytest.mark.parametrize("lengths", [[5, 16, 17], [40, 23, 48]])
def test_pooling_is_adaptive_average_pooling_of_each_real_block(lengths):
    seq = 48
    values = torch.rand(len(lengths), 2, 3, seq, seq)
    maps = torch.stack([_padded(values[f, :, :, :n, :n], seq) for f, n in enumerate(lengths)])
    pooled = pooled_maps(maps, torch.tensor(lengths))
    assert pooled.dtype == torch.float16 and pooled.shape == (len(lengths) * 6, POOLED_SIZE ** 2)
    expected = torch.cat([adaptive_avg_pool2d(values[f, :, :, :n, :n], POOLED_SIZE).reshape(6, -1)
                          for f, n in enumerate(lengths)])
    torch.testing.assert_close(pooled.float(), expected, rtol=1e-3, atol=1e-4)


def _maps(heads: list[list[list[float]]], seq: int) -> torch.Tensor:
    """One feature, one layer: each head's rows of attention over its real keys, in padded maps whose padding
    columns hold 0 (as the model's do) and padding rows PADDING."""
    values = torch.tensor(heads, dtype=torch.float32)[None, None]
    maps = _padded(values, seq)
    maps[..., :values.shape[-1], values.shape[-1]:] = 0.0
    return maps


def test_divergence_of_hand_worked_heads():
    first, second, same, half = [[1, 0], [1, 0]], [[0, 1], [0, 1]], [[1, 0], [1, 0]], [[0.5, 0.5], [1, 0]]
    js = head_divergence(_maps([first, second, same, half], seq=3), [2]).numpy()
    ln2 = math.log(2)
    # JS([1, 0], [0.5, 0.5]) = H([0.75, 0.25]) - (H([1, 0]) + H([0.5, 0.5])) / 2
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) - (0 + ln2) / 2
    expected = np.array([  # each the mean of the two rows' divergences
        [0, ln2, 0, (h + 0) / 2],
        [ln2, 0, ln2, (h + ln2) / 2],
        [0, ln2, 0, (h + 0) / 2],
        [(h + 0) / 2, (h + ln2) / 2, (h + 0) / 2, 0],
    ])
    assert js.dtype == np.float64
    np.testing.assert_allclose(js, expected, atol=1e-6)


def _js(p: list[float] | np.ndarray, q: list[float] | np.ndarray) -> float:
    """Jensen-Shannon divergence in float64, from its definition: the mean KL divergence to the mixture."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = [np.where(x > 0, x * np.log(x / m), 0).sum() for x in (p, q)]
    return float((kl[0] + kl[1]) / 2)


def test_divergence_matches_a_float64_reference_on_padded_random_maps():
    generator = torch.Generator().manual_seed(0)
    lengths, seq, layers, heads = [12, 7, 12], 12, 2, 3
    logits = torch.randn(len(lengths), layers, heads, seq, seq, generator=generator) * 3
    logits[..., ::3] -= 30  # some attention near 0
    real = torch.arange(seq)[None, :] < torch.tensor(lengths)[:, None]
    maps = torch.softmax(logits.masked_fill(~real[:, None, None, None, :], -torch.inf), -1)
    js = head_divergence(maps, lengths, chunk_elements=2 * seq * seq)  # two heads at a time: the chunking too
    reference = np.zeros((layers * heads, layers * heads))
    for f, n in enumerate(lengths):
        p = maps[f].reshape(layers * heads, seq, seq)[:, :n, :n].double().numpy()
        for a in range(layers * heads):
            for b in range(layers * heads):
                reference[a, b] += np.mean([_js(p[a, row], p[b, row]) for row in range(n)])
    # float32 against float64: within 1e-6 nats a feature
    np.testing.assert_allclose(js.numpy(), reference, atol=1e-6 * len(lengths))
    assert (js.numpy() == js.numpy().T).all() and (np.diag(js.numpy()) == 0).all()
    assert reference.max() > 0.3, "heads that differ"


def test_the_compiled_divergence_equals_the_eager_one():
    lengths, seq = [16, 11, 9], 16
    real = torch.arange(seq)[None, :] < torch.tensor(lengths)[:, None]
    logits = torch.randn(len(lengths), 2, 3, seq, seq, generator=torch.Generator().manual_seed(1)) * 2
    maps = torch.softmax(logits.masked_fill(~real[:, None, None, None, :], -torch.inf), -1)
    eager = head_divergence(maps, lengths, chunk_elements=3 * seq * seq)
    torch.testing.assert_close(head_divergence(maps, lengths, 3 * seq * seq, compiled=True), eager, rtol=0, atol=1e-6)


def test_an_extraction_writes_the_pooled_maps_and_the_head_divergences(tmp_path):
    # shard 2 of the embedded sample at 48 tokens: features 8-11, one of them with 43 real tokens
    cfg = resolve(ExtractConfig(model="tiny-random-bert", max_length=48, doc_stride=24, shard_size=4, shards=[2],
                                precision="fp32", compile="off", dest=str(tmp_path / "dataset")))
    plan = plan_extraction(cfg)
    shard = plan.shards[0]
    extract_shard(cfg, shard, plan.record, show_progress=False)
    dataset = Location.open(cfg.dest)
    manifest = published_manifests(dataset, plan.fingerprint)[shard.index]
    table = pa.concat_tables(read_rows(dataset, manifest))
    qa = qa_model_for(cfg)
    features = shard_features(squad_file(cfg).examples, shard, qa.tokenizer, cfg.max_length, cfg.doc_stride,
                              cfg.max_query_length)
    maps = attention_maps(qa.model, *(torch.from_numpy(a).long() for a in (
        features.input_ids, features.attention_mask, features.token_type_ids)))
    lengths = features.attention_mask.sum(1)
    assert lengths.min() < cfg.max_length, "a feature with padding"

    pooled = pooled_matrix(table)
    assert table.schema.field("pooled").type == pa.list_(pa.float16(), POOLED_SIZE ** 2)
    expected = torch.cat([adaptive_avg_pool2d(maps[f, :, :, :n, :n], POOLED_SIZE).reshape(-1, POOLED_SIZE ** 2)
                          for f, n in enumerate(lengths)])
    np.testing.assert_allclose(pooled.astype(np.float32), expected.numpy(), rtol=2e-3, atol=1e-5)

    js, summed = head_js_sum([manifest])
    assert summed == manifest.head_js_features == shard.n_features == len(features) == 4
    np.testing.assert_allclose(js, head_divergence(maps, lengths.tolist()).numpy(), rtol=1e-5, atol=1e-9)
    off_diagonal = ~np.eye(len(js), dtype=bool)
    assert js.shape == (8, 8) and (js == js.T).all() and (np.diag(js) == 0).all() and js[off_diagonal].min() > 0
    assert table.drop_columns(["pooled"]).equals(pa.concat_tables(read_rows(dataset, manifest, exclude=["pooled"])))
