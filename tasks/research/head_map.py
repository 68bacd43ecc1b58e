"""A map of the heads (after Clark et al. 2019): heads x heads distances from the mean Jensen-Shannon divergence
of their attention (summed in the extraction pass), from their mean embeddings and from their mean pooled maps;
how the distances agree (Spearman correlation of the pairs, Mantel permutation test); a two-dimensional MDS
layout of the heads and a hierarchical clustering of them, set against each head's dominant row cluster."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import csr_matrix
from scipy.spatial.distance import pdist, squareform
from scipy.stats import rankdata
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from tasks.research.statistics import permutation_chunks

MEAN_CHUNK = 1 << 16  # rows summed at a time into the per-head means
DISTANCES = ("js", "embedding", "pooled")  # the head_distances table's distance columns, in this order


@dataclass(frozen=True)
class HeadMap:
    """The pairs table (layer_a, head_a, layer_b, head_b, js, embedding, pooled; NaN where a source is missing),
    the agreement of each two sources (first, second, spearman, p, permutations), the heads' layout (layer, head,
    map_x, map_y and, per clustering, map_group_NAME: its group), the groups' agreement with the dominant clusters (clustering, groups, ari, nmi) and
    which distances the layout and groups come from."""

    distances: pd.DataFrame
    agreement: pd.DataFrame
    layout: pd.DataFrame
    groups: pd.DataFrame
    source: str


def mean_js(js_sum: np.ndarray, features: int) -> np.ndarray:
    """The summed heads x heads Jensen-Shannon matrix over `features` features as a mean, made exactly symmetric
    with a zero diagonal (as MDS and the linkage need)."""
    mean = np.asarray(js_sum, np.float64) / features
    mean = (mean + mean.T) / 2
    np.fill_diagonal(mean, 0.0)
    return mean


def head_means(values: np.ndarray, slot: np.ndarray, n_slots: int) -> np.ndarray:
    """(n_slots, columns): each head's mean row of `values` (NaN for a head without rows), summed a chunk of
    MEAN_CHUNK rows at a time in float64."""
    sums = np.zeros((n_slots, values.shape[1]))
    for start in range(0, len(values), MEAN_CHUNK):
        part = slot[start:start + MEAN_CHUNK]
        onehot = csr_matrix((np.ones(len(part)), (part, np.arange(len(part)))), shape=(n_slots, len(part)))
        sums += onehot @ values[start:start + MEAN_CHUNK].astype(np.float64)
    counts = np.bincount(slot, minlength=n_slots)[:, None]
    with np.errstate(invalid="ignore"):
        return sums / counts


def mean_distances(values: np.ndarray, slot: np.ndarray, n_slots: int) -> np.ndarray:
    """Euclidean distances between the heads' mean rows of `values`."""
    return squareform(pdist(head_means(values, slot, n_slots)))


def mantel(a: np.ndarray, b: np.ndarray, permutations: int, seed: int) -> tuple[float, float]:
    """(Spearman correlation of the two matrices' upper triangles, one-sided Mantel p-value): the heads of `b`
    permuted (rows and columns together, seeded), p = (permutations at least as correlated + 1) /
    (permutations + 1)."""
    n = len(a)
    upper = np.triu_indices(n, 1)
    ra = rankdata(a[upper])
    ra = (ra - ra.mean()) / np.linalg.norm(ra - ra.mean())
    ranks = np.zeros((n, n))
    ranks[upper] = rankdata(b[upper])
    ranks += ranks.T
    centre, norm = ranks[upper].mean(), np.linalg.norm(ranks[upper] - ranks[upper].mean())
    observed = float((ranks[upper] - centre) @ ra / norm)
    rng, extreme = np.random.default_rng(seed), 0
    for count in permutation_chunks(permutations):
        order = np.array([rng.permutation(n) for _ in range(count)])
        permuted = ranks[order[:, upper[0]], order[:, upper[1]]]
        extreme += int(((permuted - centre) @ ra / norm >= observed - 1e-12).sum())
    return observed, (extreme + 1) / (permutations + 1)


def layout(distances: np.ndarray, seed: int) -> np.ndarray:
    """(heads, 2): metric MDS of the distances (scikit-learn, classical MDS as its start, seeded)."""
    from sklearn.manifold import MDS

    return MDS(n_components=2, metric="precomputed", init="classical_mds", random_state=seed).fit_transform(distances)


def head_groups(distances: np.ndarray, count: int) -> np.ndarray:
    """Average-linkage hierarchical clustering of the heads cut into at most `count` groups (1..count)."""
    return fcluster(linkage(squareform(distances, checks=False), method="average"), t=count, criterion="maxclust")


def head_map(sources: dict[str, np.ndarray], dominant: dict[str, np.ndarray], heads: int, permutations: int,
             seed: int) -> HeadMap:
    """The map from heads x heads `sources` (name in DISTANCES -> matrix; the layout and groups from 'js' where
    given, else 'embedding') and each clustering's dominant cluster per head (`dominant`: name -> label per head);
    the groups are cut to as many as there are distinct dominant clusters (none measured below two)."""
    n = len(next(iter(sources.values())))
    a, b = np.triu_indices(n, 1)
    distances = pd.DataFrame({"layer_a": a // heads, "head_a": a % heads, "layer_b": b // heads, "head_b": b % heads})
    for name in DISTANCES:
        distances[name] = sources[name][a, b] if name in sources else np.nan
    agreement = pd.DataFrame([(first, second, *mantel(sources[first], sources[second], permutations, seed),
                               permutations) for first, second in combinations(sources, 2)],
                             columns=["first", "second", "spearman", "p", "permutations"])
    source = "js" if "js" in sources else "embedding"
    xy, slots, records = layout(sources[source], seed), np.arange(n), []
    places = pd.DataFrame({"layer": slots // heads, "head": slots % heads, "map_x": xy[:, 0], "map_y": xy[:, 1]})
    for name, clusters in dominant.items():
        count = len(np.unique(clusters))
        if count < 2:
            continue
        places[f"map_group_{name}"] = groups = head_groups(sources[source], count)
        records.append((name, count, adjusted_rand_score(clusters, groups), normalized_mutual_info_score(clusters, groups)))
    return HeadMap(distances, agreement, places, pd.DataFrame(records, columns=["clustering", "groups", "ari", "nmi"]),
                   source)
