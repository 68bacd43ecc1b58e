"""Role rules on the per-map statistics: Clark et al. 2019's "X head" (more than a threshold of the attention on
X) and Kovaleva et al. 2019's pattern classes (vertical, diagonal, vertical+diagonal, block, heterogeneous) from
the masses they are defined by."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.groups import RoleRules

# role -> the statistic holding the attention mass on it (question_to_context and context_to_question are not
# roles: the context holds most tokens, so a uniform map already gives it more than half)
ROLE_MASSES = {"[CLS]": "cls_mass", "[SEP]": "sep_mass", "punctuation": "punct_mass", "previous token": "prev_mass",
               "next token": "next_mass", "self": "diag_mass"}
VERTICAL = ("cls_mass", "sep_mass", "punct_mass")  # whole columns: special tokens and punctuation
DIAGONAL = ("prev_mass", "diag_mass", "next_mass")  # the band around the diagonal
PATTERNS = ("vertical", "diagonal", "vertical+diagonal", "block", "heterogeneous")


def available_roles(statistics: list[str]) -> dict[str, str]:
    """The roles whose mass the dataset holds (format 1 and 2 datasets lack the role statistics)."""
    return {role: stat for role, stat in ROLE_MASSES.items() if stat in statistics}


def has_patterns(statistics: list[str]) -> bool:
    return set(VERTICAL + DIAGONAL + ("segment_focus",)) <= set(statistics)


def map_roles(stats: pd.DataFrame, rules: RoleRules) -> pd.DataFrame:
    """One bool column per available role: the map gives more than `rules.role_threshold` of its attention to it."""
    return pd.DataFrame({role: stats[stat].to_numpy() > rules.role_threshold
                         for role, stat in available_roles(list(stats.columns)).items()}, index=stats.index)


def pattern_codes(stats: pd.DataFrame, rules: RoleRules) -> np.ndarray:
    """Each map's pattern class as an index into PATTERNS, the first rule that holds: vertical mass (VERTICAL)
    above `role_threshold`; diagonal mass (DIAGONAL) above it; both at least `mixed_threshold` and together
    above `role_threshold`; segment focus above `block_threshold`; else heterogeneous."""
    vertical = stats[list(VERTICAL)].to_numpy(np.float64).sum(axis=1)
    diagonal = stats[list(DIAGONAL)].to_numpy(np.float64).sum(axis=1)
    role, mixed = rules.role_threshold, rules.mixed_threshold
    rules_hold = [vertical > role, diagonal > role,
                  (vertical >= mixed) & (diagonal >= mixed) & (vertical + diagonal > role),
                  stats["segment_focus"].to_numpy() > rules.block_threshold]
    return np.select(rules_hold, [0, 1, 2, 3], default=4)


def head_roles(mean_masses: pd.DataFrame, rules: RoleRules) -> pd.Series:
    """Clark's rule on each head's mean masses: the roles (joined by ', ') taking more than `rules.role_threshold`
    of its attention on average; '' for none."""
    roles = available_roles(list(mean_masses.columns))
    return pd.Series([", ".join(role for role, stat in roles.items() if row[stat] > rules.role_threshold)
                      for _, row in mean_masses.iterrows()], index=mean_masses.index, dtype=object)
