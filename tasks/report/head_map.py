"""The report's section on representations and the map of heads: the heads' MDS layout coloured by layer, by
pattern and by role, with the tables behind it."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from tasks.report.figures import PLAIN, Chart, png_bytes
from tasks.report.research import PATTERN_COLOURS
from tasks.report.sections import Section
from tasks.research import PATTERNS, Study

TITLE = "Representations and the map of heads"
SOURCES = {"js": "mean Jensen-Shannon divergence of their attention", "embedding": "distance of their mean embeddings"}
LABELLED_HEADS = 200  # each head is written beside its point up to this many heads


def plot_heads_map(heads: pd.DataFrame, source: str) -> Chart:
    """The heads' layout: by layer, by most common pattern (where known) and by Clark role (where known)."""
    panels = ["layer", *(c for c in ("pattern", "roles") if c in heads)]
    fig = Figure(figsize=(5 * len(panels), 4.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    x, y = heads["map_x"].to_numpy(), heads["map_y"].to_numpy()
    for ax, panel in zip(axes, panels):
        if panel == "layer":
            image = ax.scatter(x, y, c=heads["layer"], cmap="viridis", s=28)
            fig.colorbar(image, ax=ax, label="layer")
            if len(heads) <= LABELLED_HEADS:
                for row in heads.itertuples():
                    ax.annotate(f"{row.layer}.{row.head}", (row.map_x, row.map_y), fontsize=5,
                                xytext=(2, 2), textcoords="offset points", **PLAIN)
        else:
            values = heads[panel].fillna("").replace("", "none")
            order = list(PATTERNS) if panel == "pattern" else sorted(values.unique())
            colours = dict(zip(PATTERNS, PATTERN_COLOURS)) if panel == "pattern" else {}
            for index, value in enumerate(v for v in order if (values == v).any()):
                inside = (values == value).to_numpy()
                ax.scatter(x[inside], y[inside], s=28, label=value, color=colours.get(value, f"C{index % 10}"))
            ax.legend(fontsize=7, frameon=False, loc="best")
        ax.set(title=f"by {panel.removesuffix('s')}", xticks=[], yticks=[])
    return Chart("heads_map", f"The heads laid out by metric MDS of the {SOURCES[source]} (labels: layer.head)",
                 png_bytes(fig))


def head_map_caption(study: Study) -> str | None:
    """How the heads' layout was made, for explorer.html; None where there is no map of the heads."""
    if study.head_map is None:
        return None
    return f"Heads laid out by metric MDS of the {SOURCES[study.head_map.source]}; coloured as the grid."


def head_map_sections(study: Study) -> list[Section]:
    """The section, where the dataset holds pooled maps or head JS sums; none otherwise (the findings' notes say
    why)."""
    if study.head_map is None:
        return []
    tables = [] if study.representations is None else [
        ("Representations side by side: each clustering against head, layer and pattern (NMI, ARI), k-nearest-"
         "neighbour head accuracy with its interval, and the clusterings of each two representations (NMI)",
         study.representations)]
    tables += [("Agreement of the heads x heads distances (Spearman, one-sided Mantel permutation p)",
                study.head_map.agreement),
               ("Heads grouped by average linkage, against their dominant row cluster", study.head_map.groups)]
    text = ("Each representation is reduced as the embedding is (standardised, PCA to the run's components where "
            "wider) and clustered as the run clusters, on the same seeded rows; the pattern labels come from the "
            "statistics themselves. Heads x heads distances for every pair are in head_distances.parquet.")
    return [Section(TITLE, text, tables, [plot_heads_map(study.heads, study.head_map.source)])]
