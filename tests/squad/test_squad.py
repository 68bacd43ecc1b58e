"""SQuAD v2 loading, validation and feature building."""

from __future__ import annotations

import bz2
import copy
import gzip
import hashlib
import json
import lzma

import fsspec
import numpy as np
import pytest
import zstandard

from tasks.config import ExtractConfig, FinetuneConfig
from tasks.squad.features import WindowError, plan_shards, question_tokens, shard_features, tokenize
from tasks.squad.load import (
    SquadFormatError,
    check_answers,
    embedded_sample_path,
    gold_span,
    load_squad,
    parse_squad,
)

with open(embedded_sample_path(), "rb") as _f:
    SAMPLE_BYTES = _f.read()


def _edited(edit) -> bytes:
    document = json.loads(SAMPLE_BYTES)
    edit(document)
    return json.dumps(document).encode()


def _qa(document, a=0, p=0, q=0):
    return document["data"][a]["paragraphs"][p]["qas"][q]


def test_sample_has_answerable_unanswerable_and_long_contexts(sample, tokenizer):
    assert {e.is_impossible for e in sample.examples} == {True, False}
    assert len({e.title for e in sample.examples}) >= 3
    features = tokenize(sample.examples, tokenizer, 384, 128, 64)
    assert features.span.max() >= 1, "some context needs several 384-token windows"
    for e in sample.examples:
        for text, start in e.answers:
            assert e.context[start:start + len(text)] == text


def test_features_match_the_tokenizers_own_overflow_output(sample, tokenizer):
    features = tokenize(sample.examples, tokenizer, 64, 32, None)
    row = 0
    for index, example in enumerate(sample.examples):
        expected = tokenizer(example.question, example.context, truncation="only_second", max_length=64,
                             stride=32, return_overflowing_tokens=True, return_offsets_mapping=True,
                             padding="max_length")
        for window, ids in enumerate(expected["input_ids"]):
            assert features.feature_id[row] == row
            assert features.question_id[row] == example.question_id
            assert features.example_index[row] == index
            assert features.span[row] == window
            assert features.input_ids[row].tolist() == ids
            assert features.attention_mask[row].tolist() == expected["attention_mask"][window]
            in_context = [s == 1 for s in expected.sequence_ids(window)]
            offsets = np.array(expected["offset_mapping"][window])
            assert (features.offsets[row][in_context] == offsets[in_context]).all()
            assert (features.offsets[row][~np.array(in_context)] == -1).all()
            row += 1
    assert row == len(features)


def test_max_query_length_keeps_the_first_question_tokens(sample, tokenizer):
    features = tokenize(sample.examples, tokenizer, 64, 32, max_query_length=4)
    for row in range(len(features)):
        example = sample.examples[features.example_index[row]]
        question_ids = tokenizer(example.question, add_special_tokens=False)["input_ids"]
        first_sep = list(features.input_ids[row]).index(tokenizer.sep_token_id)
        assert features.input_ids[row][1:first_sep].tolist() == question_ids[:4]


def test_shards_reproduce_the_global_features_exactly(sample, tokenizer):
    features = tokenize(sample.examples, tokenizer, 64, 32, 64, chunk=5)
    whole = tokenize(sample.examples, tokenizer, 64, 32, 64)
    assert (features.input_ids == whole.input_ids).all() and (features.span == whole.span).all()
    plans = plan_shards(features, shard_size=7)
    assert any(p.first_span > 0 for p in plans), "some question's windows straddle two shards"
    assert [p.n_features for p in plans[:-1]] == [7] * (len(plans) - 1)
    parts = [shard_features(sample.examples, p, tokenizer, 64, 32, 64) for p in plans]
    assert np.concatenate([p.feature_id for p in parts]).tolist() == features.feature_id.tolist()
    assert (np.concatenate([p.input_ids for p in parts]) == features.input_ids).all()
    assert (np.concatenate([p.span for p in parts]) == features.span).all()
    assert sum((p.question_id for p in parts), []) == features.question_id


