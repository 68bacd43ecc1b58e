"""Docs that cannot drift: the flag tables of the site are generated from the configs and list every leaf field
(a nested group's fields, each a flag) of every command; the README stays short and names the two commands; the
site builds with --strict."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from flows.cli import COMMANDS
from tasks.cli import config_parser, flag_table, leaves
from tiny import REPO

RUN_COMMAND = "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && python flows/full.py"
TEST_COMMAND = 'python3 -m venv .venv && . .venv/bin/activate && pip install -q -e ".[dev,docs]" && pytest'
FLAG_CELL = re.compile(r"^\| `--(?P<flag>[a-z0-9-]+)` \|", re.MULTILINE)


def hooks():
    """docs/hooks.py, loaded as MkDocs loads it: from its file."""
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fields(command) -> set[str]:
    return {name for model in command.configs for name in leaves(model)} - set(command.exclude)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_flag_table_lists_every_leaf_field_of_every_config_of_the_command(name):
    command = COMMANDS[name]
    table = flag_table(command.configs, command.exclude)
    listed = [match["flag"].replace("-", "_") for match in FLAG_CELL.finditer(table)]
    assert len(listed) == len(set(listed)), "a flag is listed twice"
    assert set(listed) == fields(command)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_leaf_field_has_a_description(name):
    undocumented = [f"{model.__name__}.{field}" for model in COMMANDS[name].configs
                    for field, (info, _) in leaves(model).items() if not (info.description or "").strip()]
    assert undocumented == []


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_flag_table_has_the_parsers_flags(name):
    command = COMMANDS[name]
    parser = config_parser(command.configs, command.about, command.exclude)
    flags = {action.option_strings[0] for action in parser._actions if action.option_strings}  # not --no-X
    table = {f"--{match['flag']}" for match in FLAG_CELL.finditer(flag_table(command.configs, command.exclude))}
    assert flags - {"-h", "--verbose"} == table


def test_flag_table_rows_give_type_default_and_meaning():
    command = COMMANDS["extract"]
    rows = {match["flag"]: line for line in flag_table(command.configs).splitlines()
            for match in [FLAG_CELL.match(line)] if match}
    assert rows["source"].split(" | ")[1:3] == ["str", "`demo`"]
    assert rows["scaling"].split(" | ")[1:3] == ["`map` / `faithful`", "`map`"]
    assert rows["shards"].split(" | ")[1:3] == ["int, comma-separated", "none"]
    assert rows["new-version"].split(" | ")[2] == "off"
    shared = flag_table(COMMANDS["full"].configs, COMMANDS["full"].exclude)
    assert "(sets ExtractConfig, ClusterConfig)" in next(line for line in shared.splitlines() if "`--seed`" in line)


def test_the_flag_reference_has_a_generated_table_for_every_command():
    page = (REPO / "docs" / "reference" / "flags.md").read_text()
    assert {name for name in re.findall(r"^<!-- flags: ([a-z]+) -->$", page, re.MULTILINE)} == set(COMMANDS)
    built = hooks().on_page_markdown(page)
    assert "<!-- flags:" not in built
    for name, command in COMMANDS.items():
        assert flag_table(command.configs, command.exclude) in built


def test_the_flags_said_not_to_change_the_rows_are_those_outside_the_fingerprint():
    from tasks.config import _NOT_IN_FINGERPRINT

    page = hooks().on_page_markdown((REPO / "docs" / "reference" / "flags.md").read_text())
    sentence = " ".join(page[page.index("These flags do not change the rows:"):].split(". ")[0].split())
    assert {flag.replace("-", "_") for flag in re.findall(r"`--([a-z0-9-]+)`", sentence)} == _NOT_IN_FINGERPRINT


def test_an_unknown_command_in_a_marker_fails_the_build():
    with pytest.raises(ValueError, match="no such command"):
        hooks().on_page_markdown("<!-- flags: nonsense -->\n")


def test_the_layout_page_lists_every_module():
    tables = hooks().module_tables()
    for path in [*(REPO / "flows").glob("*.py"), *(REPO / "tasks").rglob("*.py"), *(REPO / "bench").glob("*.py")]:
        if path.name != "__init__.py":
            assert f"### `{path.parent.relative_to(REPO).as_posix()}/`" in tables
            assert f"| `{path.name}` |" in tables, path


def test_the_readme_is_short_and_names_the_two_commands():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    assert RUN_COMMAND in readme.splitlines()
    assert TEST_COMMAND in readme.splitlines()


def test_ci_builds_the_site_strictly_before_the_readmes_test_command():
    script = (REPO / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[dev,docs]"' in script
    build, tests = script.index('mkdocs build --strict --site-dir "$(mktemp -d)"'), script.index("\npytest\n")
    assert build < tests


def test_the_site_builds_with_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs and mkdocs-material are not installed (pip install -e '.[docs]')")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    flags = (tmp_path / "reference" / "flags" / "index.html").read_text()
    assert "--max-length" in flags and "flags: extract" not in flags
    assert not (tmp_path / "hooks.py").exists() and not (tmp_path / "screenshot.py").exists()
