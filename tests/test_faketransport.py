"""The scripted FakeTransport (deployer/faketransport.py) and the Transport Protocol it
implements: every scripted behaviour, checked the way the executor would see it."""

from __future__ import annotations

import io
import re
import threading

import pytest

from deployer.errors import RunFailed, TransportError
from deployer.faketransport import FakeTransport, Reply
from deployer.models import Host
from deployer.transport import (
    PROCESS_ALIVE,
    PROCESS_GONE,
    PROCESS_STOPPED,
    ConnectionLost,
    RemoteProcess,
    StepInterrupted,
    Transport,
    still_running_reason,
    stop_remote_process,
)


def _connected(**kwargs) -> FakeTransport:
    fake = FakeTransport(**kwargs)
    fake.connect()
    return fake


def test_it_satisfies_the_protocol() -> None:
    fake: Transport = FakeTransport()  # the static check (mypy) of the same claim
    assert isinstance(fake, Transport)


def test_unscripted_commands_succeed_silently_and_are_logged() -> None:
    fake = _connected()
    r = fake.run("echo hi", cwd="/srv", env={"A": "1"}, stdin="data", sudo=True, timeout=5)
    assert r.ok and r.stdout == "" and r.exit_code == 0
    [call] = fake.runs()
    assert (call.script, call.cwd, call.env, call.stdin, call.sudo, call.timeout) == (
        "echo hi", "/srv", {"A": "1"}, "data", True, 5)
    assert call.result is r and fake.current_process is None
    assert fake.kinds() == ["connect", "run"]


def test_replies_by_regex_in_order_the_last_repeating() -> None:
    fake = _connected()
    fake.when(r"compose pull", Reply(exit_code=1, stderr="no network"), Reply(stdout="ok\n"))
    fake.when(re.compile(r"^echo"), Reply(stdout="echoed\n"))
    lines: list[tuple[str, str]] = []
    first = fake.run("docker compose pull", on_line=lambda s, line: lines.append((s, line)))
    assert first.exit_code == 1 and not first.ok and first.tail == ["no network"]
    assert lines == [("stderr", "no network")]
    assert [fake.run("docker compose pull").stdout for _ in range(2)] == ["ok\n", "ok\n"]
    assert fake.run("echo x").stdout == "echoed\n"
    assert fake.run("true").stdout == ""  # no rule: the default


def test_predicate_matchers_see_the_whole_call() -> None:
    fake = _connected()
    fake.when(lambda call: call.sudo, Reply(exit_code=1, stderr="sudo: a password is required"))
    assert fake.run("id", sudo=True).exit_code == 1
    assert fake.run("id").ok


def test_check_raises_run_failed() -> None:
    fake = _connected()
    fake.when("boom", Reply(exit_code=3, stdout="a\nb\n"))
    with pytest.raises(RunFailed, match="exited 3: a | b"):
        fake.run("boom", check=True, what="the boom")


def test_a_hang_times_out_at_once_and_the_group_is_stopped() -> None:
    fake = _connected()
    seen: list[RemoteProcess] = []
    fake.on_process = seen.append
    fake.when("sleep", Reply(hang=True, stdout="started\n"))
    r = fake.run("sleep 100", timeout=30)
    assert r.timed_out and not r.ok and r.stopped is True and r.duration == 30
    assert r.tail == ["started"]
    assert seen == [fake.runs()[0].process]  # long-running: announced for the record
    assert fake.current_process is None and fake.processes == {}


def test_a_hang_without_timeout_waits_for_interrupt() -> None:
    fake = _connected()
    fake.when("sleep", Reply(hang=True))
    results = []
    worker = threading.Thread(target=lambda: results.append(fake.run("sleep 100")))
    worker.start()
    while not fake.runs():
        threading.Event().wait(0.001)
    fake.interrupt()
    worker.join(10)
    assert not worker.is_alive()
    [r] = results
    assert r.interrupted and not r.timed_out and r.stopped is True


def test_a_leftover_keeps_running_and_stop_process_finds_it() -> None:
    fake = _connected()
    fake.when("migrate", Reply(hang=True, leftover=True))
    r = fake.run("migrate", timeout=10)
    assert r.timed_out and r.stopped is False and r.exit_code == -1
    proc = fake.current_process
    assert proc is not None and proc.pgid in fake.processes
    assert stop_remote_process(fake, proc) == PROCESS_STOPPED
    assert fake.processes == {}
    assert fake.stop_process(proc) == PROCESS_GONE  # stopped already
    assert still_running_reason(PROCESS_GONE, proc) == ""


def test_an_unstoppable_leftover_stays_alive() -> None:
    fake = _connected()
    proc = fake.start_process("sleep forever", sudo=True, unstoppable=True)
    status = fake.stop_process(proc, grace=1)
    assert status == PROCESS_ALIVE and proc.pgid in fake.processes
    assert "still running after TERM and KILL" in still_running_reason(status, proc)
    # Same pid, another process (pid reuse): not the recorded group.
    other = RemoteProcess(pgid=proc.pgid, start="1", boot_id=proc.boot_id)
    assert fake.stop_process(other) == PROCESS_GONE


def test_a_lost_connection_raises_and_leaves_the_process_named() -> None:
    fake = _connected()
    fake.when("restart", Reply(stdout="restarting\n", lose_connection=True, leftover=True))
    lines: list[str] = []
    with pytest.raises(ConnectionLost, match="lost during the restart") as info:
        fake.run("systemctl restart app", on_line=lambda s, line: lines.append(line),
                 what="the restart")
    assert isinstance(info.value, TransportError)
    assert lines == ["restarting"]
    proc = fake.current_process
    assert proc is not None and not fake.connected
    with pytest.raises(TransportError, match="closed"):
        fake.run("true")
    fake.connect()  # a reconnect reaches the same host
    assert fake.stop_process(proc) == PROCESS_STOPPED


