"""Posted scripts over a real sshd: a posted script runs on the host before the next
command, its answer reaches its poster when the transport next reads, and the step
that follows sees none of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.ssh import SSHTransport
from deployer.transport import ConnectionLost, RunResult


@pytest.fixture
def transport(sshd):
    t = SSHTransport(sshd.host(), kill_grace=1.0)
    t.connect()
    yield t
    t.close()


def test_a_posted_script_runs_before_the_next_command_and_hears_its_answer(
        transport: SSHTransport, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    heard: list[RunResult | None] = []
    transport.run("true")  # the agent is up
    assert transport.post(f"echo one >> {marks}; echo posted-out", heard.append)
    assert transport.post(f"echo two >> {marks}; echo oops >&2; [ a = b ]", heard.append)
    assert heard == []
    lines: list[tuple[str, str]] = []
    result = transport.run(f"cat {marks}; echo step-out",
                           on_line=lambda stream, line: lines.append((stream, line)))
    assert result.stdout.splitlines() == ["one", "two", "step-out"]
    assert lines == [("stdout", "one"), ("stdout", "two"), ("stdout", "step-out")]
    first, second = heard
    assert first is not None and first.exit_code == 0 and first.stdout == "posted-out\n"
    assert second is not None and second.exit_code == 1 and "oops" in second.tail
    assert transport.run("echo after").stdout == "after\n"  # the agent stayed in step


def test_a_posted_script_runs_in_the_agent_and_leaves_it_as_it_was(
        transport: SSHTransport) -> None:
    heard: list[RunResult | None] = []
    transport.run("true")
    before = transport.run("echo $$").stdout
    # No process of its own (the agent's pid), and its variable is gone after.
    transport.post("echo $BASHPID; __posted_var=1; unset __posted_var", heard.append)
    transport.post("read -r line; echo read=$?", heard.append)  # stdin is /dev/null
    assert transport.run("echo ${__posted_var-unset} $$").stdout == "unset " + before
    assert heard[0] is not None and heard[0].stdout == before
    assert heard[1] is not None and heard[1].stdout == "read=1\n"
    assert transport.run("echo still").stdout == "still\n"


def test_collect_and_close_read_the_answers(sshd, tmp_path: Path) -> None:
    t = SSHTransport(sshd.host())
    t.connect()
    heard: list[int] = []
    t.run("true")
    t.post("echo a", lambda r: heard.append(r.exit_code if r else -9))
    t.collect()
    assert heard == [0]
    t.collect()  # nothing posted: nothing to read
    t.post(f"touch {tmp_path / 'closed'}", lambda r: heard.append(r.exit_code if r else -9))
    t.close()
    assert heard == [0, 0] and (tmp_path / "closed").exists()


def test_posting_needs_a_persistent_agent_that_is_up(sshd) -> None:
    fresh = SSHTransport(sshd.host())
    fresh.connect()
    one_shot = SSHTransport(sshd.host(), persistent=False)
    one_shot.connect()
    try:
        assert not fresh.post("true", lambda r: None)  # starting one is a round trip
        one_shot.run("true")
        assert not one_shot.post("true", lambda r: None)
    finally:
        fresh.close()
        one_shot.close()


def test_a_lost_connection_loses_the_answers_and_the_step_behind_them(sshd) -> None:
    t = SSHTransport(sshd.host(), kill_grace=1.0)
    t.connect()
    heard: list[RunResult | None] = []
    try:
        t.run("true")
        assert t.post("sleep 30", heard.append)
        sshd.kill_sessions()
        with pytest.raises(ConnectionLost):
            t.run("echo never")
        assert heard == [None]
        t.connect()
        assert t.run("echo back").stdout == "back\n"  # a new agent, in step again
    finally:
        t.close()


def test_a_forked_post_runs_any_script_with_its_stdin_and_starts_the_agent(
        sshd, tmp_path: Path) -> None:
    t = SSHTransport(sshd.host())
    t.connect()
    heard: list[RunResult | None] = []
    data = "line one\nDEPLOYER_EOF_x\n$HOME `id` 'q'\nno newline at the end"
    try:
        # No agent yet: a forked post starts it (the command that follows saves that).
        assert t.post(f"cat > {tmp_path / 'in'}; set -- a b; cd /; echo $# $PWD; exit 3",
                      heard.append, stdin=data, fork=True)
        assert t.post("echo $BASHPID", heard.append, fork=True)
        agent_pid = t.run("echo $$ $PWD $#").stdout.split()
        home = t.run("cd ~ && pwd").stdout.strip()
        first, second = heard
        assert first is not None and first.exit_code == 3 and first.stdout == "2 /\n"
        assert (tmp_path / "in").read_text() == data  # exactly as written
        # It ran in a subshell: the agent's directory and arguments are untouched.
        assert second is not None and second.stdout.strip() != agent_pid[0]
        assert agent_pid[1:] == [home, "0"]
        assert t.run("echo in-step").stdout == "in-step\n"
    finally:
        t.close()


def test_a_forked_post_that_fails_set_e_reports_its_exit_code(
        transport: SSHTransport) -> None:
    heard: list[RunResult | None] = []
    transport.run("true")
    assert transport.post("false; echo not-reached", heard.append, fork=True)
    transport.collect()
    assert heard[0] is not None and heard[0].exit_code == 1 and heard[0].stdout == ""


def test_each_command_says_how_long_it_took_on_the_host(transport: SSHTransport) -> None:
    result = transport.run("sleep 0.3")
    assert result.host_seconds is not None and 0.25 <= result.host_seconds <= result.duration
    heard: list[RunResult | None] = []
    transport.post("sleep 0.2", heard.append, fork=True)
    transport.collect()
    assert heard[0] is not None and heard[0].host_seconds is not None
    assert heard[0].host_seconds >= 0.15
