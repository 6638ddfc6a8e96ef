"""Secrets come from env, a dotenv file or an inventory command; all missing named."""

from __future__ import annotations

import sys

import pytest

from deployer.errors import InputError, SecretError
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


# Each form a Compose / dotenv user writes, and the exact value it must give.
DOTENV_FORMS = [
    ("unquoted", "tok=s3cr3t-t0ken-value\n", "s3cr3t-t0ken-value"),
    ("double quotes and a comment", 'tok="s3cr3t-t0ken-value" # prod token\n',
     "s3cr3t-t0ken-value"),
    ("single quotes", "tok='s3cr3t-t0ken-value'\n", "s3cr3t-t0ken-value"),
    ("single quotes keep escapes", "tok='a\\nb\\\"c'\n", 'a\\nb\\"c'),
    ("escapes in double quotes", 'tok="line1\\nline2 \\"q\\" back\\\\slash\\ttab"\n',
     'line1\nline2 "q" back\\slash\ttab'),
    ("export", "export tok=s3cr3t-t0ken-value\n", "s3cr3t-t0ken-value"),
    ("export and quotes", "export tok='with space'\n", "with space"),
    ("inline comment after an unquoted value", "tok=s3cr3t-value # rotated 2026-11\n",
     "s3cr3t-value"),
    ("multi-line double-quoted", 'tok="-----BEGIN KEY-----\nabc\n-----END KEY-----"\n',
     "-----BEGIN KEY-----\nabc\n-----END KEY-----"),
    ("multi-line single-quoted", "tok='first\nsecond'\n", "first\nsecond"),
    ("= inside the value", "tok=a=b==c\n", "a=b==c"),
    ("trailing spaces", "tok=s3cr3t-value   \n", "s3cr3t-value"),
    ("spaces kept inside quotes", 'tok="  padded  "  \n', "  padded  "),
    ("# inside double quotes", 'tok="pa#ss # word"\n', "pa#ss # word"),
    ("# inside single quotes", "tok='pa#ss # word' # comment\n", "pa#ss # word"),
    ("# without a space before it", "tok=pa#ss\n", "pa#ss"),
    ("$ is literal", "other=x\ntok='p$a${other}ss'\n", "p$a${other}ss"),
    ("$ is literal unquoted too", "tok=p${HOME}ss\n", "p${HOME}ss"),
    ("spaces around =", "tok = s3cr3t-value\n", "s3cr3t-value"),
    ("empty value", "tok=\n", ""),
    ("CRLF line ends", "# c\r\ntok=s3cr3t-value\r\nb=2\r\n", "s3cr3t-value"),
    ("comments and blank lines around", "# header\n\n  # indented\ntok=v4lue\n\n", "v4lue"),
    ("last one wins", "tok=first-value\ntok=second-value\n", "second-value"),
]


@pytest.mark.parametrize("text, expected", [pytest.param(t, e, id=i) for i, t, e in DOTENV_FORMS])
def test_dotenv_form_gives_the_exact_value(text, expected):
    assert parse_dotenv(text)["tok"] == expected


@pytest.mark.parametrize("text, expected", [pytest.param(t, e, id=i) for i, t, e in DOTENV_FORMS
                                            if e])
def test_secrets_file_value_reaches_resolve_exactly(tmp_path, text, expected):
    f = tmp_path / "prod.env"
    f.write_bytes(("\ufeff" + text).encode())  # an editor's byte-order mark too
    assert resolve_secrets(["tok"], Inv({}), str(f), {}) == {"tok": expected}


@pytest.mark.parametrize("text, line", [
    ("A=1\nnonsense here\n", 2),
    ("A=1\nB='never closed\nC=3\n", 2),
    ('A=1\n\nB="x" trailing words\n', 3),
    ("A=1\n\n\n  \nnot a line\n", 5),
])
def test_unparsable_line_is_input_error_at_file_line(tmp_path, text, line):
    f = tmp_path / "prod.env"
    f.write_text(text)
    with pytest.raises(InputError) as info:
        resolve_secrets(["A"], Inv({}), str(f), {})
    (problem,) = info.value.problems
    assert problem.position.line == line and problem.position.file.endswith("prod.env")
    assert "NAME=value" in problem.message and "quote" in problem.hint
    assert info.value.exit_code == 2


def test_name_without_value_is_refused_with_its_line(tmp_path):
    f = tmp_path / "prod.env"
    f.write_text("A=1\n# c\nexport api_token\nB=2\n")
    with pytest.raises(InputError) as info:
        resolve_secrets(["A"], Inv({}), str(f), {})
    (problem,) = info.value.problems
    assert problem.position.line == 3 and "`api_token` has no value" in problem.message
    assert "api_token=value" in problem.hint


