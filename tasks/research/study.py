"""The research layer over one clustering run: the heads table, agreements, the findings with their intervals,
stability. Pure: every input is in memory, every output a table or a record."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tasks.cluster import (
    Clustering, DbscanMethod, DensitySettings, MemoryBudget, RefitSettings, is_kmeans, reclustered,
)
from tasks.config import ClusterConfig
from tasks.groups import FindingRules
from tasks.research.agreement import agreement_table, clusters_by_pattern, row_references
from tasks.research.findings import (
    Finding,
    Rows,
    StudyFinding,
    dominant_cluster,
    satellite_evenness,
    small_clusters,
)
from tasks.research.head_map import HeadMap, head_map, mean_distances, mean_js
from tasks.research.heads import Resampling, head_clusters_table, heads_table, slots
from tasks.research.importance import importance_findings, with_importance
from tasks.research.representations import (
    Comparison,
    RepresentationSettings,
    comparable,
    compare_representations,
    compared_rows,
)
from tasks.research.roles import RoleRules, available_roles
from tasks.research.stability import dbscan_stability, kmeans_stability


@dataclass(frozen=True)
class StudySettings:
    rules: RoleRules
    resampling: Resampling
    stability_resamples: int
    kmeans_rows: int
    qa_statistic: str = "cls_mass"
    thresholds: FindingRules = FindingRules()
    representation_rows: int = 20_000
    min_samples: int = 10
    knee_sample: int = 10_000
    density: DensitySettings = DensitySettings(budget_bytes=2**30, exact_rows=10_000, core_sample=20_000, seed=0)

    @classmethod
    def of(cls, config: ClusterConfig) -> StudySettings:
        """A clustering run's settings: its role rules, resamples, seed, finding thresholds, and the DBSCAN
        settings that the representations are clustered with (in the flow's process, alone on the machine once
        the Dask cluster is closed: its memory and every core)."""
        dbscan = config.density
        density = DensitySettings(MemoryBudget.of(config.compute.memory_budget, 1).bytes, dbscan.dbscan_exact_rows,
                                  dbscan.dbscan_core_sample, config.seed, threads=os.cpu_count() or 1)
        return cls(config.roles, Resampling(config.intervals.bootstrap, config.intervals.permutations, config.seed),
                   config.stability_resamples, config.kmeans_rows, config.qa_statistic, config.findings,
                   config.representation_rows, dbscan.min_samples, dbscan.knee_sample, density)

    def representations(self, k: int) -> RepresentationSettings:
        """How the representations are compared, with the run's KMeans k."""
        refit = RefitSettings(k, self.min_samples, self.knee_sample, self.density, self.kmeans_rows)
        return RepresentationSettings(self.representation_rows, refit, self.resampling.bootstrap, self.resampling.seed)


@dataclass
class Study:
    heads: pd.DataFrame
    head_clusters: pd.DataFrame
    agreement: pd.DataFrame
    clusters_by_pattern: pd.DataFrame | None
    small_clusters: pd.DataFrame
    stability: pd.DataFrame
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was left out, and why
    representations: pd.DataFrame | None = None  # None: the dataset has no pooled maps
    head_map: HeadMap | None = None  # None: the dataset has neither head JS sums nor pooled maps


def _ci(numbers: tuple, percent: bool = False) -> str:
    value, low, high = (float(x) for x in numbers)
    return (f"{value:.1%} (95% CI {low:.1%} to {high:.1%})" if percent
            else f"{value:.2f} (95% CI {low:.2f} to {high:.2f})")


def _finding(key: StudyFinding, text: str, numbers: tuple | None, evidence: str) -> Finding:
    value, low, high = (None, None, None) if numbers is None else (
        None if x is None else round(float(x), 6) for x in numbers)
    return Finding(key=key, text=text, value=value, low=low, high=high, evidence=evidence)