def test_ctrl_c_raises_step_interrupted_caught_as_keyboard_interrupt() -> None:
    fake = _connected()
    fake.when("long", Reply(ctrl_c=True), Reply(ctrl_c=True, second=True))
    with pytest.raises(KeyboardInterrupt) as info:
        fake.run("long")
    assert isinstance(info.value, StepInterrupted)
    assert info.value.second is False and info.value.result.interrupted
    assert info.value.result.stopped is True and fake.current_process is None
    with pytest.raises(StepInterrupted) as info:
        fake.run("long")
    assert info.value.second is True and info.value.result.stopped is False
    assert fake.current_process is not None  # not seen to end


def test_a_failing_line_callback_is_raised_after_the_command() -> None:
    fake = _connected()
    fake.when("x", Reply(stdout="a\nb\n"))

    def on_line(stream: str, line: str) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        fake.run("x", on_line=on_line)
    assert fake.runs()[0].result.tail == ["a"]  # the command is stopped at the failure


def test_uploads_are_recorded_and_can_fail() -> None:
    fake = _connected()
    fake.put(b"one", "/srv/app/.env", mode=0o600)
    fake.put(io.BytesIO(b"two"), "/srv/app/archive.tar")
    assert fake.uploads == {"/srv/app/.env": b"one", "/srv/app/archive.tar": b"two"}
    put = [c for c in fake.calls if c.kind == "put"][0]
    assert (put.path, put.data, put.mode) == ("/srv/app/.env", b"one", 0o600)
    fake.fail_put(r"/root/", PermissionError(13, "cannot write /root/x"))
    with pytest.raises(PermissionError):
        fake.put(b"x", "/root/x")
    fake.fail_put(r"/lost", ConnectionLost("connection lost"))
    with pytest.raises(ConnectionLost):
        fake.put(b"x", "/lost/x")
    assert not fake.connected and "/root/x" not in fake.uploads


def test_connect_errors_are_raised_in_turn_and_factory_hands_out_the_fake() -> None:
    fake = FakeTransport()
    fake.connect_errors.append(TransportError("connection refused"))
    host = Host(name="web", address="127.0.0.5", user="deploy", port=2222)
    made = fake.factory(host, False, "pw")
    assert made is fake and fake.host is host and fake.sudo_password == "pw"
    assert fake.label == "web (deploy@127.0.0.5:2222)"
    with pytest.raises(TransportError, match="refused"):
        fake.connect()
    fake.connect()
    assert fake.connected and fake.host_key_fingerprint == "SHA256:fake"
    fake.close()
    assert not fake.connected and fake.kinds()[-1] == "close"
    assert fake.run("true").ok and fake.connected  # opens again on first use, as SSH does


def test_effects_run_before_the_reply() -> None:
    fake = _connected()
    touched: list[str] = []
    fake.when("deploy", Reply(effect=lambda call: touched.append(call.script)))
    fake.run("deploy v2")
    assert touched == ["deploy v2"]


# -- the executor's policies through the fake (milliseconds, no sshd) --------------------


def _executor(tmp_path, text: str, fake: FakeTransport, **options):
    import textwrap

    import yaml

    from deployer.executor import Executor, RunOptions
    from deployer.session import load_session

    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "app.yml").write_text(textwrap.dedent(text))
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(
        {"hosts": {"t": {"host": "127.0.0.1", "user": "deploy"}}}))
    session = load_session("app", project_dir=str(tmp_path), host="t", cli_vars=[],
                           environ={})
    host = session.hosts[0]
    return Executor(session.runbook, host, variables=session.vars_for(host),
                    secrets=session.secrets, redactor=session.redactor,
                    digests=session.digests,
                    options=RunOptions(skip_preflight=True, **options),
                    project_dir=str(tmp_path), transport_factory=fake.factory)


def test_executor_retries_through_the_fake(tmp_path) -> None:
    fake = FakeTransport()
    fake.when("flaky", Reply(exit_code=1, stderr="try again"), Reply(exit_code=1),
              Reply(stdout="done\n"))
    out = _executor(tmp_path, """
        lock: false
        steps:
          - {id: flaky, run: "echo flaky", retries: 3, delay: 0}
    """, fake).run()
    assert out.exit_code == 0
    assert len(fake.runs("flaky")) == 3


def test_executor_rolls_back_through_the_fake(tmp_path) -> None:
    fake = FakeTransport()
    fake.when("migrate", Reply(exit_code=5, stderr="relation exists"))
    out = _executor(tmp_path, """
        lock: false
        steps:
          - {id: first, run: "echo apply-first", rollback: {run: "echo undo-first"}}
          - {id: second, run: "echo migrate"}
    """, fake).run()
    assert out.exit_code != 0 and out.failure.step_id == "second"
    assert [c.script for c in fake.runs("apply-first|migrate|undo-first")] == [
        "echo apply-first", "echo migrate", "echo undo-first"]


def test_executor_keeps_a_leftover_and_does_not_roll_back_beside_it(tmp_path) -> None:
    fake = FakeTransport()
    fake.when("restart", Reply(lose_connection=True, leftover=True, unstoppable=True))
    out = _executor(tmp_path, """
        lock: false
        steps:
          - {id: first, run: "echo apply-first", rollback: {run: "echo undo-first"}}
          - {id: second, run: "systemctl restart app"}
    """, fake).run()
    assert out.exit_code != 0
    assert fake.runs("undo-first") == []  # never undone alongside a live command
    stops = [c for c in fake.calls if c.kind == "stop_process"]
    assert stops and stops[0].result == PROCESS_ALIVE
    assert "may still be running" in out.message
