"""The comparison's findings as sentences with numbers and 95% feature-bootstrap intervals: where in the depth
the heads moved (first against last third of the layers, Kovaleva et al. 2019), which heads changed, how many
rows changed cluster, which roles came and went, and the largest change of a per-map statistic."""

from __future__ import annotations

import math
from enum import StrEnum

import numpy as np
import pandas as pd

from tasks.compare.tables import Comparison
from tasks.config import CompareConfig
from tasks.research import Finding

HEADS_NAMED = 10  # heads listed by name in a finding


class CompareFinding(StrEnum):
    """The keys of a comparison's findings, as its summary.json records them."""

    DEPTH = "depth"
    CHANGED_HEADS = "changed_heads"
    MIGRATION = "migration"
    ROLES = "roles"
    STATISTIC = "statistic"


def _interval(estimate: float, low: float, high: float) -> str:
    return f"{estimate:.3g} (95% CI {low:.3g} to {high:.3g})"


def _name(row) -> str:
    return f"L{row.layer}H{row.head}"


def thirds(n_layers: int) -> np.ndarray:
    """Each layer's third: 0 the first ceil(L/3) layers, 2 the last ceil(L/3), 1 those between."""
    size = math.ceil(n_layers / 3)
    layer = np.arange(n_layers)
    return np.where(layer < size, 0, np.where(layer >= n_layers - size, 2, 1))


def _span(layers: np.ndarray) -> str:
    return f"L{layers[0]}" if len(layers) == 1 else f"L{layers[0]}-L{layers[-1]}"


def depth_finding(comparison: Comparison, cfg: CompareConfig) -> Finding | None:
    """Mean paired displacement in the first and the last third of the layers, and their difference."""
    if comparison.n_layers < 2:
        return None
    third = thirds(comparison.n_layers)
    column = comparison.grid.columns.index("displacement")

    def numbers(means: np.ndarray) -> np.ndarray:
        return np.array([means[0, column], means[1, column], means[2, column], means[2, column] - means[0, column]])

    estimate, low, high = comparison.grid.group_means(np.repeat(third, comparison.n_heads), 3,
                                                      cfg.intervals.bootstrap, cfg.seed, combine=numbers)
    names = ["first", "middle", "last"]
    present = [i for i in range(3) if (third == i).any()]
    most = names[max(present, key=lambda i: estimate[i])]
    layers = np.arange(comparison.n_layers)
    parts = [f"{names[i]} ({_span(layers[third == i])}) {_interval(estimate[i], low[i], high[i])}" for i in present]
    text = (f"The {most} third of the layers changed most. Mean distance between a feature's A and B rows in the "
            f"joint PCA space, by thirds of the layers: {'; '.join(parts)}; last minus first "
            f"{_interval(estimate[3], low[3], high[3])}.")
    return Finding(key=CompareFinding.DEPTH, text=text, value=float(estimate[3]), low=float(low[3]),
                   high=float(high[3]), evidence="layers.csv: displacement; compare.csv: displacement")


def smallest_p(features: int, permutations: int) -> float:
    """The smallest p-value a swap test can give: swapping A and B in all of a head's features gives the same
    energy distance, so there are 2^(features - 1) distinct swaps, and a p-value is at least 1 / (1 + permutations)."""
    return max(2.0 ** -(max(features, 1) - 1), 1 / (1 + permutations))


def changed_heads_finding(heads: pd.DataFrame, features: int, cfg: CompareConfig) -> Finding:
    changed = heads[heads["changed"]].sort_values("energy_distance", ascending=False)
    listed = ", ".join(_name(r) for r in changed.head(HEADS_NAMED).itertuples())
    more = f" and {len(changed) - HEADS_NAMED} more" if len(changed) > HEADS_NAMED else ""
    used = min(features, cfg.distance_rows)
    floor = smallest_p(used, cfg.intervals.permutations)
    limit = (f" With {used} features a head's p-value cannot go below {floor:.3g}, so one head alone cannot reach "
             f"q < {cfg.alpha:g} among {len(heads)}." if changed.empty and floor * len(heads) >= cfg.alpha else "")
    text = (f"{len(changed)} of {len(heads)} heads changed: their rows in B are further from their rows in A than "
            f"swapping A and B within features gives (energy distance, Benjamini-Hochberg q < {cfg.alpha:g}, "
            f"{cfg.intervals.permutations} permutations){': ' + listed + more if listed else ''}.{limit}")
    return Finding(key=CompareFinding.CHANGED_HEADS, text=text, value=len(changed) / max(len(heads), 1), low=None,
                   high=None,
                   evidence="compare.csv: energy_distance, energy_p, energy_q, changed")