def original_findings(rows: Rows, labels: dict[str, np.ndarray], s: StudySettings) -> tuple[list[Finding], pd.DataFrame]:
    """Findings 1-3 of the original study as numbers, and finding 2's per-cluster table."""
    boot, seed = s.resampling.bootstrap, s.resampling.seed
    dbscan = labels[Clustering.DBSCAN]
    first = dominant_cluster(rows, dbscan, boot, seed)
    noise = (f"against {_ci(first['noise_layer'])} for the noise (the noise minus the dominant cluster: "
             f"{_ci(first['layer_gap'])} layers)" if np.isfinite(first["noise_layer"][0]) else "and no row is noise")
    findings = [_finding(StudyFinding.DOMINANT_CLUSTER,
                         f"DBSCAN leaves one dominant cluster holding {_ci(first['share'], True)} of the rows; "
                         f"its rows' mean layer is {_ci(first['layer'])} {noise}.",
                         first["share"], f"section {Clustering.DBSCAN}; heads.parquet (dominant_{Clustering.DBSCAN})")]
    table, shares = small_clusters(rows, dbscan, s.thresholds.small_clusters, boot, seed)
    if shares:
        context = ("" if rows.context is None else f", {_ci(shares['context_share'], True)} from one context (article "
                   "and paragraph)")
        findings.append(_finding(StudyFinding.SMALL_CLUSTERS,
                                 f"The {len(table)} largest DBSCAN clusters after the dominant one hold on average "
                                 f"{_ci(shares['head_share'], True)} of their rows from one head{context}; "
                                 f"{_ci(shares['adjacent_pair_share'], True)} of their member pairs are "
                                 "adjacent features.", shares["head_share"], "small_clusters.parquet"))
    first_level = reclustered(1)
    satellites = satellite_evenness(rows, labels[first_level], boot, seed) if first_level in labels else None
    if satellites:
        k, numbers = satellites
        findings.append(_finding(StudyFinding.SATELLITES,
                                 f"Re-clustering the largest KMeans cluster gives {k} satellite clusters whose heads "
                                 f"are spread with a mean evenness of {_ci(numbers)} (normalised entropy "
                                 "of their heads: 1 when every head is equally present, 0 for a single head).",
                                 numbers, f"section {first_level}; head_clusters.parquet"))
    return findings, table


def _share(value: float) -> str:
    """A threshold share in words: 'half' for 0.5, else a percentage."""
    return "half" if value == 0.5 else f"{value:.0%}"


def head_findings(heads: pd.DataFrame, agreement: pd.DataFrame, n_slots: int, s: StudySettings) -> list[Finding]:
    """Findings on the heads: consistency, roles, agreement with layer and head, QA-specific heads."""
    findings = []
    consistency = f"consistency_{Clustering.DBSCAN}"
    consistent = int((heads[f"dominant_share_{Clustering.DBSCAN}"] > s.thresholds.dominant_share).sum())
    median = (heads[consistency].median(), heads[f"{consistency}_low"].median(), heads[f"{consistency}_high"].median())
    findings.append(_finding(StudyFinding.CONSISTENCY,
                             f"{consistent} of {n_slots} heads put more than {_share(s.thresholds.dominant_share)} of "
                             f"their maps in one DBSCAN cluster; the median head consistency is {_ci(median)}.", median,
                             f"heads.parquet ({consistency}); figure heads-consistency"))
    if "roles" in heads:
        counts = {role: int(heads["roles"].str.contains(role, regex=False).sum()) for role in available_roles(
            [c.removeprefix("mean_") for c in heads.columns if c.startswith("mean_")])}
        named = ", ".join(f"{n} {role}" for role, n in counts.items() if n) or "none"
        patterns = heads["pattern"].value_counts() if "pattern" in heads else pd.Series(dtype=int)
        pattern = f"; the most common pattern is {patterns.index[0]} ({patterns.iloc[0]} heads)" if len(patterns) else ""
        findings.append(_finding(StudyFinding.ROLES,
                                 f"By Clark's rule (more than {_share(s.rules.role_threshold)} of a head's attention "
                                 f"on one target): {named} heads{pattern}.", None,
                                 "heads.parquet (roles, pattern); figure heads-roles"))
    dbscan = agreement[agreement["clustering"] == Clustering.DBSCAN].set_index("against")
    parts = ", ".join(f"{against} NMI {row.nmi:.2f} (ARI {row.ari:.2f})" for against, row in dbscan.iterrows())
    findings.append(_finding(StudyFinding.AGREEMENT, f"DBSCAN's clusters against what each row is: {parts}.", None,
                             "agreement.parquet"))
    if "qa_q" in heads:
        significant = heads[heads["qa_q"] < s.thresholds.qa_alpha]
        top = heads.loc[heads["qa_difference"].abs().idxmax()] if heads["qa_difference"].notna().any() else None
        largest = "" if top is None else (f"; the largest difference is layer {top['layer']} head {top['head']}, "
                                          f"{top['qa_difference']:+.3f}")
        findings.append(_finding(StudyFinding.QA_HEADS,
                                 f"{len(significant)} of {n_slots} heads differ between answerable and "
                                 "unanswerable questions (permutation test per head, Benjamini-Hochberg q < "
                                 f"{s.thresholds.qa_alpha:g}){largest}.", None, "heads.parquet (qa_difference, qa_p, qa_q)"))
    return findings


