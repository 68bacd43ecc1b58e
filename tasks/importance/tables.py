"""A head-importance run's tables and findings: per head, its gradient importance and the drop in exact match and
F1 when it alone is masked, with intervals; the pruning curves; what they say, as numbers."""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from tasks.importance.progress import GradientRecord, ScoresRecord
from tasks.importance.pruning import IMPORTANCE_ORDER, PruningStep
from tasks.importance.scoring import drop
from tasks.research import Finding


class ImportanceFinding(StrEnum):
    """The keys of a head-importance run's findings, as summary.json records them."""

    ABLATION = "importance-ablation"
    GRADIENT = "importance-gradient"
    PRUNING = "importance-pruning"


def importance_table(gradient: GradientRecord, base: ScoresRecord, ablations: list[ScoresRecord], resamples: int,
                     seed: int) -> pd.DataFrame:
    """One row per (layer, head): importance (per layer normalised) and importance_raw; for the ablated heads
    exact_drop and f1_drop in points with their bootstrap intervals (_low, _high) and the seconds it took; NaN
    for heads not ablated."""
    importance, raw = np.asarray(gradient.importance), np.asarray(gradient.raw)
    layers, heads = importance.shape
    table = pd.DataFrame({"layer": np.repeat(np.arange(layers), heads), "head": np.tile(np.arange(heads), layers),
                          "importance": importance.ravel(), "importance_raw": raw.ravel()})
    columns = [f"{metric}_drop{end}" for metric in ("exact", "f1") for end in ("", "_low", "_high")] + ["seconds"]
    values = np.full((len(table), len(columns)), np.nan)
    for record in ablations:
        (layer, head), = record.masked
        values[layer * heads + head] = [*drop(base.exact, record.exact, resamples, seed),
                                        *drop(base.f1, record.f1, resamples, seed), record.seconds]
    return table.join(pd.DataFrame(values, columns=columns))


def pruning_table(base: ScoresRecord, steps: list[PruningStep], curves: list[ScoresRecord], n_heads: int
                  ) -> pd.DataFrame:
    """One row per order and step (masked = 0 is the unmasked model, in every order): heads masked, their share,
    exact and F1 in percent; `curves` are the scores of `steps`, step for step."""
    rows = [{"order": order, "masked": 0, **base.scores.metrics()} for order in dict.fromkeys(s.order for s in steps)]
    rows += [{"order": step.order, "masked": len(step.masked), **record.scores.metrics()}
             for step, record in zip(steps, curves, strict=True)]
    table = pd.DataFrame(rows).sort_values(["order", "masked"], kind="stable", ignore_index=True)
    table.insert(2, "fraction", table["masked"] / n_heads)
    return table


def _ablation_finding(table: pd.DataFrame) -> Finding | None:
    ablated = table.dropna(subset=["f1_drop"])
    if ablated.empty:
        return None
    top = ablated.loc[ablated["f1_drop"].idxmax()]
    if top["f1_drop"] <= 0:
        return Finding(key=ImportanceFinding.ABLATION, text=(
            f"No head alone costs F1: masking any one of the {len(ablated)} heads ablated leaves every answer's F1 "
            "as it was or better."), value=float(top["f1_drop"]), low=float(top["f1_drop_low"]),
            high=float(top["f1_drop_high"]), evidence="importance.parquet")
    clear = int((ablated["f1_drop_low"] > 0).sum())
    return Finding(key=ImportanceFinding.ABLATION, text=(
        f"Masking head {int(top['layer'])}.{int(top['head'])} alone costs the most F1: {top['f1_drop']:.2f} points "
        f"[{top['f1_drop_low']:.2f}, {top['f1_drop_high']:.2f}]; {clear} of {len(ablated)} heads ablated cost F1 "
        "beyond their 95% interval."), value=float(top["f1_drop"]), low=float(top["f1_drop_low"]),
        high=float(top["f1_drop_high"]), evidence="importance.parquet")


def _gradient_finding(table: pd.DataFrame) -> Finding | None:
    ablated = table.dropna(subset=["f1_drop"])
    if len(ablated) < 3 or ablated["f1_drop"].nunique() < 2:
        return None
    rho = float(spearmanr(ablated["importance"], ablated["f1_drop"]).statistic)
    return Finding(key=ImportanceFinding.GRADIENT, text=(
        f"Gradient importance ranks the {len(ablated)} ablated heads as their F1 drops do with Spearman "
        f"rho {rho:.2f}."), value=rho, low=None, high=None, evidence="importance.parquet")


def _pruning_finding(pruning: pd.DataFrame) -> Finding | None:
    steps = pruning[pruning["masked"] > 0]
    if steps.empty:
        return None
    half = steps.loc[(steps["fraction"] - 0.5).abs().idxmin(), "masked"]
    at_half = steps[steps["masked"] == half]
    by_importance = float(at_half.loc[at_half["order"] == IMPORTANCE_ORDER, "f1"].iloc[0])
    random = at_half.loc[at_half["order"] != IMPORTANCE_ORDER, "f1"]
    unmasked = float(pruning.loc[pruning["masked"] == 0, "f1"].iloc[0])
    return Finding(key=ImportanceFinding.PRUNING, text=(
        f"With {half} heads masked ({100 * half / pruning['masked'].max():.0f}%), least important first, F1 is "
        f"{by_importance:.2f} (unmasked {unmasked:.2f}); in {len(random)} random orders {random.mean():.2f} "
        f"(from {random.min():.2f} to {random.max():.2f})."), value=by_importance, low=None, high=None,
        evidence="pruning.parquet")


def importance_findings(table: pd.DataFrame, pruning: pd.DataFrame) -> list[Finding]:
    """The run's findings: the costliest head, whether the gradient ranks heads as ablation does, the pruning
    curve at half the heads against random orders."""
    found = [_ablation_finding(table), _gradient_finding(table), _pruning_finding(pruning)]
    return [finding for finding in found if finding is not None]
