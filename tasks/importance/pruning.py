"""The pruning curve (Michel et al. 2019): heads masked in order of importance, least important first, the
answers scored after each step, against seeded random orders of the same heads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

IMPORTANCE_ORDER = "importance"


@dataclass(frozen=True)
class PruningStep:
    """One point of a curve: which order, and the heads (layer, head) it masks."""

    order: str
    masked: tuple[tuple[int, int], ...]

    @property
    def name(self) -> str:
        return f"prune-{self.order}-{len(self.masked)}"


def step_sizes(n_heads: int, steps: int) -> list[int]:
    """Heads masked at each of `steps` equal steps up to every head, without repeats."""
    return sorted({round(n_heads * (i + 1) / steps) for i in range(steps)} - {0})


def pruning_steps(importance: np.ndarray, steps: int, random_orders: int, seed: int) -> list[PruningStep]:
    """Every step of the importance order (least important head first; ties in row-major order) and of
    `random_orders` seeded random orders."""
    layers, heads = importance.shape
    cells = [(int(i) // heads, int(i) % heads) for i in range(layers * heads)]
    orders = {IMPORTANCE_ORDER: np.argsort(importance.ravel(), kind="stable")}
    for i in range(random_orders):
        orders[f"random{i + 1}"] = np.random.default_rng([seed, i]).permutation(layers * heads)
    return [PruningStep(name, tuple(cells[j] for j in order[:size]))
            for name, order in orders.items() for size in step_sizes(layers * heads, steps)]


def mask_of(masked: tuple[tuple[int, int], ...] | list[tuple[int, int]], layers: int, heads: int) -> torch.Tensor:
    """The layers x heads mask that removes the heads `masked` and keeps the others."""
    mask = torch.ones(layers, heads)
    for layer, head in masked:
        mask[layer, head] = 0
    return mask