_REPRESENTATION_NAMES = {"embedding": "the ResNet embedding", "pooled": "pooled maps",
                         "statistics": "the per-map statistics"}
_DISTANCE_NAMES = {"js": "Jensen-Shannon divergences", "embedding": "mean embeddings", "pooled": "mean pooled maps"}
UNAVAILABLE = ("Representations side by side and the map of heads are unavailable: the dataset holds no pooled maps "
               "or head Jensen-Shannon sums (it was extracted before format squad-attention-atlas/4).")
NO_POOLED = "Representations side by side are unavailable: the dataset holds no pooled maps."
NO_JS = ("The map of heads has no Jensen-Shannon distances (a shard's manifest holds no head sums): it is drawn from "
         "the heads' mean embeddings.")


def side_by_side(rows: pd.DataFrame, reduced: np.ndarray, pooled: np.ndarray, statistics: list[str],
                 references: dict[str, np.ndarray], k: int, s: StudySettings) -> tuple[Comparison, Finding]:
    """The representations compared on a seeded choice of rows, and the finding that reads them."""
    settings, seed = s.representations(k), s.resampling.seed
    chosen = compared_rows(len(rows), settings)
    described = {"embedding": reduced[chosen], "pooled": comparable(pooled[chosen], reduced.shape[1], seed)}
    if statistics:
        described["statistics"] = comparable(rows[statistics].iloc[chosen].to_numpy(np.float64), reduced.shape[1],
                                             seed)
    comparison = compare_representations(described, {n: v[chosen] for n, v in references.items()},
                                         rows["feature_id"].to_numpy()[chosen], settings)
    recovered = ", ".join(f"{_ci(comparison.accuracy[n], True)} from {_REPRESENTATION_NAMES[n]}" for n in described)
    table = comparison.table.set_index(["representation", "clustering", "against", "metric"])["value"]
    nmi = ", ".join(f"{n} {table[n, Clustering.KMEANS, 'head', 'nmi']:.2f}" for n in described)
    text = (f"Head identity is recovered from a map's nearest neighbours (feature-grouped cross-validation on "
            f"{comparison.rows:,} rows) at {recovered}, against {comparison.chance:.1%} by chance; KMeans at the "
            f"run's k, fitted on each, has head NMI {nmi}.")
    return comparison, _finding(StudyFinding.REPRESENTATIONS, text, comparison.accuracy["embedding"],
                                "representations.parquet; section Representations and the map of heads")


def heads_map(reduced: np.ndarray, pooled: np.ndarray | None, head_js: tuple[np.ndarray, int] | None,
              slot: np.ndarray, heads_frame: pd.DataFrame, heads: int, s: StudySettings) -> tuple[HeadMap, Finding]:
    """The map of the heads from every distance the dataset allows, and the finding that reads it."""
    n_slots = len(heads_frame)
    sources = {"js": mean_js(*head_js)} if head_js is not None else {}
    sources["embedding"] = mean_distances(reduced, slot, n_slots)
    if pooled is not None:
        sources["pooled"] = mean_distances(pooled, slot, n_slots)
    dominant = {name: heads_frame[f"dominant_{name}"].to_numpy() for name in Clustering
                if f"dominant_{name}" in heads_frame}
    result = head_map(sources, dominant, heads, s.resampling.permutations, s.resampling.seed)
    agree = "; ".join(f"{_DISTANCE_NAMES[r.first]} against {_DISTANCE_NAMES[r.second]}: Spearman {r.spearman:.2f} "
                      f"(Mantel p {r.p:.3g})" for r in result.agreement.itertuples())
    groups = "".join(f"; cut into {r.groups} groups by average linkage, the heads agree with their dominant "
                     f"{r.clustering} cluster at ARI {r.ari:.2f} (NMI {r.nmi:.2f})" for r in result.groups.itertuples())
    first = result.agreement.iloc[0]
    text = (f"Distances between heads ({len(result.layout)} heads; the map from {_DISTANCE_NAMES[result.source]}) "
            f"agree as follows: {agree}{groups}.")
    return result, _finding(StudyFinding.HEAD_DISTANCES, text, (first["spearman"], None, None),
                            "head_distances.parquet; heads.parquet (map_x, map_y); figure heads_map")


