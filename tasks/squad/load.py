"""SQuAD v2 input: read from any fsspec URL and validated, every problem named by file, place and field."""

from __future__ import annotations

import bz2
import functools
import gzip
import hashlib
import io
import json
import logging
import lzma
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fsspec.utils import infer_compression

from tasks.config import EMBEDDED_SAMPLE, SHIPPED_SAMPLES, ExtractConfig
from tasks.errors import InputError
from tasks.storage import Location, is_transient, storage_options

log = logging.getLogger(__name__)

MAX_CONTEXT_CHARS = ExtractConfig.model_fields["max_context_chars"].default
NAMED_MISMATCHES = 3


class SquadFormatError(InputError, ValueError):
    """The input file is not a valid SQuAD v2 JSON; the message names the file, the place and the problem."""


@dataclass(frozen=True)
class Example:
    """One question over one context."""

    question_id: str
    title: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]
    is_impossible: bool


def gold_span(example: Example) -> tuple[str, int] | None:
    """The first gold answer whose text is what the context holds at its answer_start; None where there is none
    (unanswerable, or every answer mismatched)."""
    return next(((text, start) for text, start in example.answers if _held(example, text, start) == text), None)


def _held(example: Example, text: str, start: int) -> str:
    """What the context holds where the answer `text` says it starts."""
    return example.context[start : start + len(text)]


@dataclass(frozen=True)
class Mismatch:
    """A gold answer whose text differs from the context at its answer_start."""

    question_id: str
    expected: str
    found: str


@dataclass(frozen=True)
class SquadFile:
    """A validated SQuAD file: its examples in file order, the sha256 of its bytes and its mismatched answers."""

    source: str
    sha256: str
    examples: list[Example]
    mismatched: tuple[Mismatch, ...] = ()


def check_answers(squad: SquadFile, strict: bool) -> None:
    """Mismatched answers, in one line naming the first few: refused (SquadFormatError) where `strict`, else a
    warning (they are left out of the answer statistics and training labels)."""
    if not squad.mismatched:
        return
    named = "; ".join(f"question '{m.question_id}' expects {m.expected!r}, the context holds {m.found!r}"
                      for m in squad.mismatched[:NAMED_MISMATCHES])
    n = len(squad.mismatched)
    more = f"; {n - NAMED_MISMATCHES:,} more" if n > NAMED_MISMATCHES else ""
    what = (f"{squad.source}: {n:,} {'answer differs' if n == 1 else 'answers differ'} from the context at "
            f"answer_start ({named}{more})")
    if strict:
        raise SquadFormatError(f"{what}; refused by --strict-answers")
    log.warning("%s; left out of the answer statistics and training labels (--strict-answers refuses them)", what)


def embedded_sample_path(name: str = EMBEDDED_SAMPLE) -> str:
    """Path of a SQuAD v2-format sample shipped with the project: 'embedded' or the smaller 'demo'."""
    return str(resources.files("tasks.squad") / "data" / SHIPPED_SAMPLES[name])


def resolve_source(source: str) -> str:
    """Maps the 'embedded' and 'demo' aliases to the shipped samples; leaves paths and URLs as they are."""
    return embedded_sample_path(source) if source in SHIPPED_SAMPLES else source


@functools.lru_cache(maxsize=2)
def cached_squad(source: str, credentials: str | None, max_context_chars: int = MAX_CONTEXT_CHARS) -> SquadFile:
    """load_squad with the storage options of `credentials` (a Prefect block's name, None for the
    environment's), read once per process: the checks before a run and the run share the read."""
    return load_squad(source, storage_options(source, credentials), max_context_chars)


def load_squad(source: str, options: dict | None = None, max_context_chars: int = MAX_CONTEXT_CHARS) -> SquadFile:
    """Reads and validates a SQuAD v2 JSON from a path or fsspec URL (https://, gs://, s3://), with the
    storage `options` (credentials) given. Transient faults are raised as they are, for retries."""
    source = resolve_source(source)
    where = Location.open(source, options)
    try:
        raw = where.fs.cat_file(where.root)
    except FileNotFoundError as exc:
        raise SquadFormatError(f"{source}: file not found") from exc
    except Exception as exc:
        if is_transient(exc):
            raise
        raise where.fault("read", exc) from None
    return parse_squad(raw, source, max_context_chars)


