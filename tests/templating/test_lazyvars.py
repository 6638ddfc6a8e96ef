"""deployer.templating.lazyvars: render on first use, once; cycles named; look-ups kept."""

from __future__ import annotations

from typing import Any

import pytest

from deployer.templating.lazyvars import LazyVars, VarCycle


def _vars(raw: dict[str, Any]) -> tuple[LazyVars, list[str]]:
    calls: list[str] = []
    holder: dict[str, LazyVars] = {}

    def render(value: Any, where: str) -> Any:
        calls.append(where)
        if isinstance(value, str) and value.startswith("="):
            return holder["v"][value[1:]]  # "=name": the value of another variable
        return f"<{value}>"

    holder["v"] = LazyVars(raw, render)
    return holder["v"], calls


def test_values_render_on_first_access_only() -> None:
    lv, calls = _vars({"a": "x", "b": "=a", "unused": "never"})
    assert lv["b"] == "<x>"
    assert lv["a"] == "<x>" and lv.get("a") == "<x>"
    assert calls == ["vars.b", "vars.a"]
    assert lv.raw("unused") == "never" and "vars.unused" not in calls
    assert lv.get("nope", 7) == 7


def test_a_cycle_is_named_with_its_chain_and_leaves_no_trace() -> None:
    lv, _ = _vars({"a": "=b", "b": "=c", "c": "=a"})
    with pytest.raises(VarCycle, match="^a -> b -> c -> a$"):
        lv["a"]
    with pytest.raises(VarCycle, match="^b -> c -> a -> b$"):
        lv["b"]  # the failed look-up left nothing active


def test_set_done_values_are_never_rendered_and_lookups_are_recorded() -> None:
    lv, calls = _vars({"a": "x"})
    lv.set_done("host", {"name": "{{ not rendered }}"})
    assert lv["host"] == {"name": "{{ not rendered }}"} and calls == []
    lv.looked_up = set()
    assert "a" in lv and "zz" not in lv
    assert lv.looked_up == {"a", "zz"}
    assert dict(lv.items()) == {"a": "<x>", "host": {"name": "{{ not rendered }}"}}
    assert lv.values() == ["<x>", {"name": "{{ not rendered }}"}]
