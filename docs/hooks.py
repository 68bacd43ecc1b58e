"""MkDocs hook: generated parts of pages, so that they cannot drift from the code.

- A line `<!-- flags: COMMAND -->` becomes the flag table of `atlas COMMAND`, built from flows.cli.COMMANDS (each
  command's config models and excluded names) by tasks.cli.flag_table.
- `<!-- outside-fingerprint -->` becomes the extraction flags that do not change the rows (tasks.config's
  fields left out of the dataset's fingerprint).
- A line `<!-- modules -->` becomes the list of the code's modules (flows/, tasks/ and each of its packages,
  bench/), each with the first sentence of its docstring, read from the files of this checkout."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's flows and tasks, not another

MARKER = re.compile(r"^<!-- flags: (?P<command>[a-z]+) -->$", re.MULTILINE)
MODULES = re.compile(r"^<!-- modules -->$", re.MULTILINE)
OUTSIDE_FINGERPRINT = "<!-- outside-fingerprint -->"


def flag_tables(markdown: str) -> str:
    """The page with every marker replaced by its command's table; an unknown command is an error."""
    from flows.cli import COMMANDS
    from tasks.cli import flag_table

    def table(match: re.Match) -> str:
        name = match["command"]
        if name not in COMMANDS:
            raise ValueError(f"<!-- flags: {name} -->: no such command (known: {', '.join(COMMANDS)})")
        command = COMMANDS[name]
        return flag_table(command.configs, command.exclude)

    return MARKER.sub(table, markdown)


def first_sentence(path: Path) -> str:
    """The first sentence of a module's docstring, on one line ('' without a docstring)."""
    text = " ".join((ast.get_docstring(ast.parse(path.read_text())) or "").split())
    end = text.find(". ")
    return (text if end < 0 else text[:end + 1]).replace("|", "\\|")


def module_tables(root: Path = REPO) -> str:
    """One table per code folder: each Python module and the first sentence of its docstring."""
    folders = [root / "flows", root / "tasks",
               *sorted(p.parent for p in (root / "tasks").glob("*/__init__.py")), root / "bench"]
    parts = []
    for folder in folders:
        rows = [f"| `{path.name}` | {first_sentence(path)} |" for path in sorted(folder.glob("*.py"))
                if path.name != "__init__.py" or first_sentence(path)]
        data = sorted(p.name for p in folder.iterdir() if folder.is_relative_to(root / "tasks") and p.is_dir()
                      and not p.name.startswith(("_", ".")) and not (p / "__init__.py").exists())  # package data
        if data:
            rows.append(f"| {', '.join(f'`{name}/`' for name in data)} | files shipped with the code, not modules |")
        parts.append(f"### `{folder.relative_to(root).as_posix()}/`\n\n| module | what it holds |\n| --- | --- |\n"
                     + "\n".join(rows))
    return "\n\n".join(parts)


def outside_fingerprint() -> str:
    """The extraction flags that do not change the rows, as inline code."""
    from tasks.config import ExtractConfig, _NOT_IN_FINGERPRINT

    return ", ".join(f"`--{name.replace('_', '-')}`" for name in ExtractConfig.model_fields
                     if name in _NOT_IN_FINGERPRINT)


def on_page_markdown(markdown: str, **kwargs) -> str:
    markdown = markdown.replace(OUTSIDE_FINGERPRINT, outside_fingerprint())
    return MODULES.sub(lambda _: module_tables(), flag_tables(markdown))
