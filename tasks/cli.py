"""Command-line flags generated from a typed config: `--max-length` is the field `max_length`."""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

Config = TypeVar("Config", bound=BaseModel)


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from exc


def _argument(annotation: Any) -> dict[str, Any]:
    """argparse keywords for a field type (Optional unwrapped)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Literal:
        return {"choices": list(typing.get_args(annotation))}
    if typing.get_origin(annotation) is list:
        return {"type": _int_list, "metavar": "N,N,..."}
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    return {"type": annotation}


def config_parser(model: type[BaseModel], description: str) -> argparse.ArgumentParser:
    """A parser with one flag per config field; unset flags keep the config's defaults."""
    parser = argparse.ArgumentParser(description=description, argument_default=argparse.SUPPRESS)
    for name, field in model.model_fields.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, **_argument(field.annotation),
            help=f"{field.description} (default: {field.default})",
        )
    return parser


def config_from_args(model: type[Config], description: str, argv: Sequence[str] | None = None) -> Config:
    """Parses flags into a validated config; invalid values exit with the field named."""
    parser = config_parser(model, description)
    values = vars(parser.parse_args(argv))
    try:
        return model(**values)
    except ValidationError as exc:
        problems = "; ".join(f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        parser.error(problems)
