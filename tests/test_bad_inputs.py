"""The README's bad-input table, through the command line: each malformed input or output folder gives one
clear error naming the file, URL or flag, the place and the problem, and leaves every file as it was."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from small_disk import on_small_disk
from tiny import REPO, tiny_flags

from flows.extract import main
from tasks.squad.load import embedded_sample_path

SAMPLE = json.loads(Path(embedded_sample_path()).read_text())
DATASET_V1 = REPO / "tests" / "data" / "dataset-v1"


def _edited(edit) -> bytes:
    document = json.loads(json.dumps(SAMPLE))
    edit(document)
    return json.dumps(document).encode()


def _paragraph(document, a=0, p=0):
    return document["data"][a]["paragraphs"][p]


RAW = json.dumps(SAMPLE).encode()
# case: (file contents or None for the embedded sample, extra flags, fragments of the one error line)
CASES = {
    "bad JSON": (b'{"data": [}', [], ["train.json: invalid JSON at line 1 column 11"]),
    "truncated file": (RAW[: len(RAW) // 3], [], ["train.json: invalid JSON"]),
    "missing key": (_edited(lambda d: _paragraph(d).pop("qas")), [],
                    ["train.json: data[0] ('Tide_mills') paragraphs[0]: missing key 'qas'"]),
    "wrong type": (_edited(lambda d: _paragraph(d)["qas"][0].update(id=17)), [],
                   ["data[0] ('Tide_mills') paragraphs[0] qas[0].id: expected str, got int"]),
    "answer_start past the context": (_edited(lambda d: _paragraph(d)["qas"][0]["answers"][0].update(answer_start=9999)),
                                      [], ["answers[0].answer_start: 9999", "outside the context"]),
    "empty context": (_edited(lambda d: _paragraph(d, a=2).update(context="")), [],
                      ["data[2] ('Sourdough') paragraphs[0].context: empty context"]),
    "non-UTF-8 bytes": (RAW[:40] + b"\xff\xfe" + RAW[40:], [], ["train.json: not UTF-8 text (byte 40"]),
    "a context of 1 MB": (_edited(lambda d: _paragraph(d, a=1).update(context="stone " * 175_000)), [],
                          ["data[1] ('Dry_stone_walls') paragraphs[0].context: 1,050,000 characters, over the "
                           "limit of 100,000 (raise it with --max-context-chars)"]),
    "a question longer than the window leaves": (None, ["--max-length", "32", "--doc-stride", "16"],
                                                 ["question '", "question tokens (after --max-query-length 64)",
                                                  "--max-length 32", "--doc-stride 16"]),
    "an answer the context does not hold, with --strict-answers": (
        _edited(lambda d: _paragraph(d)["qas"][0]["answers"][0].update(text="not in the context")),
        ["--strict-answers"], ["train.json: 1 answer differs from the context at answer_start",
                               "expects 'not in the context', the context holds", "refused by --strict-answers"]),
    "unknown model id offline": (None, ["--model", "no-such-org/no-such-model"],
                                 ["model 'no-such-org/no-such-model': cannot load"]),
    "missing encoder weights": (None, ["--encoder-weights", "/nowhere/resnet50.pth"],
                                ["encoder weights /nowhere/resnet50.pth: no such file"]),
    "bad destination URL": (None, ["--dest", "foo://bucket/dataset"],
                            ["foo://bucket/dataset: not a usable location", "use a path, file://, gs:// or s3://"]),
    "destination is a file": (None, ["--dest", "{tmp}/train.json/dataset"],
                              ["train.json/dataset: cannot write:", "train.json is a file, not a folder"]),
    "missing bucket": (None, ["--dest", "s3://no-such-bucket/dataset"],
                       ["s3://no-such-bucket/dataset: cannot write: not found: the bucket or folder does not exist"]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_bad_input_gives_one_clear_error_and_no_output(case, prefect_server, object_stores, tmp_path, capsys):
    contents, flags, fragments = CASES[case]
    source = tmp_path / "train.json"
    source.write_bytes(contents if contents is not None else Path(embedded_sample_path()).read_bytes())
    dest = tmp_path / "dataset"
    argv = ["--dest", str(dest), *tiny_flags(source=str(source))]
    argv += [flag.format(tmp=tmp_path) for flag in flags]
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    errors = capsys.readouterr().err
    assert "Traceback" not in errors
    message = errors.strip().splitlines()[-1]
    assert message.startswith("error: ")
    for fragment in fragments:
        assert fragment in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "no output left behind"
    assert source.read_bytes() == (contents if contents is not None else Path(embedded_sample_path()).read_bytes())


SOURCE_CASES = {
    "invalid JSON": (["extract"], b'{"data": [}', ["train.json: invalid JSON at line 1"]),
    "HTML instead of JSON": (["extract"], b"<html><body>Not found</body></html>", ["train.json: invalid JSON"]),
    "empty file": (["full"], b"", ["train.json: invalid JSON"]),
    "no data key": (["finetune", "--evaluate-only", "--dev", "{source}"], b'{"version": "v2.0"}',
                    ["train.json: missing key 'data'"]),
}


@pytest.mark.parametrize("case", SOURCE_CASES, ids=list(SOURCE_CASES))
def test_a_bad_source_is_refused_before_anything_starts(case, tmp_path):
    command, contents, fragments = SOURCE_CASES[case]
    source = tmp_path / "train.json"
    source.write_bytes(contents)
    argv = [flag.format(source=source) for flag in command] + ["--dest" if command[0] != "finetune" else "--out",
                                                              str(tmp_path / "out")]
    if command[0] != "finetune":
        argv += ["--source", str(source)]
    done = atlas(argv, tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert all(fragment in done.stderr for fragment in fragments), done.stderr
    assert "prefect" not in done.stderr.lower() and done.stdout == ""  # no server, no flow run, nothing else said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json"], "nothing written"


def test_bad_cluster_flags_are_refused_before_anything_starts(tmp_path):
    missing = atlas(["cluster", "--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")], tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1
    assert "nowhere" in missing.stderr and "dataset.json" in missing.stderr
    gpu = atlas(["cluster", "--dataset", str(DATASET_V1), "--backend", "gpu", "--out", str(tmp_path / "out")], tmp_path)
    assert gpu.returncode == 2 and gpu.stderr.startswith("error: --backend gpu: no GPU is visible"), gpu.stderr
    statistic = atlas(["cluster", "--dataset", str(DATASET_V1), "--qa-statistic", "nonsense"], tmp_path)
    assert statistic.returncode == 2 and "--qa-statistic: 'nonsense' is not a statistic of" in statistic.stderr
    assert not (tmp_path / "out").exists()


def atlas(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The `atlas` command in a fresh process; the seconds to its end are printed for the test log."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flows.cli", *argv], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    print(f"atlas {' '.join(argv[:1])}: exit {done.returncode} after {time.perf_counter() - started:.1f} s")
    return done


def _copied_dataset(tmp: Path) -> Path:
    shutil.copytree(DATASET_V1, tmp / "data" / "dataset")
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("my notes")
    return tmp / "data" / "dataset"


# case: (the command with {dataset} and {tmp} to fill, fragment of the one error line after "error: --out OUT: ")
OUT_CASES = {
    "cluster into its dataset": (["cluster", "--dataset", "{dataset}", "--out", "{dataset}"],
                                 "is the dataset folder {dataset}"),
    "cluster into a folder above its dataset": (["cluster", "--dataset", "{dataset}", "--out", "{tmp}"],
                                                "holds the dataset folder {dataset}"),
    "cluster into a user's folder": (["cluster", "--dataset", "{dataset}", "--out", "{tmp}/mine"],
                                     "holds files no run of this project wrote: notes.txt"),
    "cluster into a file": (["cluster", "--dataset", "{dataset}", "--out", "{tmp}/mine/notes.txt"],
                            "is a file, not a folder"),
    "cluster under a file": (["cluster", "--dataset", "{dataset}", "--out", "{tmp}/mine/notes.txt/clusters"],
                             "cannot write: {tmp}/mine/notes.txt is a file, not a folder"),
    "full into its destination": (["full", "--dest", "{tmp}/new", "--out", "{tmp}/new"],
                                  "is the dataset folder {tmp}/new"),
    "full into a folder above its destination": (["full", "--dest", "{tmp}/new/dataset", "--out", "{tmp}/new"],
                                                 "holds the dataset folder {tmp}/new/dataset"),
    "compare into dataset B": (["compare", "--a", "{dataset}", "--b", "{dataset}", "--out", "{dataset}"],
                               "is the dataset folder {dataset}"),
}


@pytest.mark.parametrize("case", OUT_CASES, ids=list(OUT_CASES))
def test_an_out_that_would_lose_data_is_refused_before_anything_starts(case, tmp_path):
    command, fragment = OUT_CASES[case]
    dataset = _copied_dataset(tmp_path)
    argv = [flag.format(dataset=dataset, tmp=tmp_path) for flag in command]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    done = atlas(argv, tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    out = argv[argv.index("--out") + 1]
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: --out {out}: "), done.stderr
    assert fragment.format(dataset=dataset, tmp=tmp_path) in done.stderr, done.stderr
    assert done.stdout == ""
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before, "every file kept as it was"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "mine"], "nothing written"


def test_an_out_on_a_read_only_disk_is_refused_before_anything_starts(tmp_path):
    disk = tmp_path / "disk"
    command = [sys.executable, "-m", "flows.cli", "cluster", "--dataset", str(DATASET_V1), "--out", f"{disk}/clusters"]
    done = on_small_disk(disk, "64k", f"mount -o remount,ro {disk} && {shlex.join(command)}",
                         {"PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr == f"error: --out {disk}/clusters: {disk}: cannot write: no permission to write in {disk}\n"
