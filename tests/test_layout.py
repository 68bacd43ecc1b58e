"""The library's shape: every module of `tasks/` imports without Prefect (so that benchmarks and notebooks run
where Prefect is not installed) and stays small enough to read."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

from tiny import REPO

MODULES = sorted(
    ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for path in (REPO / "tasks").rglob("*.py")
)
PROBE = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
    if "prefect" in sys.modules:
        sys.exit(f"importing {name} imported prefect")
"""


def test_the_library_imports_without_prefect():
    assert len(MODULES) > 30 and "tasks.extract.shard" in MODULES
    result = subprocess.run([sys.executable, "-c", PROBE, *MODULES], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_module_is_over_300_lines():
    lengths = {path.relative_to(REPO).as_posix(): len(path.read_text().splitlines())
               for path in (REPO / "tasks").rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 300} == {}


STAGES = sorted(path.parent.name for path in (REPO / "tasks").glob("*/__init__.py"))


def _stage_of(path: Path) -> str | None:
    parts = path.relative_to(REPO).parts
    return parts[1] if parts[0] == "tasks" and len(parts) > 2 else None


def test_every_stage_has_a_public_face_and_every_name_in_it_resolves():
    assert {"storage", "squad", "extract", "cluster", "research", "report", "compare", "finetune"} <= set(STAGES)
    for stage in STAGES:
        package = importlib.import_module(f"tasks.{stage}")
        assert package.__all__, f"tasks/{stage}/__init__.py exports nothing"
        for name in package.__all__:
            assert not name.startswith("_"), f"tasks.{stage} exports the private name {name}"
            assert not inspect.ismodule(getattr(package, name)), f"tasks.{stage}.{name} resolves to a module"


def reaching_in(source: str, own: str | None, where: str) -> list[str]:
    """Where `source` (of stage `own`, None outside the stages) imports another stage other than through its
    public face."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            problems += [f"{where}:{node.lineno}: import {alias.name}" for alias in node.names
                         if alias.name.count(".") > 1 and alias.name.split(".")[0] == "tasks"
                         and alias.name.split(".")[1] in set(STAGES) - {own}]
        if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tasks.")):
            continue
        stage = node.module.split(".")[1]
        if stage not in STAGES or stage == own:
            continue
        if node.module != f"tasks.{stage}":
            problems.append(f"{where}:{node.lineno}: from {node.module} import ...")
            continue
        public = importlib.import_module(f"tasks.{stage}").__all__
        problems += [f"{where}:{node.lineno}: {alias.name} is not in tasks.{stage}.__all__" for alias in node.names
                     if alias.name not in public]
    return problems


def test_no_module_reaches_into_another_stage():
    """tasks/ and flows/ use another stage only through its public face: `from tasks.STAGE import NAME`, NAME in
    its __all__; never a module below it, a private name or a name it does not export."""
    paths = [p for folder in ("tasks", "flows") for p in sorted((REPO / folder).rglob("*.py"))]
    assert [problem for path in paths
            for problem in reaching_in(path.read_text(), _stage_of(path), path.relative_to(REPO).as_posix())] == []


def test_the_rule_names_each_way_of_reaching_in():
    source = ("from tasks.storage.location import Location\nfrom tasks.storage import _private, Location\n"
              "import tasks.cluster.sample\nfrom tasks.report import swapped_in\nfrom tasks.cluster import Sample\n")
    problems = reaching_in(source, "report", "probe.py")
    assert [p.split(": ", 1)[1] for p in problems] == [
        "from tasks.storage.location import ...", "_private is not in tasks.storage.__all__",
        "import tasks.cluster.sample"]
