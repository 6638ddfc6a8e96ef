"""Secrets come from env, a dotenv file or an inventory command; all missing named."""

from __future__ import annotations

import sys

import pytest

from deployer.errors import SecretError
from deployer.inventory import load_inventory
from deployer.secrets import parse_dotenv, placeholder_secrets, resolve_secrets


class Inv:
    def __init__(self, commands):
        self.secret_commands = commands


def test_env_wins_over_file_and_command(tmp_path):
    f = tmp_path / ".secrets"
    f.write_text("db_password=from-file\napi_key='from file'\n")
    inv = Inv({"db_password": "echo from-command", "token": "printf 'tok-en\\n'"})
    env = {"DEPLOYER_SECRET_DB_PASSWORD": "from-env"}
    got = resolve_secrets(["db_password", "api_key", "token"], inv, str(f), env)
    assert got == {"db_password": "from-env", "api_key": "from file", "token": "tok-en"}


def test_all_missing_named_in_one_error(tmp_path):
    with pytest.raises(SecretError) as info:
        resolve_secrets(["a_one", "b_two", "present"], Inv({}), None,
                        {"DEPLOYER_SECRET_PRESENT": "x"})
    message = str(info.value)
    assert "`a_one`" in message and "`b_two`" in message and "present" not in message
    assert "DEPLOYER_SECRET_A_ONE" in info.value.hint


def test_failing_command_reports_status_not_stdout():
    inv = Inv({"db": "printf '%s-%s' leaked value; echo oops >&2; exit 3"})
    with pytest.raises(SecretError) as info:
        resolve_secrets(["db"], inv, None, {"PATH": "/usr/bin:/bin"})
    assert "exit status 3" in str(info.value) and "oops" in str(info.value)
    assert "leaked-value" not in str(info.value)


def test_inventory_command_source(tmp_path):
    inv_file = tmp_path / "inventory.yml"
    inv_file.write_text(
        "hosts: {vps: {host: 127.0.0.1}}\n"
        f"secrets: {{db_password: {{command: \"{sys.executable} -c 'print(4242*2)'\"}}}}\n")
    inv = load_inventory(str(inv_file), str(tmp_path))
    assert resolve_secrets(["db_password"], inv, None, {"PATH": "/usr/bin:/bin"}) == {
        "db_password": "8484"}


def test_dotenv_parsing():
    text = ('# c\nexport A=1\nB="two words # not comment"\nC=plain # comment\n'
            "D='it''s'\nE=\"line1\\nline2\"\nF=\"multi\nline\"\n")
    got = parse_dotenv(text)
    assert got["A"] == "1"
    assert got["B"] == "two words # not comment"
    assert got["C"] == "plain"
    assert got["E"] == "line1\nline2"
    assert got["F"] == "multi\nline"


def test_dotenv_bad_line_and_missing_file(tmp_path):
    with pytest.raises(SecretError, match=":2: expected NAME=value"):
        parse_dotenv("A=1\nnonsense\n")
    with pytest.raises(SecretError, match="not found"):
        resolve_secrets(["x"], Inv({}), str(tmp_path / "nope"), {})


def test_placeholders():
    assert placeholder_secrets(["a"]) == {"a": "<secret:a>"}


def test_secrets_too_short_to_mask_are_refused_all_named():
    env = {"DEPLOYER_SECRET_A": "ab", "DEPLOYER_SECRET_B": "long-enough", "DEPLOYER_SECRET_C": "x",
           "DEPLOYER_SECRET_EMPTY": ""}
    with pytest.raises(SecretError) as info:
        resolve_secrets(["a", "b", "c", "empty"], Inv({}), None, env)
    message = str(info.value)
    assert "`a`" in message and "`c`" in message and "`b`" not in message
    assert "shorter than 4 characters" in message
    assert "ab" not in message.replace("`a`", "") and info.value.exit_code == 2
