"""A stage's public face: the names a stage package exports (`__all__`), each imported from its module when first
used, so that importing a stage (the command line's checks do, before torch or Prefect) costs nothing until a
name is needed."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def public_face(package: str, modules: Mapping[str, Sequence[str]]
                ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`__all__`, `__getattr__` and `__dir__` for the package `package` exporting, from each of its modules, the
    names listed. A name that is also a module's name is imported at once: the module's import would otherwise
    leave the module, not the name, on the package."""
    where = {name: module for module, names in modules.items() for name in names}

    def resolve(name: str) -> Any:
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return resolve(name)

    def __dir__() -> list[str]:
        return sorted(where)

    for name in where.keys() & modules.keys():
        resolve(name)
    return sorted(where), __getattr__, __dir__
