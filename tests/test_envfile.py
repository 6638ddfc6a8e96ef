"""deployer.envfile: env-file values as Compose v1 and v2 read them, and the refusals
(naming the variable, never the value). The v2 rules are checked against python-dotenv's
reading of the same line where both agree (single-quoted values are literal)."""

from __future__ import annotations

import io

import pytest
from dotenv import dotenv_values

from deployer.envfile import EnvValueError, env_quote, is_v1

V2, V1 = "docker compose", "docker-compose"


@pytest.mark.parametrize("value", ["plain", "a-b_c.d", "postgresql+psycopg://u:p%2F@h:5432/db",
                                   "", "1", "x=y", "a,b;c"])
def test_plain_values_are_written_bare_for_both(value: str) -> None:
    assert env_quote(value, "v", V2) == value == env_quote(value, "v", V1)


@pytest.mark.parametrize("value", ["My App", "pa$$word", "a #b", 'say "hi"', "back\\slash",
                                   "tab\there"])
def test_v2_single_quotes_what_is_not_plain_and_reads_it_back_literally(value: str) -> None:
    line = env_quote(value, "v", V2)
    assert line == f"'{value}'"
    assert dotenv_values(stream=io.StringIO(f"V={line}\n"), interpolate=False)["V"] == value


@pytest.mark.parametrize("value", ["it's", "two\nlines"])
def test_v2_refuses_what_has_no_literal_form(value: str) -> None:
    with pytest.raises(EnvValueError) as error:
        env_quote(value, "env.NAME", V2)
    assert "env.NAME" in str(error.value) and value not in str(error.value)


def test_v1_refuses_anything_quoted() -> None:
    with pytest.raises(EnvValueError) as error:
        env_quote("My App", "secret jwt_secret", V1)
    assert "secret jwt_secret" in str(error.value) and "My App" not in str(error.value)
    assert "Compose v2" in error.value.hint


def test_flavour_and_plan_placeholders() -> None:
    assert is_v1("docker-compose") and not is_v1("docker compose") and not is_v1(None)
    assert env_quote("<captured: api_image_name>", "v", V1) == "<captured: api_image_name>"