def test_a_question_that_leaves_no_room_past_the_stride_is_named_not_a_tokenizer_panic(sample, tokenizer):
    counts = question_tokens([e.question for e in sample.examples], tokenizer, 64)
    longest = int(np.argmax(counts))
    max_length = int(counts[longest]) + 3 + 16  # room for exactly 16 context tokens: the stride must be under it
    with pytest.raises(WindowError) as error:
        tokenize(sample.examples, tokenizer, max_length, 16, 64)
    message = str(error.value)
    assert "\n" not in message
    first = next(e for e, n in zip(sample.examples, counts) if n + 3 + 16 >= max_length)
    assert f"question '{first.question_id}'" in message and "--doc-stride 16" in message
    assert f"--max-length {max_length}" in message and "(after --max-query-length 64)" in message
    assert len(tokenize(sample.examples, tokenizer, max_length, 15, 64)) > len(sample.examples)  # 15 fits


def _misplaced_answers(n: int) -> bytes:
    """The sample with the first `n` answerable questions' answers shifted one character right."""
    def shift(document):
        answers = [qa["answers"][0] for article in document["data"] for paragraph in article["paragraphs"]
                   for qa in paragraph["qas"] if qa["answers"]]
        for answer in answers[:n]:
            answer["answer_start"] += 1
    return _edited(shift)


def test_answers_that_differ_from_the_context_are_counted_and_named_in_one_warning(caplog):
    clean = parse_squad(SAMPLE_BYTES, "train.json")
    assert clean.mismatched == ()
    squad = parse_squad(_misplaced_answers(5), "train.json")
    assert len(squad.mismatched) == 5
    first = squad.mismatched[0]
    example = next(e for e in squad.examples if e.question_id == first.question_id)
    text, start = example.answers[0]
    assert (first.expected, first.found) == (text, example.context[start : start + len(text)]) and text != first.found
    assert gold_span(example) is None  # nothing the context holds: left out of answer statistics and labels
    with caplog.at_level("WARNING", logger="tasks.squad.load"):
        check_answers(squad, strict=False)
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message
    assert message.startswith("train.json: 5 answers differ from the context at answer_start")
    assert f"question '{first.question_id}' expects {first.expected!r}, the context holds {first.found!r}" in message
    assert message.count("expects") == 3 and "; 2 more" in message and "--strict-answers" in message


def test_strict_answers_refuses_mismatched_answers_in_one_line():
    check_answers(parse_squad(SAMPLE_BYTES, "train.json"), strict=True)
    with pytest.raises(SquadFormatError, match=r"^train.json: 1 answer differs .*refused by --strict-answers$"):
        check_answers(parse_squad(_misplaced_answers(1), "train.json"), strict=True)
    strict = {"strict_answers": True}
    assert ExtractConfig(**strict).content() == ExtractConfig().content()  # a check: the same rows, the same dataset
    assert FinetuneConfig(**strict).training_content() == FinetuneConfig().training_content()


def test_loads_over_http(http_folder):
    folder, base_url, _ = http_folder
    (folder / "train-v2.0.json").write_bytes(SAMPLE_BYTES)
    loaded = load_squad(f"{base_url}/train-v2.0.json")
    assert loaded.examples == load_squad("embedded").examples
    (folder / "broken.json").write_bytes(SAMPLE_BYTES[:100])
    with pytest.raises(SquadFormatError, match=f"{base_url}/broken.json: invalid JSON"):
        load_squad(f"{base_url}/broken.json")


def test_loads_through_fsspec_urls(tmp_path):
    with fsspec.open("memory://inputs/squad.json", "wb") as f:
        f.write(SAMPLE_BYTES)
    from_memory = load_squad("memory://inputs/squad.json")
    (tmp_path / "squad.json").write_bytes(SAMPLE_BYTES)
    from_file_url = load_squad(f"file://{tmp_path / 'squad.json'}")
    assert from_memory.examples == from_file_url.examples
    assert from_memory.sha256 == from_file_url.sha256


