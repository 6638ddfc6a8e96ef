"""deployer.templating.filters: each filter on its own, and through the environment
(where a refusal must name the value, never show it)."""

from __future__ import annotations

import json

import jinja2
import pytest

from deployer.templating.filters import (
    FILTERS,
    TemplateValueError,
    env_quote,
    env_value,
    quote,
    to_json,
)
from deployer.templating.jinjaenv import environment


def test_quote_shell_quotes_and_reads_none_as_empty() -> None:
    assert quote("a b'c") == "'a b'\"'\"'c'"
    assert quote(None) == "''"
    assert quote(5) == "5"


def test_filters_refuse_an_undefined_value_as_jinja_does() -> None:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    undefined = env.undefined(name="missing")
    for func in (quote, env_value, env_quote):
        with pytest.raises(jinja2.UndefinedError, match="missing"):
            func(undefined)


def test_to_json_sorts_keys_and_stringifies_the_rest() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    assert to_json({"b": 1, "a": [Odd()]}) == '{"a": ["odd"], "b": 1}'
    assert json.loads(to_json({"x": None})) == {"x": None}


@pytest.mark.parametrize("value", ["pa ss", "it's", "a$b", "a#b", "c:\\d", "x\ny", '"q"'])
def test_env_value_refuses_what_compose_v1_and_v2_read_differently(value: str) -> None:
    with pytest.raises(TemplateValueError) as info:
        env_value(value, "secrets.jwt")
    assert "secrets.jwt contains" in str(info.value)
    assert value not in str(info.value) and value not in info.value.hint
    assert "choose a secrets.jwt without" in info.value.hint


def test_env_value_passes_plain_values_and_plan_placeholders() -> None:
    assert env_value("postgres://db:5432/app") == "postgres://db:5432/app"
    assert env_value(None) == ""
    assert env_value("<captured: image_tag>") == "<captured: image_tag>"
    assert env_value("<secret:db_password>") == "<secret:db_password>"


def test_env_quote_refusal_becomes_a_template_value_error_with_the_hint() -> None:
    with pytest.raises(TemplateValueError) as info:
        env_quote("My App", "secret jwt_secret", "docker-compose")
    assert "My App" not in str(info.value)
    assert info.value.hint


def test_environment_registers_every_filter_and_names_the_field() -> None:
    env = environment(".")
    assert set(FILTERS) <= set(env.filters)
    assert env.from_string("{{ v | env_value('env.X') }}").render(v="ok") == "ok"
    with pytest.raises(TemplateValueError, match="env.X contains a space"):
        env.from_string("{{ v | env_value('env.X') }}").render(v="not ok")