def migration_finding(comparison: Comparison, cfg: CompareConfig) -> Finding:
    """Share of rows whose joint cluster differs between A and B, overall and in the layer where most do."""
    column = comparison.grid.columns.index("migration")
    n_slots = comparison.n_layers * comparison.n_heads
    estimate, low, high = comparison.grid.group_means(np.zeros(n_slots, int), 1, cfg.intervals.bootstrap, cfg.seed)
    layers = comparison.layers
    top = layers.loc[layers["migration"].idxmax()]
    migrated = int(comparison.heads["migrated"].sum())
    text = (f"A share of {_interval(estimate[0, column], low[0, column], high[0, column])} of the rows change cluster when "
            f"the rows of both datasets are clustered together (KMeans, k = {cfg.k}); most in layer "
            f"{int(top['layer'])}: {_interval(top['migration'], top['migration_low'], top['migration_high'])}. "
            f"{migrated} heads' cluster shares changed (permutation q < {cfg.alpha:g}).")
    return Finding(key=CompareFinding.MIGRATION, text=text, value=float(estimate[0, column]), low=float(low[0, column]),
                   high=float(high[0, column]), evidence="compare.csv: migration, cluster_shift_q, migrated; layers.csv")


def roles_finding(heads: pd.DataFrame) -> Finding | None:
    if "roles_gained" not in heads:
        return None
    changes = [f"{_name(r)} {'+' + r.roles_gained if r.roles_gained else ''}{' -' + r.roles_lost if r.roles_lost else ''}"
               for r in heads.itertuples() if r.roles_gained or r.roles_lost]
    text = f"{len(changes)} heads gained or lost a role (Clark's rule on their mean masses)"
    text += f": {', '.join(changes[:HEADS_NAMED])}" + (" ..." if len(changes) > HEADS_NAMED else "") if changes else ""
    if "pattern_a" in heads:
        text += f"; {int((heads['pattern_a'] != heads['pattern_b']).sum())} changed their most common pattern"
    return Finding(key=CompareFinding.ROLES, text=text + ".", value=float(len(changes)), low=None, high=None,
                   evidence="compare.csv: roles_a, roles_b, roles_gained, roles_lost, pattern_a, pattern_b")


def statistic_finding(layers: pd.DataFrame) -> Finding | None:
    """The per-map statistic and layer with the largest mean change."""
    columns = [c for c in layers if c.startswith("delta_") and not c.endswith(("_low", "_high"))]
    if not columns:
        return None
    values = layers[columns].abs()
    if values.isna().all().all():
        return None
    column = values.max().idxmax()
    row = layers.loc[values[column].idxmax()]
    text = (f"The largest change of a per-map statistic: {column.removeprefix('delta_')} in layer "
            f"{int(row['layer'])}, mean B minus A {_interval(row[column], row[column + '_low'], row[column + '_high'])}.")
    return Finding(key=CompareFinding.STATISTIC, text=text, value=float(row[column]), low=float(row[column + "_low"]),
                   high=float(row[column + "_high"]), evidence=f"layers.csv: {column}; compare.csv: {column}")


def compare_findings(comparison: Comparison, cfg: CompareConfig) -> list[Finding]:
    features = comparison.grid.values.shape[0]
    found = [depth_finding(comparison, cfg), changed_heads_finding(comparison.heads, features, cfg),
             migration_finding(comparison, cfg), roles_finding(comparison.heads), statistic_finding(comparison.layers)]
    return [f for f in found if f is not None]
