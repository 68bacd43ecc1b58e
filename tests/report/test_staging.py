"""An output folder replaced whole, and only where that loses nothing: absent, holding no files, or holding exactly
a previous run's outputs. A dataset, a folder above one, a user's files and a file in the way are refused by name
and left byte for byte; a symlinked folder is replaced at its target and keeps its link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.errors import InputError
from tasks.report.staging import swapped_in


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (links not followed) and its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def _write(out: Path, text: str) -> None:
    """A run's outputs: report.html and figures/a.png holding `text`."""
    with swapped_in(out) as staging:
        (staging / "figures").mkdir()
        (staging / "figures" / "a.png").write_text(text)
        (staging / "report.html").write_text(text)


def _dataset(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text('{"format": "squad-attention-atlas/3"}')
    (folder / "shard-000000.parquet").write_bytes(b"PAR1 rows PAR1")
    return folder


def _previous_run_and_a_note(tmp: Path) -> Path:
    _write(tmp / "clusters", "first")
    (tmp / "clusters" / "figures" / "notes.txt").write_text("my notes")
    return tmp / "clusters"


def _note(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("my notes")
    return folder / "notes.txt"


REFUSED = {
    "a dataset": (lambda tmp: _dataset(tmp / "dataset"), "holds files no run of this project wrote: dataset.json, "),
    "a folder above a dataset": (lambda tmp: _dataset(tmp / "data" / "dataset").parent,
                                 "holds files no run of this project wrote: dataset/dataset.json"),
    "a user's file": (lambda tmp: _note(tmp / "mine").parent, "holds files no run of this project wrote: notes.txt"),
    "a note among a previous run's outputs": (_previous_run_and_a_note,
                                              "holds files no run of this project wrote: figures/notes.txt"),
    "a file": (_note, "is a file, not a folder"),
    "a folder under a file": (lambda tmp: _note(tmp) / "clusters", "is a file, not a folder"),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_a_folder_holding_what_no_run_wrote_is_refused_and_kept_byte_for_byte(case, tmp_path):
    make, fragment = REFUSED[case]
    out = make(tmp_path)
    before = _files(tmp_path)
    with pytest.raises(InputError) as refused:
        _write(out, "second")
    assert str(refused.value).startswith(f"--out {out}: ") and fragment in str(refused.value), refused.value
    assert "\n" not in str(refused.value)
    assert _files(tmp_path) == before
    assert sorted(p.name for p in tmp_path.rglob(".*")) == [], "no staging folder left behind"


def test_a_previous_run_an_empty_folder_or_none_is_replaced(tmp_path):
    for name in ("absent", "empty", "only-empty-folders"):
        out = tmp_path / name
        if name != "absent":
            (out / "stale" / "deeper").mkdir(parents=True)
        _write(out, "first")
        assert set(_files(out)) == {"figures/a.png", "outputs.json", "report.html"}
        _write(out, "second")  # a re-run into its own outputs
        assert _files(out)["report.html"] == b"second" and not (out / "stale").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["absent", "empty", "only-empty-folders"]


def test_a_symlinked_folder_keeps_its_link_and_its_target_gets_the_outputs(tmp_path):
    target, link = tmp_path / "disk" / "clusters", tmp_path / "clusters"
    link.symlink_to(target, target_is_directory=True)  # dangling: the first run creates the target
    for text in ("first", "second"):
        _write(link, text)
        assert link.is_symlink() and Path(os.readlink(link)) == target
        assert (target / "report.html").read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters", "disk"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["clusters"], "no staging folder left behind"


def test_files_added_during_the_run_stop_the_swap_and_stay(tmp_path):
    out = tmp_path / "clusters"
    _write(out, "first")
    with pytest.raises(InputError, match=f"^--out {out}: holds files no run of this project wrote: notes.txt"):
        with swapped_in(out) as staging:
            (staging / "report.html").write_text("second")
            (out / "notes.txt").write_text("written while the run went on")
    assert (out / "notes.txt").read_text() == "written while the run went on"
    assert (out / "report.html").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters"], "no staging folder left behind"


def _older_run(folder: Path, extra: str | None = None) -> Path:
    """A cluster run's folder as versions before outputs.json wrote it (no record), with `extra` added."""
    (folder / "figures").mkdir(parents=True)
    (folder / "labels.parquet").mkdir()
    names = ["report.html", "explorer.html", "summary.json", "heads.parquet", "heads.csv", "k_search.csv",
             "centres_kmeans.npy", "figures/pca.png", "labels.parquet/part-000000.parquet"]
    for name in names + ([extra] if extra else []):
        (folder / name).write_text(name)
    return folder


def test_a_folder_of_an_older_version_is_replaced_but_not_with_a_users_file_in_it(tmp_path):
    _write(_older_run(tmp_path / "old"), "new")
    assert _files(tmp_path / "old").keys() == {"report.html", "figures/a.png", "outputs.json"}
    before = _files(_older_run(tmp_path / "noted", extra="my-notes.txt"))
    with pytest.raises(InputError, match="my-notes.txt"):
        _write(tmp_path / "noted", "new")
    assert _files(tmp_path / "noted") == before