def run_study(rows: pd.DataFrame, labels: dict[str, np.ndarray], params: dict[str, dict], reduced: np.ndarray,
              statistics: list[str], layers: int, heads: int, settings: StudySettings,
              facts: pd.DataFrame | None = None, pooled: np.ndarray | None = None,
              head_js: tuple[np.ndarray, int] | None = None, importance: pd.DataFrame | None = None) -> Study:
    """Everything the research layer computes for a clustering run; `facts` (feature_id, context, answerable)
    where the source is known; `pooled` (each row's map pooled to 16 x 16, flat) and `head_js` (the summed heads x
    heads Jensen-Shannon matrix and the features summed) where the dataset holds them."""
    notes = []
    joined = rows[["feature_id"]].merge(facts, on="feature_id", how="left") if facts is not None else None
    facts_rows = Rows(rows["feature_id"].to_numpy(), rows["layer"].to_numpy(), slots(rows, heads), layers * heads,
                      None if joined is None else joined["context"].to_numpy(np.int64))
    answerable = None if joined is None else joined["answerable"].to_numpy(bool)
    references = row_references(rows, statistics, heads, settings.rules)
    table = heads_table(rows, labels, statistics, layers, heads, settings.rules, settings.resampling, answerable,
                        settings.qa_statistic, references.get("pattern"))
    agreement = agreement_table(labels, references)
    by_pattern = clusters_by_pattern(labels, references["pattern"]) if "pattern" in references else None
    findings, small = original_findings(facts_rows, labels, settings)
    findings += head_findings(table, agreement, layers * heads, settings)
    stability = []
    resamples, seed = settings.stability_resamples, settings.resampling.seed
    for name, values in labels.items():
        if is_kmeans(name):
            record = kmeans_stability(reduced, values, facts_rows.feature_id, int(params[name]["k"]), resamples, seed,
                                      settings.kmeans_rows)
        elif params[name]["method"] == DbscanMethod.EXACT:
            record = dbscan_stability(reduced, values, facts_rows.feature_id, params[name]["eps"],
                                      params[name]["min_samples"], resamples, seed)
        else:
            notes.append(f"{name}: stability not measured (DBSCAN++ would re-count every row's neighbourhood for "
                         "each resample)")
            continue
        stability.append({"clustering": name, **record})
    stability_table = pd.DataFrame(stability, columns=["clustering", "ari", "low", "high", "resamples"])
    if len(stability_table):
        text = "; ".join(f"{r.clustering} {_ci((r.ari, r.low, r.high))}" for r in stability_table.itertuples())
        findings.append(_finding(StudyFinding.STABILITY,
                                 f"Re-fitted on {resamples} feature-bootstrap resamples, each clustering agrees with "
                                 f"the full sample's at an adjusted Rand index of: {text}.",
                                 tuple(stability_table.iloc[0][["ari", "low", "high"]]), "stability.parquet"))
    if facts is None:
        notes.append("contexts and answerability unknown: finding 2's context share and the QA tests are left out")
    comparison, mapped = None, None
    if pooled is not None:
        comparison, finding = side_by_side(rows, reduced, pooled, statistics, references,
                                           int(params[Clustering.KMEANS]["k"]), settings)
        findings.append(finding)
    if pooled is not None or head_js is not None:
        mapped, finding = heads_map(reduced, pooled, head_js, facts_rows.slot, table, heads, settings)
        findings.append(finding)
        table = table.join(mapped.layout.drop(columns=["layer", "head"]))
    if importance is not None:
        table = with_importance(table, importance)
        findings += importance_findings(table, labels[Clustering.DBSCAN], settings.resampling)
    if pooled is None or head_js is None:
        notes.append(UNAVAILABLE if pooled is None and head_js is None else NO_POOLED if pooled is None else NO_JS)
    return Study(table, head_clusters_table(rows, labels, layers, heads), agreement, by_pattern, small,
                 stability_table, findings, notes, None if comparison is None else comparison.table, mapped)
