"""The whole study in one flow run: extraction, then clustering and the report, as two subflows.

`python flows/full.py` runs the shipped `demo` sample offline and prints the report's path; it takes every flag of
flows/extract.py and flows/cluster.py (the dataset clustered is the one extracted to --dest)."""

from __future__ import annotations

import flows  # noqa: F401  (first: Prefect's environment, flows/__init__.py, also when run as a script)

import sys
from pathlib import Path
from typing import Sequence

from prefect import flow

from flows.cluster import cluster
from flows.extract import extract
from flows.command import run_command
from tasks.cli import configs_from_args
from tasks.config import ClusterConfig, ExtractConfig
from tasks.preflight import check_full
from tasks.report import output_folder


@flow(name="full")
def full(extraction: ExtractConfig = ExtractConfig(), clustering: ClusterConfig = ClusterConfig()) -> dict:
    """Extracts `extraction.dest` (or the new version there), then clusters that dataset; an --out that would
    replace the destination is refused first."""
    output_folder(clustering.out, [extraction.dest])
    extracted = extract(extraction)
    clustered = cluster(clustering.model_copy(update={"dataset": extracted["dest"], "newest": False}))
    return {"extraction": extracted, "report": clustered["report"], "clustering": clustered["summary"]}


def main(argv: Sequence[str] | None = None, checked: bool = False) -> dict:
    """The flow from the command line; `checked`: the inputs were checked already (by `atlas`)."""
    extraction, clustering = configs_from_args([ExtractConfig, ClusterConfig], __doc__.splitlines()[0], argv,
                                               exclude=["dataset", "newest"])
    result = run_command(full, extraction, clustering, check=check_full, checked=checked)
    print(f"Report: {Path(result['report']).resolve()}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
