"""Head importance joined to the atlas: a head-importance run's columns beside each head's clusters, roles and
patterns, and what they say together: whether the heads that matter to the answers are the consistent ones, the
ones of a role or pattern, or the ones that sit in the dominant cluster."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, spearmanr

from tasks.cluster import Clustering
from tasks.research.findings import Finding, StudyFinding
from tasks.research.heads import Resampling
from tasks.research.statistics import bootstrap_interval

IMPORTANCE_COLUMNS = ("importance", "importance_raw", "exact_drop", "exact_drop_low", "exact_drop_high", "f1_drop",
                      "f1_drop_low", "f1_drop_high")
EVIDENCE = "heads.parquet (importance, f1_drop); figure heads_importance"


def with_importance(heads: pd.DataFrame, importance: pd.DataFrame) -> pd.DataFrame:
    """The heads table with the importance run's columns joined on (layer, head)."""
    columns = ["layer", "head", *[c for c in IMPORTANCE_COLUMNS if c in importance]]
    return heads.merge(importance[columns], on=["layer", "head"], how="left", validate="one_to_one")


def _heads_drawn(weights: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(weights)), weights.astype(np.int64))


def _rank_correlation(heads: pd.DataFrame, column: str, against: str, r: Resampling) -> tuple[float, float, float]:
    values = heads[[column, against]].dropna().to_numpy(np.float64)

    def rho(weights: np.ndarray) -> float:
        drawn = values[_heads_drawn(weights)]
        if np.ptp(drawn, axis=0).min() == 0:
            return np.nan  # a resample of heads that all tie on one side: no rank correlation, left out
        return float(spearmanr(drawn[:, 0], drawn[:, 1]).statistic)

    estimate, low, high = bootstrap_interval(rho, np.arange(len(values)), r.bootstrap, r.seed)
    return float(estimate), float(low), float(high)


def _consistency_finding(heads: pd.DataFrame, r: Resampling) -> Finding | None:
    consistency = f"consistency_{Clustering.DBSCAN}"
    measured = [c for c in ("importance", "f1_drop")
                if c in heads and heads[[c, consistency]].dropna().nunique().min() > 1]
    if consistency not in heads or not measured:
        return None
    numbers = {c: _rank_correlation(heads, c, consistency, r) for c in measured}
    names = {"importance": "gradient importance", "f1_drop": "F1 drop when ablated"}
    text = "; ".join(f"{names[c]} {v:+.2f} (95% CI {lo:+.2f} to {hi:+.2f})" for c, (v, lo, hi) in numbers.items())
    value, low, high = numbers[measured[0]]
    return Finding(key=StudyFinding.IMPORTANCE_CONSISTENCY, text=(
        f"Rank correlation (Spearman, head bootstrap) of each head's DBSCAN consistency with its {text}."),
        value=value, low=low, high=high, evidence=EVIDENCE)


def _classes(heads: pd.DataFrame) -> dict[str, np.ndarray]:
    classes = {}
    if "pattern" in heads:
        classes |= {f"pattern {p}": (heads["pattern"] == p).to_numpy() for p in heads["pattern"].dropna().unique()}
    if "roles" in heads:
        roles = {role for cell in heads["roles"].dropna() for role in str(cell).split(", ") if role}
        classes |= {f"role {role}": heads["roles"].fillna("").str.split(", ").apply(lambda c, x=role: x in c).to_numpy()
                    for role in sorted(roles)}
    return classes


def _roles_finding(heads: pd.DataFrame) -> Finding | None:
    known = heads.dropna(subset=["importance"])
    rows = []
    for name, inside in _classes(known).items():
        if 0 < inside.sum() < len(inside):
            u = mannwhitneyu(known["importance"][inside], known["importance"][~inside]).statistic
            rows.append((name, int(inside.sum()), 2 * u / (inside.sum() * (~inside).sum()) - 1))
    if not rows:
        return None
    rows.sort(key=lambda row: -abs(row[2]))
    text = ", ".join(f"{name} ({n} heads) {rank:+.2f}" for name, n, rank in rows)
    return Finding(key=StudyFinding.IMPORTANCE_ROLES, text=(
        "Gradient importance of the heads of each pattern and role against the other heads (rank-biserial "
        f"correlation, +1: all more important): {text}."), value=float(rows[0][2]), low=None, high=None,
        evidence="heads.parquet (importance, pattern, roles)")


def _dominant_finding(heads: pd.DataFrame, dbscan: np.ndarray, r: Resampling) -> Finding | None:
    kept = dbscan[dbscan >= 0]
    column, share = f"dominant_{Clustering.DBSCAN}", f"dominant_share_{Clustering.DBSCAN}"
    if not len(kept) or "f1_drop" not in heads or column not in heads:
        return None
    largest = int(np.bincount(kept).argmax())
    ablated = heads.dropna(subset=["f1_drop"])
    inside = ((ablated[column] == largest) & (ablated[share] > 0.5)).to_numpy()
    if not 0 < inside.sum() < len(inside):
        return None
    drops = ablated["f1_drop"].to_numpy(np.float64)

    def difference(weights: np.ndarray) -> float:
        w_in, w_out = weights[inside], weights[~inside]
        if not w_in.sum() or not w_out.sum():
            return np.nan  # a resample without heads on one side: left out of the interval
        return float(w_in @ drops[inside] / w_in.sum() - w_out @ drops[~inside] / w_out.sum())

    value, low, high = bootstrap_interval(difference, np.arange(len(drops)), r.bootstrap, r.seed)
    return Finding(key=StudyFinding.IMPORTANCE_DOMINANT, text=(
        f"The {int(inside.sum())} heads with most of their maps in the dominant DBSCAN cluster cost "
        f"{drops[inside].mean():.2f} F1 points when ablated, the other {int((~inside).sum())} "
        f"{drops[~inside].mean():.2f}: a difference of {float(value):+.2f} (95% CI {float(low):+.2f} to "
        f"{float(high):+.2f}, head bootstrap)."), value=float(value), low=float(low), high=float(high),
        evidence=EVIDENCE)


def importance_findings(heads: pd.DataFrame, dbscan: np.ndarray, r: Resampling) -> list[Finding]:
    """What head importance says beside the atlas (keys starting `importance`): its rank correlation with
    consistency, with pattern and roles, and the F1 drop of the heads that sit in the dominant DBSCAN cluster
    against the rest. `dbscan`: every row's DBSCAN label."""
    found = [_consistency_finding(heads, r), _roles_finding(heads), _dominant_finding(heads, dbscan, r)]
    return [finding for finding in found if finding is not None]