def decompressed(raw: bytes, source: str) -> bytes:
    """The bytes of a .gz, .bz2, .xz or .zst file decompressed (by its name's extension); others as they are."""
    compression = infer_compression(source)
    if compression is None:
        return raw
    try:
        if compression == "zstd":
            import zstandard

            return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
        return {"gzip": gzip.decompress, "bz2": bz2.decompress, "xz": lzma.decompress}[compression](raw)
    except KeyError:
        raise SquadFormatError(f"{source}: {compression}-compressed files are not read (use .gz, .bz2, .xz or .zst)") from None
    except Exception as exc:
        raise SquadFormatError(f"{source}: not a valid {compression} file ({exc})") from None


def parse_squad(raw: bytes, source: str, max_context_chars: int = MAX_CONTEXT_CHARS) -> SquadFile:
    """Decompresses (by extension), decodes (UTF-8, with or without a byte-order mark) and validates SQuAD v2
    bytes; `source` names the file in errors; the sha256 is of the bytes as stored."""
    data = decompressed(raw, source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SquadFormatError(f"{source}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SquadFormatError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    examples = _validate(document, source, max_context_chars)
    mismatched = tuple(Mismatch(e.question_id, text, _held(e, text, start))
                       for e in examples for text, start in e.answers if _held(e, text, start) != text)
    return SquadFile(source=source, sha256=hashlib.sha256(raw).hexdigest(), examples=examples, mismatched=mismatched)


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict):
        raise SquadFormatError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise SquadFormatError(f"{where}: missing key '{key}'")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SquadFormatError(f"{where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def _validate(document: Any, source: str, max_context_chars: int) -> list[Example]:
    examples: list[Example] = []
    seen: dict[str, str] = {}
    for a, article in enumerate(_field(document, "data", list, source)):
        where_a = f"{source}: data[{a}]"
        title = _field(article, "title", str, where_a)
        where_a = f"{where_a} ('{title}')"
        for p, paragraph in enumerate(_field(article, "paragraphs", list, where_a)):
            where_p = f"{where_a} paragraphs[{p}]"
            context = _field(paragraph, "context", str, where_p)
            if not context.strip():
                raise SquadFormatError(f"{where_p}.context: empty context")
            if len(context) > max_context_chars:
                raise SquadFormatError(f"{where_p}.context: {len(context):,} characters, over the limit of "
                                       f"{max_context_chars:,} (raise it with --max-context-chars)")
            for q, qa in enumerate(_field(paragraph, "qas", list, where_p)):
                examples.append(_validate_qa(qa, f"{where_p} qas[{q}]", title, context, seen))
    if not examples:
        raise SquadFormatError(f"{source}: no questions in the file")
    return examples


def _validate_qa(qa: Any, where: str, title: str, context: str, seen: dict[str, str]) -> Example:
    qid = _field(qa, "id", str, where)
    where = f"{where} (id '{qid}')"
    if qid in seen:
        raise SquadFormatError(f"{where}: duplicate question id, first seen at {seen[qid]}")
    seen[qid] = where
    question = _field(qa, "question", str, where)
    if not question.strip():
        raise SquadFormatError(f"{where}.question: empty question")
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        raise SquadFormatError(f"{where}.is_impossible: expected bool, got {type(impossible).__name__}")
    answers = []
    for n, answer in enumerate(_field(qa, "answers", list, where)):
        where_n = f"{where} answers[{n}]"
        text = _field(answer, "text", str, where_n)
        start = _field(answer, "answer_start", int, where_n)
        if start < 0 or start + len(text) > len(context):
            raise SquadFormatError(
                f"{where_n}.answer_start: {start} (+{len(text)} characters) is outside the context "
                f"({len(context)} characters)"
            )
        answers.append((text, start))
    if not impossible and not answers:
        raise SquadFormatError(f"{where}.answers: empty, but is_impossible is false")
    return Example(qid, title, question, context, tuple(answers), impossible)