BAD_INPUTS = {
    "bad JSON": (b'{"data": [}', ["invalid JSON at line 1"]),
    "truncated file": (SAMPLE_BYTES[: len(SAMPLE_BYTES) // 2], ["invalid JSON"]),
    "not UTF-8": (b'{"data": "\xff\xfe"}', ["not UTF-8", "byte 10"]),
    "no data key": (b'{"version": "v2.0"}', ["missing key 'data'"]),
    "data not a list": (b'{"data": {}}', ["data: expected list, got dict"]),
    "missing context": (_edited(lambda d: d["data"][0]["paragraphs"][0].pop("context")),
                        ["data[0] ('Tide_mills') paragraphs[0]", "missing key 'context'"]),
    "empty context": (_edited(lambda d: d["data"][1]["paragraphs"][0].update(context="  ")),
                      ["data[1] ('Dry_stone_walls') paragraphs[0].context", "empty context"]),
    "question not a string": (_edited(lambda d: _qa(d).update(question=7)),
                              ["qas[0] (id 'tide_mills-0-0').question", "expected str, got int"]),
    "answer_start a string": (_edited(lambda d: _qa(d)["answers"][0].update(answer_start="12")),
                              ["answers[0].answer_start", "expected int, got str"]),
    "answer_start past the context": (_edited(lambda d: _qa(d)["answers"][0].update(answer_start=10_000)),
                                      ["qas[0] (id 'tide_mills-0-0') answers[0].answer_start",
                                       "10000", "outside the context"]),
    "negative answer_start": (_edited(lambda d: _qa(d)["answers"][0].update(answer_start=-1)),
                              ["outside the context"]),
    "missing answers": (_edited(lambda d: _qa(d).pop("answers")), ["missing key 'answers'"]),
    "answerable without answers": (_edited(lambda d: _qa(d).update(answers=[])),
                                   ["answers: empty, but is_impossible is false"]),
    "is_impossible not a bool": (_edited(lambda d: _qa(d).update(is_impossible="no")),
                                 ["is_impossible: expected bool, got str"]),
    "duplicate question id": (_edited(lambda d: _qa(d, q=1).update(id=_qa(d)["id"])),
                              ["qas[1] (id 'tide_mills-0-0')", "duplicate question id", "qas[0]"]),
    "no questions": (b'{"data": []}', ["no questions"]),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_names_the_file_the_place_and_the_problem(case, tmp_path):
    raw, fragments = BAD_INPUTS[case]
    path = tmp_path / "train-v2.0.json"
    path.write_bytes(raw)
    with pytest.raises(SquadFormatError) as error:
        load_squad(str(path))
    message = str(error.value)
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SquadFormatError, match="nowhere.json: file not found"):
        load_squad(str(tmp_path / "nowhere.json"))


def test_validation_does_not_mutate_and_keeps_file_order():
    document = json.loads(SAMPLE_BYTES)
    before = copy.deepcopy(document)
    parsed = parse_squad(json.dumps(document).encode(), "sample")
    assert document == before
    expected = [qa["id"] for a in document["data"] for p in a["paragraphs"] for qa in p["qas"]]
    assert [e.question_id for e in parsed.examples] == expected


@pytest.mark.parametrize("suffix, compress", [
    (".json.gz", gzip.compress), (".json.bz2", bz2.compress), (".json.xz", lzma.compress),
    (".json.zst", lambda data: zstandard.ZstdCompressor().compress(data)), (".json", lambda data: b"\xef\xbb\xbf" + data),
], ids=["gzip", "bz2", "xz", "zstd", "utf-8 with BOM"])
def test_compressed_files_and_a_byte_order_mark_read_as_the_plain_file(suffix, compress, tmp_path):
    path = tmp_path / f"squad{suffix}"
    path.write_bytes(compress(SAMPLE_BYTES))
    loaded, plain = load_squad(str(path)), parse_squad(SAMPLE_BYTES, "plain.json")
    assert loaded.examples == plain.examples
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()  # the file as stored


def test_a_corrupt_compressed_file_is_named_in_one_line(tmp_path):
    path = tmp_path / "squad.json.gz"
    path.write_bytes(gzip.compress(SAMPLE_BYTES)[:-40])
    with pytest.raises(SquadFormatError, match=r"squad.json.gz: not a valid gzip file") as raised:
        load_squad(str(path))
    assert "\n" not in str(raised.value)
