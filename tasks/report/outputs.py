"""A clustering run's outputs written whole: labels, search tables, centres, figures, summary.json, report.html,
explorer.html."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tasks.cluster import ClusteringRun, Sample
from tasks.report.explorer import ExplorerData
from tasks.report.sections import Section
from tasks.report.staging import swapped_in, write_pages, write_tables
from tasks.report.summary import ClusterSummary
from tasks.report.tables import label_parts
from tasks.research import Study


def write_outputs(out: Path, sample: Sample, run: ClusteringRun, study: Study, summary: ClusterSummary,
                  sections: list[Section], explorer: ExplorerData) -> Path:
    """Writes every output into a staging folder beside `out`, then swaps it in whole; returns report.html."""
    out = Path(out)
    with swapped_in(out) as staging:
        (staging / "labels.parquet").mkdir()
        for shard, table in label_parts(sample, run.labels):
            pq.write_table(table, staging / "labels.parquet" / f"part-{shard:06d}.parquet")
        research = [("heads", study.heads), ("head_clusters", study.head_clusters), ("agreement", study.agreement),
                    ("small_clusters", study.small_clusters), ("stability", study.stability)]
        if study.clusters_by_pattern is not None:
            research.append(("clusters_by_pattern", study.clusters_by_pattern))
        if study.representations is not None:
            research.append(("representations", study.representations))
        if study.head_map is not None:
            research.append(("head_distances", study.head_map.distances))
        variance = pd.DataFrame({"component": np.arange(1, len(run.explained_variance) + 1),
                                 "explained_variance_ratio": run.explained_variance})
        write_tables(staging, [("k_search", run.k_table), ("dbscan_grid", run.grid), *research,
                               ("pca_variance", variance)])
        for name, centres in run.centres.items():
            np.save(staging / f"centres_{name}.npy", centres)
        write_pages(staging, "Attention-head clusters", summary.to_json(), sections, explorer)
    return out / "report.html"