def test_bad_line_error_never_shows_the_line(tmp_path):
    f = tmp_path / "prod.env"
    f.write_text("db='hunter2-secret-value\n")
    with pytest.raises(InputError) as info:
        resolve_secrets(["db"], Inv({}), str(f), {})
    assert "hunter2" not in str(info.value) + info.value.hint


def test_dotenv_warning_does_not_leak_to_logging(tmp_path, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    with pytest.raises(InputError):
        parse_dotenv("broken line\n")
    assert not [r for r in caplog.records if r.name.startswith("dotenv")]


def test_missing_secrets_file(tmp_path):
    with pytest.raises(SecretError, match="not found"):
        resolve_secrets(["x"], Inv({}), str(tmp_path / "nope"), {})


def test_example_env_allows_a_bare_name(tmp_path):
    from deployer.diagnose.doctor import parse_env_file

    f = tmp_path / ".env.example"
    f.write_text("SENTRY_DSN\nSECRET_KEY='change-me'\n")
    assert parse_env_file(f) == {"SENTRY_DSN": "", "SECRET_KEY": "change-me"}


def test_no_hand_written_dotenv_parser_left():
    import inspect

    from deployer import secrets

    source = inspect.getsource(secrets)
    assert "dotenv_values" in source and "_unquote" not in source


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


# ------------------------------------------------------------- end to end, real sshd

QUOTED_TOKEN = "s3cr3t-t0ken-value"
KEY_LINES = "-----BEGIN KEY-----\nK3yL1ne-one\nK3yL1ne-two\n-----END KEY-----"


def test_quoted_secrets_file_value_reaches_the_host_exactly_and_is_never_shown(tmp_path,
                                                                               sshd):
    from tests.executor_helpers import RunProject

    project = RunProject(tmp_path, sshd)
    (project.root / "prod.env").write_text(
        "# production secrets\n"
        f'tok="{QUOTED_TOKEN}" # prod token\n'
        f"export key='{KEY_LINES}'\n")
    (project.root / "templates").mkdir()
    (project.root / "templates" / "app.env.j2").write_text("TOKEN={{ secrets.tok }}\n")
    project.runbook("app", """
        secrets: [tok, key]
        steps:
          - id: from_env
            run: |
              printf '%s' "$TOK" > {{ remote_dir }}/tok-from-env
              printf '%s' "$KEY" > {{ remote_dir }}/key-from-env
              echo "env says $TOK"
              printf '%s\\n' "$KEY"
            env: {TOK: "{{ secrets.tok }}", KEY: "{{ secrets.key }}"}
          - id: upload
            upload: {template: app.env.j2, dest: "{{ remote_dir }}/app.env", mode: "0600"}
          - id: echo
            run: "echo token is {{ secrets.tok | quote }}; cat {{ remote_dir }}/app.env"
    """)
    project.env.pop("DEPLOYER_SECRET_DB_PASSWORD")
    r = project.cli("run", "app", "--host", "t", "--secrets-file",
                    str(project.root / "prod.env"))
    assert r.returncode == 0, r.stdout + r.stderr
    # the exact value, without the quotes or the comment, is what the host received
    assert project.read_remote("tok-from-env") == QUOTED_TOKEN
    assert project.read_remote("key-from-env") == KEY_LINES
    assert project.read_remote("app.env") == f"TOKEN={QUOTED_TOKEN}\n"
    assert "env says ***" in r.stdout and "token is ***" in r.stdout
    assert "TOKEN=***" in r.stdout
    files = {"stdout": r.stdout.encode(), "stderr": r.stderr.encode()}
    # everything deployer wrote locally: run records, logs, anything else under .deployer
    files.update({str(p): p.read_bytes() for p in (project.root / ".deployer").rglob("*")
                  if p.is_file()})
    assert any(name.endswith(".json") for name in files)
    assert any(name.endswith(".log") for name in files)
    shown = project.cli("show", project.record()["id"], "--json")
    files["show --json"] = shown.stdout.encode()
    for where, data in files.items():
        for form in (QUOTED_TOKEN, f'"{QUOTED_TOKEN}"', "K3yL1ne-one", "K3yL1ne-two"):
            assert form.encode() not in data, f"{form!r} in {where}"


def test_the_documented_secrets_file_example_means_what_the_docs_say():
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "runbooks.md").read_text()
    block = doc.split("### The secrets file")[1].split("```sh\n")[1].split("```")[0]
    assert parse_dotenv(block) == {
        "db_password": "s3cr3t-value", "api_token": "s3cr3t-t0ken-value",
        "jwt_secret": 'p$ss#w"rd', "smtp_password": 'tab\tand "quote"',
        "tls_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
                   "-----END PRIVATE KEY-----",
        "webhook": "https://x.example/a=b=c", "empty_ok": ""}
