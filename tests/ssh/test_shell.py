"""deployer/ssh/shell.py: the agent and its frames, run by a local bash (the same
program the host runs), read back with the framing."""

from __future__ import annotations

import subprocess

import pytest

from deployer.errors import InputError
from deployer.ssh.framing import DONE, Stream, end_fields
from deployer.ssh.shell import AGENT, ansi_c_quote, frame, sh_quote, step_code

TOKEN = "feedc0ffee0123456789abcd"


def _agent(*codes: tuple[str, str]) -> list[tuple[int, list[str], list[str]]]:
    """Run the frames on one local agent; (exit code, stdout lines, stderr lines) each."""
    data = AGENT.encode() + b"".join(frame(TOKEN, c) for c in codes)
    done = subprocess.run(["bash", "-s"], input=data, capture_output=True, timeout=60)
    results = []
    out_left, err_left = done.stdout, done.stderr
    for _ in codes:
        lines: dict[str, list[str]] = {"stdout": [], "stderr": []}

        def emit(name: str, line: str, lines=lines) -> None:
            lines[name].append(line)

        out = Stream("stdout", TOKEN.encode(), emit, True, out_left)
        err = Stream("stderr", TOKEN.encode(), emit, False, err_left)
        out.feed(b"")
        err.feed(b"")
        assert out.phase == DONE and err.phase == DONE, done
        assert out.start_value.split()[0].isdigit()  # the group leader's pid
        code, on_host = end_fields(out.value)
        assert on_host is not None and 0 <= on_host < 60  # the host's own clock said
        results.append((code, lines["stdout"], lines["stderr"]))
        out_left, err_left = bytes(out.buf), bytes(err.buf)
    return results


def test_steps_run_in_order_on_one_agent_with_cwd_env_and_stdin(tmp_path) -> None:
    secret = "p@ss 'word' $HOME `x`\n\ttab"
    results = _agent(
        step_code("pwd; printf '%s' \"$TOKEN\"; echo; cat", str(tmp_path),
                  {"TOKEN": secret}, "line one\nno newline at end", False, None),
        step_code("echo oops >&2; exit 3", None, None, None, False, None),
        step_code("false; echo not reached", None, None, None, False, None),
    )
    code, out, err = results[0]
    assert code == 0 and err == []
    assert out == [str(tmp_path), *secret.split("\n"), "line one", "no newline at end"]
    assert results[1] == (3, [], ["oops"])
    assert results[2][0] == 1 and results[2][1] == []  # set -e


def test_secrets_never_reach_the_argv_of_the_command() -> None:
    code = step_code("true", None, {"DB_PASSWORD": "hunter2"}, "hunter2-in", True, "pw-42")
    command, feed = code
    assert "hunter2" not in command and "pw-42" not in command
    assert feed.startswith("pw-42\n") and "hunter2" in feed


def test_bad_input_is_refused_with_a_fix() -> None:
    with pytest.raises(InputError, match="NUL byte"):
        step_code("echo \0", None, None, None, False, None)
    with pytest.raises(InputError, match="invalid environment variable name"):
        step_code("true", None, {"1BAD": "x"}, None, False, None)
    with pytest.raises(InputError, match="newline"):
        step_code("true", None, None, None, True, "two\nlines")


@pytest.mark.parametrize("text", ["plain", "it's", "a\nb", "back\\slash", "\x01\x7f", "$(x)"])
def test_quoting_round_trips_through_bash(text: str) -> None:
    for quoted in (ansi_c_quote(text), sh_quote(text)):
        got = subprocess.run(["bash", "-c", f"printf '%s' {quoted}"], capture_output=True,
                             text=True, timeout=30).stdout
        assert got == text
    assert "\n" not in ansi_c_quote(text)
