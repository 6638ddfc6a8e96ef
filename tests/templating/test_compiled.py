"""deployer.templating.compiled: the compile cache and the fast-path splitter."""

from __future__ import annotations

import jinja2
import pytest

from deployer.templating import compiled as mod
from deployer.templating.compiled import compiled, simple_parts


def test_compiled_is_cached_per_environment_and_text() -> None:
    one, two = jinja2.Environment(), jinja2.Environment()
    first = compiled(one, "{{ a }}")
    assert compiled(one, "{{ a }}") is first
    assert compiled(two, "{{ a }}") is not first
    assert first.render(a=1) == "1"


def test_compiled_cache_is_dropped_whole_when_full(monkeypatch) -> None:
    monkeypatch.setattr(mod, "_COMPILED", {})
    monkeypatch.setattr(mod, "_COMPILED_MAX", 2)
    env = jinja2.Environment()
    compiled(env, "a")
    compiled(env, "b")
    compiled(env, "c")
    assert [text for _, text in mod._COMPILED] == ["c"]


@pytest.mark.parametrize(("text", "parts"), [
    ("plain", ("plain",)),
    ("", ()),
    ("{{ a }}", (("a", None),)),
    ("x {{a.b}} y {{ c }}", ("x ", ("a", "b"), " y ", ("c", None))),
])
def test_simple_parts_splits_plain_lookups(text: str, parts: tuple) -> None:
    assert simple_parts(text) == parts


@pytest.mark.parametrize("text", [
    "{{ a | upper }}", "{% if a %}x{% endif %}", "{# c #}", "{{ true }}", "{{ a.b.c }}",
    "{{ a }}\r\n", "{{{ a }}}", "{{ a ~ b }}", "{{- a }}", "{{ a }} {{ b + 1 }}",
])
def test_simple_parts_leaves_the_rest_to_jinja(text: str) -> None:
    assert simple_parts(text) is None
