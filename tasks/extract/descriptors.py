"""Model-free descriptions of attention maps, computed on the device beside the embedding: each map average-pooled
to a small fixed grid over its real tokens, and the Jensen-Shannon divergence between every two heads' attention
(Clark et al. 2019). Both take each feature's real token count: its tokens come first, padding after."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

POOLED_SIZE = 16  # the pooled map is POOLED_SIZE x POOLED_SIZE
JS_CHUNK_ELEMENTS = 1 << 22  # the most map elements one step of the divergence holds (16 MB of float32)


def pooling_weights(lengths: torch.Tensor, seq: int, size: int = POOLED_SIZE) -> torch.Tensor:
    """(features, size, seq): row i averages the tokens [floor(i n / size), ceil((i + 1) n / size)) of a feature
    with n = `lengths[f]` real tokens, the bins of torch's adaptive average pooling; padding weighs nothing."""
    bins = torch.arange(size, device=lengths.device)
    n = lengths.long()[:, None]
    start, stop = bins * n // size, ((bins + 1) * n + size - 1) // size
    tokens = torch.arange(seq, device=lengths.device)
    inside = (tokens >= start[..., None]) & (tokens < stop[..., None])
    return inside.float() / (stop - start)[..., None].float()


def pooled_maps(maps: torch.Tensor, lengths: torch.Tensor, size: int = POOLED_SIZE) -> torch.Tensor:
    """Each map (features, layers, heads, seq, seq) average-pooled over its real tokens' n x n block to size x size
    (adaptive average pooling), row-major: (features * layers * heads, size * size) float16."""
    weights = pooling_weights(lengths, maps.shape[-1], size)[:, None, None]
    pooled = weights @ maps.float() @ weights.transpose(-1, -2)
    return pooled.flatten(-2).flatten(0, 2).half()


def _xlogx_rows(x: torch.Tensor) -> torch.Tensor:
    """The sum over the last axis of x log x, 0 where x is 0: the log's argument is clamped to the smallest normal
    float, which changes no term by more than 1e-36."""
    return x.clamp_min(torch.finfo(x.dtype).tiny).log_().mul_(x).sum(-1)


def _pair_rows(p_b: torch.Tensor, p_a: torch.Tensor, entropy_b: torch.Tensor, entropy_a: torch.Tensor,
               mass_b: torch.Tensor, mass_a: torch.Tensor) -> torch.Tensor:
    """The divergence of head a (p_a: rows x keys) from each head b (p_b: heads x rows x keys), averaged over the
    rows, given each row's entropy and mass: H((P + Q) / 2) = (H(P + Q) + ln 2 * sum (P + Q)) / 2."""
    mixed = (math.log(2) * (mass_b + mass_a) - _xlogx_rows(p_b + p_a)) / 2
    return (mixed - (entropy_b + entropy_a) / 2).clamp(0.0, math.log(2)).mean(-1)


@functools.cache
def _compiled_pair_rows():
    """`_pair_rows` compiled once per process: one fused pass over the maps instead of one per operation."""
    return torch.compile(_pair_rows, dynamic=True)


def head_divergence(maps: torch.Tensor, lengths: Sequence[int], chunk_elements: int = JS_CHUNK_ELEMENTS,
                    compiled: bool = False) -> torch.Tensor:
    """The sum over the features of `maps` (features, layers, heads, seq, seq) of the Jensen-Shannon divergence
    (nats, in [0, ln 2]) between every two heads' attention distributions over the real keys, per real query row,
    averaged over those rows: a symmetric (layers * heads)^2 float64 matrix with a zero diagonal, heads flat as
    layer * heads + head. `lengths`: each feature's real token count.

    Computed in float32 as JS(P, Q) = H((P + Q) / 2) - (H(P) + H(Q)) / 2, each row's value clamped to [0, ln 2]
    against rounding; one head against the later heads at a time, at most `chunk_elements` map elements at once;
    with `compiled`, each step is one torch.compile'd kernel."""
    step_rows = _compiled_pair_rows() if compiled else _pair_rows
    features, layers, heads, seq, _ = maps.shape
    count = layers * heads
    total = torch.zeros((count, count), dtype=torch.float64, device=maps.device)
    for feature, n in zip(maps, lengths):
        p = feature.reshape(count, seq, seq)[:, :n, :n].float().contiguous()
        step = max(1, min(count, chunk_elements // max(n * n, 1)))
        entropy = -torch.cat([_xlogx_rows(p[i:i + step]) for i in range(0, count, step)])  # (heads, rows)
        mass = p.sum(-1)  # 1 a row where its attention is all on real keys
        upper = torch.zeros((count, count), dtype=torch.float32, device=maps.device)
        for a in range(count - 1):
            for start in range(a + 1, count, step):
                b = slice(start, min(start + step, count))
                upper[a, b] = step_rows(p[b], p[a], entropy[b], entropy[a], mass[b], mass[a])
        total += (upper + upper.T).double()
    return total
