"""Command-line flags generated from a typed config: `--max-length` is the field `max_length`."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tasks.errors import InputError

Config = TypeVar("Config", bound=BaseModel)
Result = TypeVar("Result")


def _list_of(kind: type):
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got '{text}'") from exc

    parse.__name__ = f"list of {kind.__name__}"
    return parse


def _argument(annotation: Any) -> dict[str, Any]:
    """argparse keywords for a field type (Optional unwrapped)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Literal:
        return {"choices": list(typing.get_args(annotation))}
    if typing.get_origin(annotation) is list:
        return {"type": _list_of(typing.get_args(annotation)[0]), "metavar": "V,V,..."}
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    return {"type": annotation}


def leaves(model: type[BaseModel]) -> dict[str, tuple[FieldInfo, Any]]:
    """The flags of a config: each field and its default, a nested group's fields in the group's place."""
    if hasattr(model, "leaves"):
        return model.leaves()
    return {name: (field, field.default) for name, field in model.model_fields.items()}


def flags_of(models: Sequence[type[BaseModel]], exclude: Sequence[str] = ()
             ) -> Iterator[tuple[str, FieldInfo, Any, list[type[BaseModel]]]]:
    """Each flag of `models` once, as (field name, field, default, the models it sets), `exclude` left out."""
    seen: set[str] = set(exclude)
    for model in models:
        for name, (field, value) in leaves(model).items():
            if name not in seen:
                seen.add(name)
                yield name, field, value, [other for other in models if name in leaves(other)]


def config_parser(models: Sequence[type[BaseModel]], description: str, exclude: Sequence[str] = ()
                  ) -> argparse.ArgumentParser:
    """A parser with one flag per config field; a name shared by several configs is one flag that sets all
    of them. Unset flags keep the configs' defaults."""
    parser = argparse.ArgumentParser(description=description, argument_default=argparse.SUPPRESS)
    parser.add_argument("--verbose", action="store_true", help="also show the libraries' own reports and progress "
                        "bars (transformers' model load report, weight loading bars)")
    for name, field, value, _ in flags_of(models, exclude):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, **_argument(field.annotation),
                            help=f"{field.description} (default: {value})")
    return parser


def flag_table(models: Sequence[type[BaseModel]], exclude: Sequence[str] = ()) -> str:
    """A markdown table of the flags that `config_parser(models, ..., exclude)` makes: flag, type or choices,
    default, the field's description. A name shared by several configs is one row naming every config it sets."""

    def kind(annotation: Any) -> str:
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        if typing.get_origin(annotation) is typing.Literal:
            return " / ".join(f"`{choice}`" for choice in typing.get_args(annotation))
        if typing.get_origin(annotation) is list:
            return f"{typing.get_args(annotation)[0].__name__}, comma-separated"
        return "on / off (`--no-...`)" if annotation is bool else annotation.__name__

    def default(value: Any) -> str:
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "on" if value else "off"
        return f"`{','.join(map(str, value)) if isinstance(value, list) else value}`"

    rows = ["| flag | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field, value, owners in flags_of(models, exclude):
        text = (field.description or "").replace("|", "\\|")
        if len(owners) > 1:
            text += f" (sets {', '.join(owner.__name__ for owner in owners)})"
        rows.append(f"| `--{name.replace('_', '-')}` | {kind(field.annotation)} | {default(value)} | {text} |")
    return "\n".join(rows)


def configs_from_args(models: Sequence[type[BaseModel]], description: str, argv: Sequence[str] | None = None,
                      exclude: Sequence[str] = ()) -> list:
    """Parses flags into one validated config per model; invalid values exit with the flag named."""
    parser = config_parser(models, description, exclude)
    values = vars(parser.parse_args(argv))
    if values.pop("verbose", False):
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_info()
    try:
        return [model(**{k: v for k, v in values.items() if k in leaves(model)}) for model in models]
    except ValidationError as exc:
        parser.error("; ".join(_problem(error) for error in exc.errors()))


def _problem(error: dict) -> str:
    """A validation error as the command line says it: the flag, where the error is about one field (a nested
    group's name left out: the flag is its field's)."""
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:
        return message
    loc = error["loc"][1:] if len(error["loc"]) > 1 and isinstance(error["loc"][1], str) else error["loc"]
    return f"--{'.'.join(map(str, loc)).replace('_', '-')}: {message}"


def config_from_args(model: type[Config], description: str, argv: Sequence[str] | None = None) -> Config:
    """Parses flags into a validated config of one model."""
    return configs_from_args([model], description, argv)[0]


INPUT_ERROR_STATUS = 2


def run_or_exit(flow: Callable[..., Result], *configs: BaseModel, check: Callable[..., None] | None = None) -> Result:
    """Runs a flow from the command line after `check` (the inputs, before anything starts): bad input, found by
    the check or later, ends the process with one line on stderr, `error: ...`, status 2."""
    try:
        if check is not None:
            check(*configs)
        return flow(*configs)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(INPUT_ERROR_STATUS)
