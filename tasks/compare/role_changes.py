"""What changed in each head's roles and patterns: Clark's roles on A's and B's mean masses (gained, lost) and
Kovaleva's pattern classes (the most common in each, and how far the pattern shares moved)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.research import PATTERNS, RoleRules, available_roles, has_patterns, head_roles, pattern_codes


def head_means(stats: pd.DataFrame, slot: np.ndarray, n_slots: int) -> pd.DataFrame:
    """Each statistic's mean per slot (NaN rows for a slot without rows)."""
    return stats.groupby(slot).mean().reindex(range(n_slots))


def _roles(text: str) -> list[str]:
    return [role for role in text.split(", ") if role]


def role_changes(means_a: pd.DataFrame, means_b: pd.DataFrame, rules: RoleRules) -> pd.DataFrame:
    """Per slot: roles_a, roles_b (', '-joined), roles_gained, roles_lost; empty where the datasets lack the
    role masses."""
    if not available_roles(list(means_a.columns)):
        return pd.DataFrame(index=means_a.index)
    a, b = head_roles(means_a, rules), head_roles(means_b, rules)
    gained = [", ".join(r for r in _roles(after) if r not in _roles(before)) for before, after in zip(a, b)]
    lost = [", ".join(r for r in _roles(before) if r not in _roles(after)) for before, after in zip(a, b)]
    return pd.DataFrame({"roles_a": a, "roles_b": b, "roles_gained": gained, "roles_lost": lost}, index=means_a.index)


def pattern_shares(stats: pd.DataFrame, slot: np.ndarray, n_slots: int, rules: RoleRules) -> np.ndarray:
    """(slots, patterns): the share of each slot's maps in each pattern class."""
    codes = pattern_codes(stats, rules)
    counts = np.bincount(slot * len(PATTERNS) + codes, minlength=n_slots * len(PATTERNS)).reshape(n_slots, -1)
    return counts / np.maximum(1, counts.sum(1, keepdims=True))


def pattern_changes(stats_a: pd.DataFrame, stats_b: pd.DataFrame, slot: np.ndarray, n_slots: int,
                    rules: RoleRules) -> pd.DataFrame:
    """Per slot: pattern_a, pattern_b (most common class), pattern_shift (total variation distance between the
    pattern shares) and share_<pattern>_change (B minus A); empty where the datasets lack the pattern masses."""
    if not has_patterns(list(stats_a.columns)):
        return pd.DataFrame(index=range(n_slots))
    a, b = pattern_shares(stats_a, slot, n_slots, rules), pattern_shares(stats_b, slot, n_slots, rules)
    table = pd.DataFrame({"pattern_a": np.asarray(PATTERNS)[a.argmax(1)], "pattern_b": np.asarray(PATTERNS)[b.argmax(1)],
                          "pattern_shift": 0.5 * np.abs(b - a).sum(1)})
    for i, name in enumerate(PATTERNS):
        table[f"share_{name}_change"] = b[:, i] - a[:, i]
    return table
