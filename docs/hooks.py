"""MkDocs hook: a line `<!-- flags: COMMAND -->` in a page becomes the flag table of `atlas COMMAND`, built at
build time from flows.cli.COMMANDS (each command's config models and excluded names) by tasks.cli.flag_table.
The tables cannot drift from the configs: they are the configs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's flows and tasks, not another

MARKER = re.compile(r"^<!-- flags: (?P<command>[a-z]+) -->$", re.MULTILINE)


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


def on_page_markdown(markdown: str, **kwargs) -> str:
    return flag_tables(markdown)
