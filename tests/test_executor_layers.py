"""The executor's rooms keep the import picture: each opens with its role, none imports
the step loop, the application layer or the CLI, and importing the executor loads no
template engine (commands that never render stay light)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deployer"
ROOMS = ["run_types", "run_output", "step_render", "command_runner", "attempts",
         "step_failure", "after_failure", "run_rollback", "cancellation", "opening",
         "resume_checks", "run_start", "run_ending"]


def _imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


@pytest.mark.parametrize("room", ROOMS)
def test_a_room_states_its_role_and_imports_nothing_above_it(room: str) -> None:
    tree = ast.parse((PACKAGE / f"{room}.py").read_text())
    doc = ast.get_docstring(tree)
    assert doc and len(doc.split()) > 10, f"{room}.py opens without its role"
    upward = sorted(m for m in _imports(tree)
                    if m == "deployer.executor" or m.startswith(("deployer.cli",
                                                                 "deployer.app")))
    assert upward == [], f"{room}.py imports {upward}"


def test_importing_the_executor_loads_no_template_engine() -> None:
    code = ("import sys, deployer.executor; "
            "print(' '.join(m for m in ('jinja2', 'deployer.planner', 'deployer.cli', "
            "'deployer.app') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent).stdout
    assert out.strip() == ""
