"""The README's bad-input table, through the extraction command line: each malformed input gives one clear
error naming the file or URL, the place and the problem, and leaves no output behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import tiny_flags

from flows.extract import main
from tasks.squad.load import embedded_sample_path

SAMPLE = json.loads(Path(embedded_sample_path()).read_text())


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
    argv = ["--source", str(source), "--dest", str(dest), *tiny_flags()]
    argv += [flag.format(tmp=tmp_path) for flag in flags]
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    message = str(exit_.value.code)
    assert message.startswith("error: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "no output left behind"
    assert source.read_bytes() == (contents if contents is not None else Path(embedded_sample_path()).read_bytes())
