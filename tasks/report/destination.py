"""Which folder a run's outputs may replace whole: one that is absent, holds no files, or holds exactly what a
previous run of this project recorded in its outputs.json; never a dataset folder or a folder above one, a folder
holding anything else, or one that cannot be written. Symlinks are followed: a linked folder is replaced at its
target."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from tasks.errors import InputError
from tasks.storage import Location, StorageError

RECORD = "outputs.json"
FORMAT = "squad-attention-atlas-outputs/1"
SHOWN = 3  # foreign files named in a refusal
# What the cluster and compare runs wrote before outputs.json existed: a folder holding summary.json and report.html
# and nothing but these names is an older version's outputs.
OLDER_OUTPUTS = re.compile(
    r"(report|explorer)\.html|summary\.json|figures/[^/]+\.png|labels\.parquet/part-\d{6}\.parquet|centres_\w+\.npy"
    r"|(heads|head_clusters|agreement|small_clusters|stability|clusters_by_pattern|k_search|dbscan_grid|pca_variance"
    r"|compare|layers)\.(parquet|csv)")


class OutputsRecord(BaseModel):
    """outputs.json: the mark of a folder written by a run of this project, and every file that run wrote."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = FORMAT
    files: list[str]  # relative POSIX paths


class OutputFolderError(InputError):
    """An output folder that may not be replaced: the message names the flag, the folder and what it holds."""


def output_folder(out: str | Path, datasets: Iterable[str] = ()) -> Path:
    """The folder `out` resolves to, once it is safe to replace with a run's outputs; `datasets` are the
    folders or URLs the run reads or writes, which the outputs may sit in but never replace. Raises
    OutputFolderError otherwise."""
    try:
        target = Path(out).expanduser().resolve()
    except (OSError, RuntimeError) as exc:
        raise OutputFolderError(f"--out {out}: cannot be resolved ({exc})") from None
    problem = _dataset_below(target, datasets) or _unwritable(target) or _foreign(target)
    if problem:
        raise OutputFolderError(f"--out {out}: {problem}")
    return target


def record_outputs(folder: Path) -> None:
    """Writes outputs.json into `folder`, listing every file there."""
    record = OutputsRecord(files=sorted(_files(folder)))
    (folder / RECORD).write_text(record.model_dump_json(indent=2))


def _local_path(url: str) -> Path | None:
    parts = urlsplit(url)
    if parts.scheme not in ("", "file"):
        return None
    return Path(parts.path if parts.scheme else url).expanduser().resolve()


def _dataset_below(target: Path, datasets: Iterable[str]) -> str | None:
    for url in datasets:
        path = _local_path(url)
        if path == target:
            return f"is the dataset folder {url}; outputs replace their folder whole: choose another --out"
        if path is not None and target in path.parents:
            return f"holds the dataset folder {url}; outputs replace their folder whole: choose another --out"
    return None


def _unwritable(target: Path) -> str | None:
    if target.exists() and not target.is_dir():
        return f"{target} is a file, not a folder"
    try:
        Location.open(str(target.parent)).check_writable()
    except StorageError as exc:
        return str(exc)
    return None


def _foreign(target: Path) -> str | None:
    if not target.is_dir():
        return None
    written = _recorded(target)
    foreign = list(itertools.islice((f for f in _files(target) if f not in written), SHOWN + 1))
    if not foreign:
        return None
    shown = ", ".join(foreign[:SHOWN]) + (", ..." if len(foreign) > SHOWN else "")
    return (f"holds files no run of this project wrote: {shown}; outputs replace their folder whole: move them "
            f"or choose another --out")


def _recorded(folder: Path) -> set[str]:
    """The files outputs.json lists, and itself; without it, an older version's outputs (OLDER_OUTPUTS) where the
    folder holds that version's summary.json and report.html; else nothing."""
    try:
        record = OutputsRecord.model_validate_json((folder / RECORD).read_bytes())
    except FileNotFoundError:
        if not ((folder / "summary.json").is_file() and (folder / "report.html").is_file()):
            return set()
        return {name for name in _files(folder) if OLDER_OUTPUTS.fullmatch(name)}
    except (OSError, ValidationError):
        return set()
    return {*record.files, RECORD} if record.format == FORMAT else set()


def _files(folder: Path) -> Iterator[str]:
    """Everything under `folder` but folders (files, links, others) as relative POSIX paths, links not followed;
    an unreadable folder is named as such."""
    pending = [folder]
    while pending:
        current = pending.pop(0)
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError:
            yield f"{current.relative_to(folder).as_posix()}/ (unreadable)"
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            else:
                yield Path(entry.path).relative_to(folder).as_posix()
