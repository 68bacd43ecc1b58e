"""The library's shape: every module of `tasks/` imports without Prefect (so that benchmarks and notebooks run
where Prefect is not installed) and stays small enough to read."""

from __future__ import annotations

import subprocess
import sys

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
