"""The packages split into rooms (deployer.templating, deployer.state, deployer.schema):
every room states its role, no room takes a name from its own package's facade (the
facade imports every room: a cycle waiting for the wrong import order), and the facade
exports every name it lists."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import deployer

PACKAGES = ("templating", "state", "schema")
ROOT = Path(deployer.__file__).parent


def _rooms(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("package", PACKAGES)
def test_rooms_state_their_role_and_take_nothing_from_their_facade(package: str) -> None:
    facade = f"deployer.{package}"
    rooms = {p.stem for p in _rooms(package)}
    assert len(rooms) >= 5
    for room in _rooms(package):
        tree = ast.parse(room.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{room.name} has no docstring"
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == facade:
                # `from deployer.state import atomic` names a room: allowed
                names = {a.name for a in node.names}
                assert names <= rooms, f"{room.name} imports {names - rooms} from {facade}"
            if isinstance(node, ast.Import):
                assert facade not in {a.name for a in node.names}, room.name


@pytest.mark.parametrize("package", PACKAGES)
def test_the_facade_exports_every_name_it_lists(package: str) -> None:
    module = importlib.import_module(f"deployer.{package}")
    assert len(module.__all__) >= 10
    assert [name for name in module.__all__ if not hasattr(module, name)] == []
