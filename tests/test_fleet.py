"""Multi-host scheduling (deployer.fleet) against real sshd hosts on several loopback
addresses: parallel, rolling batches, max-fail, Ctrl-C, fleet records and resume.

Each host's work is real SSH work: ``run_one`` connects to that host's address and
appends ``start``/``end`` markers to a log file on the server. All servers share this
machine's filesystem, so the log gives one global order of what the hosts did; tests
assert that order (never timings). A "barrier" script lets hosts that must run at
the same time prove it: each waits until the expected number of hosts have started.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from deployer.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_ROLLED_BACK,
    EXIT_USAGE,
    LockHeldError,
    UsageError,
)
from deployer.fleet import (
    FleetRecord,
    HostOutcome,
    LatestRun,
    deployment_start_ns,
    latest_fleet_record,
    parse_max_fail,
    resume_actions,
    run_fleet,
    skipped_outcome,
    status_for_exit_code,
    worst_exit_code,
)
from deployer.models import Host
from tests.sshd import SshServer

ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


@pytest.fixture
def fleet(make_sshd, tmp_path) -> tuple[SshServer, list[Host], Path]:
    server = make_sshd(addresses=ADDRESSES)
    hosts = [server.host(f"web{i}", address=a) for i, a in enumerate(ADDRESSES, start=1)]
    log = tmp_path / "order.log"
    log.write_text("")
    return server, hosts, log


def ssh_run(server: SshServer, host: Host, script: str) -> int:
    """Run ``script`` on ``host`` (its own address) with the OpenSSH client."""
    proc = subprocess.run(server.ssh_argv(host.address) + ["--", "bash -s"], input=script,
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"})
    if proc.returncode == 255:
        raise AssertionError(f"ssh to {host.address} failed: {proc.stderr}")
    return proc.returncode


def make_run_one(server: SshServer, log: Path, fail: dict[str, int] | None = None,
                 barrier: int | dict[str, int] = 0) -> Callable[[Host], HostOutcome]:
    """A run_one doing real SSH work: log start (with the address sshd saw), optionally
    wait until ``barrier`` hosts (in all, or per host name) have started, log end, exit
    with the host's code."""
    fail = fail or {}

    def run_one(host: Host) -> HostOutcome:
        code = fail.get(host.name, 0)
        wait = ""
        want = barrier.get(host.name, 0) if isinstance(barrier, dict) else barrier
        if want:
            # Bounded, so a scheduler that serialises hosts makes the test fail, not hang.
            wait = (f'for i in $(seq 1 200); do [ "$(grep -c "^start" {log})" -ge {want} ] '
                    "&& break; sleep 0.05; done\n")
        script = (f'echo "start {host.name} ${{SSH_CONNECTION%% *}} '
                  f'$(echo $SSH_CONNECTION | cut -d" " -f3)" >> {log}\n'
                  f"{wait}"
                  f'echo "end {host.name}" >> {log}\n'
                  f"exit {code}\n")
        rc = ssh_run(server, host, script)
        status = status_for_exit_code(rc)
        return HostOutcome(host=host.name, status=status, exit_code=rc,
                           run_id=f"run-{host.name}",
                           failed_step="deploy" if rc else None,
                           diagnosis=f"exit {rc}" if rc else None)

    return run_one


def events_of(log: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()[:2]) for line in log.read_text().splitlines()]


def test_each_host_runs_over_its_own_address(fleet):
    server, hosts, log = fleet
    out = run_fleet(hosts, make_run_one(server, log), parallel=4)
    assert out.exit_code == EXIT_OK
    seen = {}
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts[0] == "start":
            seen[parts[1]] = parts[3]  # server-side address of the connection
    assert seen == {h.name: h.address for h in hosts}


def test_default_runs_hosts_one_after_another_in_order(fleet):
    server, hosts, log = fleet
    out = run_fleet(hosts, make_run_one(server, log))
    assert out.exit_code == EXIT_OK
    expected = []
    for h in hosts:
        expected += [("start", h.name), ("end", h.name)]
    assert events_of(log) == expected
    assert [o.host for o in out.hosts] == [h.name for h in hosts]
    assert all(o.status == "ok" for o in out.hosts)


def test_parallel_runs_hosts_at_the_same_time(fleet):
    server, hosts, log = fleet
    out = run_fleet(hosts, make_run_one(server, log, barrier=4), parallel=4)
    assert out.exit_code == EXIT_OK
    ev = events_of(log)
    # Every host started before any finished: they really overlapped.
    assert [e[0] for e in ev[:4]] == ["start"] * 4
    assert {e[1] for e in ev[:4]} == {h.name for h in hosts}


def test_rolling_batches_run_together_and_in_order(fleet):
    server, hosts, log = fleet
    seen_events = []
    barrier = {"web1": 2, "web2": 2, "web3": 4, "web4": 4}
    out = run_fleet(hosts, make_run_one(server, log, barrier=barrier), batch_size=2,
                    events=seen_events.append)
    assert out.exit_code == EXIT_OK
    ev = events_of(log)
    first, second = ev[:4], ev[4:]
    # Batch 1 (web1, web2) ran together, and ended before batch 2 began.
    assert [e[0] for e in first[:2]] == ["start", "start"]
    assert {e[1] for e in first} == {"web1", "web2"}
    assert {e[1] for e in second} == {"web3", "web4"}
    assert [e[0] for e in second[:2]] == ["start", "start"]
    batches = [e for e in seen_events if e.kind == "batch_start"]
    assert [(b.batch, b.hosts) for b in batches] == [(1, ("web1", "web2")),
                                                     (2, ("web3", "web4"))]


def test_ordering_inside_a_batch_with_parallel_1(fleet):
    server, hosts, log = fleet
    out = run_fleet(hosts, make_run_one(server, log), batch_size=2, parallel=1)
    assert out.exit_code == EXIT_OK
    assert events_of(log) == [(k, h.name) for h in hosts for k in ("start", "end")]


def test_failure_in_batch_1_stops_batch_2(fleet):
    server, hosts, log = fleet
    seen_events = []
    out = run_fleet(hosts, make_run_one(server, log, fail={"web2": 1}, barrier=2),
                    batch_size=2, events=seen_events.append)
    started = {e[1] for e in events_of(log) if e[0] == "start"}
    assert started == {"web1", "web2"}
    status = {o.host: o.status for o in out.hosts}
    assert status == {"web1": "ok", "web2": "rolled_back", "web3": "not_started",
                      "web4": "not_started"}
    assert out.exit_code == EXIT_ROLLED_BACK
    assert "batch 1" in out.stopped_reason
    assert [e.kind for e in seen_events].count("batch_start") == 1
    assert any(e.kind == "stop" for e in seen_events)
    # The summary lists the failed host first, with its diagnosis.
    first = out.for_summary()[0]
    assert (first.host, first.failed_step, first.diagnosis) == ("web2", "deploy", "exit 1")


def test_one_host_failing_never_stops_a_host_already_running(fleet):
    server, hosts, log = fleet
    out = run_fleet(hosts[:2], make_run_one(server, log, fail={"web1": 3}, barrier=2),
                    parallel=2)
    ev = events_of(log)
    assert ("end", "web2") in ev
    assert {o.host: o.status for o in out.hosts} == {"web1": "failed", "web2": "ok"}
    assert out.exit_code == EXIT_FAILED


def test_default_budget_stops_after_first_failure(fleet):
    server, hosts, log = fleet
    out = run_fleet(hosts, make_run_one(server, log, fail={"web2": 1}))
    assert [e[1] for e in events_of(log) if e[0] == "start"] == ["web1", "web2"]
    assert [o.status for o in out.hosts] == ["ok", "rolled_back", "not_started", "not_started"]


def test_max_fail_count(fleet):
    server, hosts, log = fleet
    out = run_fleet(hosts, make_run_one(server, log, fail={"web1": 1, "web2": 1}),
                    max_fail="1")
    assert [e[1] for e in events_of(log) if e[0] == "start"] == ["web1", "web2"]
    assert [o.status for o in out.hosts] == ["rolled_back", "rolled_back", "not_started",
                                             "not_started"]
    assert "more than --max-fail" in out.stopped_reason


def test_max_fail_percent_keeps_going_within_budget(fleet):
    server, hosts, log = fleet
    out = run_fleet(hosts, make_run_one(server, log, fail={"web1": 1, "web3": 1}),
                    max_fail="50%")
    # 50% of 4 hosts = 2 failures tolerated: every host ran.
    assert [e[1] for e in events_of(log) if e[0] == "start"] == [h.name for h in hosts]
    assert out.stopped_reason is None
    assert [o.status for o in out.hosts] == ["rolled_back", "ok", "rolled_back", "ok"]
    assert out.exit_code == EXIT_ROLLED_BACK


def test_max_fail_lets_rolling_continue_past_a_failed_batch(fleet):
    server, hosts, log = fleet
    out = run_fleet(hosts, make_run_one(server, log, fail={"web1": 1}), batch_size=2,
                    max_fail="1")
    assert {e[1] for e in events_of(log) if e[0] == "start"} == {h.name for h in hosts}
    assert out.counts() == {"ok": 3, "rolled_back": 1}


def test_errors_raised_by_one_host_become_its_outcome(fleet):
    server, hosts, log = fleet
    real = make_run_one(server, log)

    def run_one(host: Host) -> HostOutcome:
        if host.name == "web2":
            raise LockHeldError("lock held by alice@laptop (run r1)")
        if host.name == "web3":
            raise RuntimeError("boom")
        return real(host)

    out = run_fleet(hosts, run_one, parallel=4, max_fail="100%")
    by = {o.host: o for o in out.hosts}
    assert by["web1"].status == by["web4"].status == "ok"
    assert (by["web2"].status, by["web2"].exit_code) == ("locked", EXIT_LOCKED)
    assert "alice@laptop" in by["web2"].message
    assert (by["web3"].status, by["web3"].exit_code) == ("failed", EXIT_FAILED)
    assert "internal error: RuntimeError: boom" in by["web3"].message
    assert out.exit_code == EXIT_FAILED
    assert [o.host for o in out.for_summary()][:2] == ["web3", "web2"]


def test_ctrl_c_stops_starting_hosts_and_reports_them(fleet):
    server, hosts, log = fleet
    real = make_run_one(server, log)
    calls = []

    def run_one(host: Host) -> HostOutcome:
        if host.name == "web1":
            # The operator presses Ctrl-C while web1 is running.
            os.kill(os.getpid(), signal.SIGINT)
        return real(host)

    out = run_fleet(hosts, run_one, on_interrupt=lambda n, cause: calls.append((n, cause)),
                    poll=0.05)
    assert calls == [(1, "Ctrl-C")]
    assert out.interrupted and out.exit_code == EXIT_INTERRUPTED
    assert [o.status for o in out.hosts] == ["ok", "not_started", "not_started",
                                             "not_started"]
    assert [e[1] for e in events_of(log) if e[0] == "start"] == ["web1"]


def test_json_outcome_lists_every_host(fleet):
    server, hosts, log = fleet
    out = run_fleet(hosts, make_run_one(server, log, fail={"web3": 1}), max_fail="100%")
    data = json.loads(json.dumps(out.to_dict()))
    assert data["exit_code"] == EXIT_ROLLED_BACK
    assert [h["host"] for h in data["hosts"]] == [h.name for h in hosts]
    assert data["hosts"][2]["failed_step"] == "deploy"
    assert data["hosts"][2]["address"] == "127.0.0.4"
    assert data["counts"] == {"ok": 3, "rolled_back": 1}


def test_resume_runs_exactly_the_hosts_that_did_not_finish(fleet, tmp_path):
    server, hosts, log = fleet
    project = tmp_path / "project"
    record = FleetRecord(project, "first-time", "web", [h.name for h in hosts])
    out = run_fleet(hosts, make_run_one(server, log, fail={"web2": 1}), record=record)
    assert [o.status for o in out.hosts] == ["ok", "rolled_back", "not_started",
                                             "not_started"]
    saved = latest_fleet_record(project, "first-time", "web")
    assert saved is not None and saved["id"] == record.id and saved["status"] == "failed"

    actions = resume_actions(hosts, saved)
    assert {n: a.action for n, a in actions.items()} == {
        "web1": "skip", "web2": "resume", "web3": "start", "web4": "start"}
    assert actions["web2"].run_id == "run-web2"

    log.write_text("")
    skipped = [skipped_outcome(h, actions[h.name]) for h in hosts
               if actions[h.name].action == "skip"]
    todo = [h for h in hosts if actions[h.name].action != "skip"]
    record2 = FleetRecord(project, "first-time", "web", [h.name for h in hosts],
                          resumed_from=record.id)
    out2 = run_fleet(todo, make_run_one(server, log), skipped=skipped, record=record2)
    assert [e[1] for e in events_of(log) if e[0] == "start"] == ["web2", "web3", "web4"]
    assert out2.exit_code == EXIT_OK
    assert [o.host for o in out2.hosts] == ["web1", "web2", "web3", "web4"]
    assert out2.hosts[0].status == "skipped"

    # A third --resume finds everything finished and runs nothing.
    final = latest_fleet_record(project, "first-time", "web")
    assert final["id"] == record2.id and final["status"] == "ok"
    assert {a.action for a in resume_actions(hosts, final).values()} == {"skip"}


def test_resume_without_a_record_uses_run_history():
    hosts = [Host("a", "127.0.0.2"), Host("b", "127.0.0.3"), Host("c", "127.0.0.4")]
    history = {"a": ("r-a", "ok"), "b": ("r-b", "failed")}
    actions = resume_actions(hosts, None, latest_run=lambda h: history.get(h.name))
    assert [(a.action, a.run_id) for a in actions.values()] == [
        ("skip", "r-a"), ("resume", "r-b"), ("start", None)]


def test_parse_max_fail():
    assert parse_max_fail(None, 10) == 0
    assert parse_max_fail("3", 10) == 3
    assert parse_max_fail("25%", 10) == 2
    assert parse_max_fail("30%", 10) == 3
    assert parse_max_fail("100%", 7) == 7
    for bad in ("-1", "x", "150%", "%", "1.5"):
        with pytest.raises(UsageError):
            parse_max_fail(bad, 10)


def test_worst_exit_code_ranks_by_attention_needed():
    assert worst_exit_code([]) == EXIT_OK
    assert worst_exit_code([EXIT_OK, EXIT_LOCKED]) == EXIT_LOCKED
    assert worst_exit_code([EXIT_LOCKED, EXIT_USAGE]) == EXIT_USAGE
    assert worst_exit_code([EXIT_USAGE, EXIT_ROLLED_BACK, EXIT_LOCKED]) == EXIT_ROLLED_BACK
    assert worst_exit_code([EXIT_ROLLED_BACK, EXIT_FAILED, EXIT_OK]) == EXIT_FAILED
    assert worst_exit_code([EXIT_FAILED, EXIT_INTERRUPTED]) == EXIT_INTERRUPTED


def test_bad_options_are_usage_errors():
    hosts = [Host("a", "127.0.0.2"), Host("a", "127.0.0.3")]
    with pytest.raises(UsageError, match="more than once"):
        run_fleet(hosts, lambda h: None)
    with pytest.raises(UsageError):
        run_fleet(hosts[:1], lambda h: None, parallel=0)
    with pytest.raises(UsageError):
        run_fleet(hosts[:1], lambda h: None, batch_size=-2)


# -- `deployer run` on a group (the real CLI in a subprocess) --------------------------

FLEET_RUNBOOK = """\
steps:
  - id: one
    run: 'echo "start {{ host.name }}" >> {{ remote_dir }}/order.log; echo hello from {{ host.name }}'
    rollback: {run: 'echo "undo {{ host.name }}" >> {{ remote_dir }}/order.log'}
  - id: two
    run: 'test ! -f {{ remote_dir }}/fail-{{ host.name }} || { echo "No space left on device" >&2; exit 1; }'
  - id: three
    run: 'echo "end {{ host.name }}" >> {{ remote_dir }}/order.log'
"""  # noqa: E501


class FleetProject:
    """A project whose inventory has group ``web`` = web1..web4 on four addresses."""

    def __init__(self, root: Path, server: SshServer) -> None:
        import yaml

        self.root = root
        self.remote = root / "remote"
        self.remote.mkdir(parents=True)
        (root / "runbooks").mkdir()
        (root / "runbooks" / "app.yml").write_text(FLEET_RUNBOOK)
        hosts = {}
        for i, address in enumerate(ADDRESSES, start=1):
            hosts[f"web{i}"] = {
                "host": address, "port": server.port, "user": server.user,
                "identity_file": server.client_key, "known_hosts": server.known_hosts,
                "connect_timeout": 5, "groups": ["web"],
                "vars": {"remote_dir": str(self.remote),
                         "lock_dir": str(root / f"lock-web{i}"),
                         "host_state_dir": str(root / f"hoststate-web{i}")},
            }
        (root / "inventory.yml").write_text(yaml.safe_dump({"hosts": hosts,
                                                            "groups": {"web": {}}}))
        self.env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
        self.env.update({"DEPLOYER_SSH_CONFIG": "none", "DEPLOYER_KNOWN_HOSTS": "none",
                         "NO_COLOR": "1", "COLUMNS": "200"})

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        import sys

        return subprocess.run([sys.executable, "-m", "deployer.cli.main", "-C",
                               str(self.root), *args], capture_output=True, text=True,
                              timeout=180, env=self.env, stdin=subprocess.DEVNULL)

    def order(self) -> list[tuple[str, str]]:
        path = self.remote / "order.log"
        return [tuple(x.split()) for x in path.read_text().splitlines()] if path.exists() \
            else []

    def runs(self) -> list[dict]:
        return [json.loads(p.read_text())
                for p in sorted((self.root / ".deployer" / "runs").glob("*.json"))]


@pytest.fixture
def group(make_sshd, tmp_path) -> FleetProject:
    return FleetProject(tmp_path / "project", make_sshd(addresses=ADDRESSES))


def test_cli_parallel_group_json(group):
    r = group.cli("run", "app", "--host", "web", "--parallel", "4", "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert [h["host"] for h in data["hosts"]] == ["web1", "web2", "web3", "web4"]
    assert {h["status"] for h in data["hosts"]} == {"ok"}
    assert all(h["run_id"] and h["steps_done"] == h["steps_total"] == 3 for h in data["hosts"])
    # One run record per host, each for its own host and address.
    runs = {rec["host"]: rec for rec in group.runs()}
    assert sorted(runs) == ["web1", "web2", "web3", "web4"]
    assert runs["web3"]["address"] == "127.0.0.4"
    assert sorted(e for e in group.order() if e[0] == "end") == [
        ("end", f"web{i}") for i in range(1, 5)]
    # Progress went to stderr, every output line prefixed by its host.
    assert "web2 one | hello from web2" in r.stderr


def test_cli_failure_in_batch_1_stops_batch_2_and_rolls_back_only_that_host(group):
    (group.remote / "fail-web2").write_text("")
    r = group.cli("run", "app", "--host", "web", "--batch-size", "2")
    assert r.returncode == 1, r.stdout + r.stderr
    order = group.order()
    assert {h for k, h in order if k == "start"} == {"web1", "web2"}
    assert ("undo", "web2") in order
    assert ("undo", "web1") not in order and ("end", "web1") in order
    out = r.stdout
    fleet_line = next(line for line in out.splitlines() if line.startswith("FLEET"))
    assert "FLEET FAILED" in fleet_line and "2 not started" in fleet_line
    summary = out[out.index(fleet_line):]
    # Failed host first with its failed step, then the others.
    rows = [line.split()[0] for line in summary.splitlines()[1:5]]
    assert rows == ["web2", "web3", "web4", "web1"]
    assert "[two] step two failed" in summary
    assert "--resume" in summary
    # The failed host's row carries its diagnosis (web2 printed "No space left...").
    web2_row = next(line for line in summary.splitlines() if line.split()[:1] == ["web2"])
    assert "(diagnosis: The host ran out of disk space)" in web2_row
    # The detailed per-host report of the failed host came before the fleet summary.
    detail = out[:out.index(fleet_line)]
    assert "failed step: two" in detail
    assert "diagnosis [no-space-left]: The host ran out of disk space" in detail


def test_cli_resume_group_runs_exactly_the_hosts_that_did_not_finish(group):
    (group.remote / "fail-web2").write_text("")
    first = group.cli("run", "app", "--host", "web", "--batch-size", "2",
                      "--format", "json")
    assert first.returncode == 1
    before = {h["host"]: h for h in json.loads(first.stdout)["hosts"]}
    assert [before[f"web{i}"]["status"] for i in range(1, 5)] == [
        "ok", "rolled_back", "not_started", "not_started"]
    # The JSON carries the failed host's diagnosis from the catalogue.
    assert [d["id"] for d in before["web2"]["diagnosis"]] == ["no-space-left"]
    assert before["web2"]["diagnosis"][0]["fix"]
    assert before["web1"]["diagnosis"] is None

    (group.remote / "fail-web2").unlink()
    (group.remote / "order.log").write_text("")
    second = group.cli("run", "app", "--host", "web", "--batch-size", "2", "--resume",
                       "--format", "json")
    assert second.returncode == 0, second.stdout + second.stderr
    after = {h["host"]: h for h in json.loads(second.stdout)["hosts"]}
    assert after["web1"]["status"] == "skipped"
    assert after["web1"]["run_id"] == before["web1"]["run_id"]
    assert after["web2"]["status"] == "ok"
    assert after["web2"]["run_id"] == before["web2"]["run_id"]  # the same run, resumed
    assert {after[h]["status"] for h in ("web3", "web4")} == {"ok"}
    started = [h for k, h in group.order() if k == "start"]
    assert "web1" not in started and sorted(started) == ["web2", "web3", "web4"]

    third = group.cli("run", "app", "--host", "web", "--resume", "--format", "json")
    assert third.returncode == 0
    assert {h["status"] for h in json.loads(third.stdout)["hosts"]} == {"skipped"}


def test_cli_max_fail_and_bad_values(group):
    for name in ("web1", "web2"):
        (group.remote / f"fail-{name}").write_text("")
    r = group.cli("run", "app", "--host", "web", "--max-fail", "1", "--format", "json")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert [h["status"] for h in data["hosts"]] == ["rolled_back", "rolled_back",
                                                    "not_started", "not_started"]
    assert data["hosts"][0]["failed_step"] == "two"
    bad = group.cli("run", "app", "--host", "web", "--max-fail", "lots")
    assert bad.returncode == 2 and "--max-fail" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_ctrl_c_interrupts_running_hosts_and_starts_no_more(group):
    import signal as _signal
    import sys
    import time as _time

    (group.root / "runbooks" / "gated.yml").write_text(
        "steps:\n"
        "  - id: one\n"
        "    run: 'echo \"start {{ host.name }}\" >> {{ remote_dir }}/order.log'\n"
        "    rollback: {run: 'echo \"undo {{ host.name }}\" >> {{ remote_dir }}/order.log'}\n"
        "  - id: wait\n"
        "    run: 'touch {{ remote_dir }}/started-{{ host.name }}; "
        "while [ ! -f {{ remote_dir }}/gate ]; do sleep 0.05; done'\n")
    proc = subprocess.Popen([sys.executable, "-m", "deployer.cli.main", "-C", str(group.root),
                             "run", "gated", "--host", "web", "--parallel", "2",
                             "--format", "json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=group.env,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = _time.monotonic() + 60
        while not all((group.remote / f"started-web{i}").exists() for i in (1, 2)):
            assert _time.monotonic() < deadline and proc.poll() is None, proc.stderr
            _time.sleep(0.05)
        proc.send_signal(_signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    data = json.loads(out)
    status = {h["host"]: h["status"] for h in data["hosts"]}
    assert status == {"web1": "interrupted", "web2": "interrupted", "web3": "not_started",
                      "web4": "not_started"}
    assert data["interrupted"] is True
    order = group.order()
    assert {h for k, h in order if k == "start"} == {"web1", "web2"}
    # Each interrupted host rolled back its own completed step.
    assert {h for k, h in order if k == "undo"} == {"web1", "web2"}
    # No remote step is left running.
    ps = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True).stdout
    assert str(group.remote / "gate") not in ps


def test_live_board_with_50_hosts_fits_the_terminal():
    from rich.console import Console

    from deployer.cli.fleet_run import FleetBoard

    names = [f"web{i:02d}" for i in range(1, 51)]
    board = FleetBoard(names)
    for name in names[:30]:
        board.update(name, state="ok", step="three", index=3, total=3)
    board.update("web31", state="running", step="migrate", index=2, total=3, since=1.0)
    board.update("web32", state="rolled_back", step="two", index=2, total=3)
    console = Console(width=100, height=24, record=True, file=open(os.devnull, "w"))
    console.print(board.render(console.size.height))
    text = console.export_text()
    assert text.splitlines()[0].strip() == "50 hosts: 30 ok, 1 running, 1 rolled back, 18 pending"
    assert "[2/3] migrate" in text and "web32" in text and "rolled back" in text
    assert "web01" not in text  # finished hosts are counted in the title, not listed
    assert len(text.splitlines()) <= 24

    small = FleetBoard(names[:4])
    small.update("web01", state="running", step="one", index=1, total=3)
    console = Console(width=100, height=24, record=True, file=open(os.devnull, "w"))
    console.print(small.render(24))
    small_text = console.export_text()
    assert all(n in small_text for n in names[:4])


def test_cli_confirm_steps_need_yes_when_hosts_run_at_once(group):
    (group.root / "runbooks" / "ask.yml").write_text(
        "steps:\n"
        "  - id: drop\n"
        "    run: 'echo \"start {{ host.name }}\" >> {{ remote_dir }}/order.log'\n"
        "    confirm: Really?\n")
    r = group.cli("run", "ask", "--host", "web", "--parallel", "2")
    assert r.returncode == 2
    assert "step drop asks for confirmation" in r.stderr and "--yes" in r.stderr
    assert group.order() == []  # refused before any host started
    ok = group.cli("run", "ask", "--host", "web", "--parallel", "2", "--yes")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert sorted(h for _, h in group.order()) == ["web1", "web2", "web3", "web4"]


def test_cli_resume_with_no_earlier_run_is_refused_like_on_one_host(group):
    for target in ("web", "web1"):
        r = group.cli("run", "app", "--host", target, "--resume", "--format", "json")
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"no run of app on {target} to resume" in r.stderr
        assert "Traceback" not in r.stderr
    assert group.order() == [] and group.runs() == []


def test_cli_apply_a_group_plan_in_parallel_with_json(group):
    plan_file = group.root / "plan.json"
    r = group.cli("plan", "app", "--host", "web", "--out", str(plan_file))
    assert r.returncode == 0, r.stdout + r.stderr
    (group.remote / "fail-web3").write_text("")
    digest = hashlib.sha256(plan_file.read_bytes()).hexdigest()
    r = group.cli("apply", str(plan_file), "--approve", digest, "--parallel", "2",
                  "--max-fail", "1",
                  "--format", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    status = {h["host"]: h["status"] for h in json.loads(r.stdout)["hosts"]}
    assert status == {"web1": "ok", "web2": "ok", "web3": "rolled_back", "web4": "ok"}
    assert sorted(rec["host"] for rec in group.runs()) == ["web1", "web2", "web3", "web4"]
    assert ("undo", "web3") in group.order() and ("undo", "web1") not in group.order()


def test_cli_resume_json_keeps_inventory_order(group):
    (group.remote / "fail-web1").write_text("")
    first = group.cli("run", "app", "--host", "web", "--max-fail", "100%")
    assert first.returncode == 1, first.stdout + first.stderr
    (group.remote / "fail-web1").unlink()
    r = group.cli("run", "app", "--host", "web", "--resume", "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    hosts = json.loads(r.stdout)["hosts"]
    # web2..4 are skipped and web1 resumed, yet the list keeps the inventory order.
    assert [(h["host"], h["status"]) for h in hosts] == [
        ("web1", "ok"), ("web2", "skipped"), ("web3", "skipped"), ("web4", "skipped")]


SLOW_RUNBOOK = """\
steps:
  - id: one
    run: 'echo "start {{ host.name }}" >> {{ remote_dir }}/order.log'
  - id: wait
    run: 'touch {{ remote_dir }}/started-{{ host.name }}; while [ ! -f {{ remote_dir }}/gate ]; do sleep 0.05; done'
  - id: three
    run: 'echo "end {{ host.name }}" >> {{ remote_dir }}/order.log'
"""  # noqa: E501


def test_cli_resume_after_sigkill_starts_the_hosts_the_killed_fleet_never_reached(group):
    import sys
    import time as _time

    (group.root / "runbooks" / "slow.yml").write_text(SLOW_RUNBOOK)
    gate = group.remote / "gate"
    # Yesterday's deploy: every host has an older run of `slow` that finished ok.
    gate.write_text("")
    old = group.cli("run", "slow", "--host", "web", "--parallel", "4")
    assert old.returncode == 0, old.stdout + old.stderr
    old_ids = {rec["id"] for rec in group.runs()}
    assert len(old_ids) == 4

    gate.unlink()
    (group.remote / "order.log").write_text("")
    for path in group.remote.glob("started-*"):
        path.unlink()
    proc = subprocess.Popen([sys.executable, "-m", "deployer.cli.main", "-C", str(group.root),
                             "run", "slow", "--host", "web"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=group.env,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = _time.monotonic() + 60
        while not (group.remote / "started-web1").exists():
            assert _time.monotonic() < deadline and proc.poll() is None
            _time.sleep(0.05)
        proc.kill()  # SIGKILL: no handler, no cleanup, no final record write
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    gate.write_text("")  # lets the orphaned remote loop of web1 end

    killed = latest_fleet_record(group.root, "slow", "web")
    assert killed is not None and killed["status"] == "running"
    entries = killed["hosts"]
    assert entries["web1"]["status"] == "running"
    web1_run = entries["web1"]["run_id"]
    assert web1_run and web1_run not in old_ids
    assert [entries[f"web{i}"]["status"] for i in (2, 3, 4)] == ["pending"] * 3

    r = group.cli("run", "slow", "--host", "web", "--resume", "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    hosts = {h["host"]: h for h in json.loads(r.stdout)["hosts"]}
    assert {h["status"] for h in hosts.values()} == {"ok"}, hosts
    assert hosts["web1"]["run_id"] == web1_run  # the killed run, continued
    for name in ("web2", "web3", "web4"):
        # Never reached by the killed fleet: a new run, not yesterday's.
        assert hosts[name]["run_id"] not in old_ids
    starts = [h for k, h in group.order() if k == "start"]
    assert sorted(starts) == ["web1", "web2", "web3", "web4"]  # web1's step one not re-run
    assert sorted(h for k, h in group.order() if k == "end") == [
        "web1", "web2", "web3", "web4"]


def test_resume_ignores_runs_older_than_the_fleet_for_pending_hosts():
    hosts = [Host("a", "127.0.0.2"), Host("b", "127.0.0.3"), Host("c", "127.0.0.4"),
             Host("d", "127.0.0.5")]
    record = {"id": "fleet-2", "started_ns": 2000, "resumed_from": "fleet-1",
              "hosts": {"a": {"status": "pending"}, "b": {"status": "pending"},
                        "c": {"status": "running", "run_id": "r-c"}}}
    history = {"a": LatestRun("r-a", "ok", 1000),  # before the whole deployment
               "b": LatestRun("r-b", "interrupted", 1500),  # in fleet-1, the first part
               "d": LatestRun("r-d", "ok", 900)}  # added to the group since: not deployed
    earlier = [{"id": "fleet-1", "started_ns": 1200, "resumed_from": None}, record]
    since = deployment_start_ns(record, earlier)
    assert since == 1200
    actions = resume_actions(hosts, record, lambda h: history.get(h.name), since_ns=since)
    assert [(n, a.action, a.run_id) for n, a in actions.items()] == [
        ("a", "start", None), ("b", "resume", "r-b"), ("c", "resume", "r-c"),
        ("d", "start", None)]
    # Without the chain, fleet-2's own start is the bound: b's run is older, b starts.
    alone = resume_actions(hosts, record, lambda h: history.get(h.name))
    assert alone["b"].action == "start"


FLEET_ROLLBACK_RUNBOOK = "fleet_rollback: all\n" + FLEET_RUNBOOK


def test_cli_fleet_rollback_all_rolls_back_the_hosts_that_succeeded(group):
    (group.root / "runbooks" / "all.yml").write_text(FLEET_ROLLBACK_RUNBOOK)
    (group.remote / "fail-web2").write_text("")
    r = group.cli("run", "all", "--host", "web", "--batch-size", "2", "--format", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    data = json.loads(r.stdout)
    hosts = {h["host"]: h for h in data["hosts"]}
    assert [h["host"] for h in data["hosts"]] == ["web1", "web2", "web3", "web4"]
    assert {n: h["status"] for n, h in hosts.items()} == {
        "web1": "rolled_back", "web2": "rolled_back", "web3": "not_started",
        "web4": "not_started"}
    # web1 finished ok, then was undone because web2 failed; web2 undid itself.
    assert hosts["web1"]["rolled_back_for"] == ["web2"]
    assert "because web2 failed" in hosts["web1"]["message"]
    assert hosts["web2"]["rolled_back_for"] is None
    assert data["fleet_rollback"] == {"because": ["web2"], "hosts": ["web1"]}
    order = group.order()
    assert ("end", "web1") in order and ("undo", "web1") in order
    assert order.index(("end", "web1")) < order.index(("undo", "web1"))
    assert ("undo", "web2") in order
    assert {h for k, h in order if k == "start"} == {"web1", "web2"}
    runs = {rec["host"]: rec for rec in group.runs()}
    assert runs["web1"]["status"] == "rolled_back"
    assert runs["web1"]["resumes"][-1]["action"] == "rollback"
    record = latest_fleet_record(group.root, "all", "web")
    assert record["hosts"]["web1"]["status"] == "rolled_back"
    assert record["fleet_rollback"] == {"because": ["web2"], "hosts": ["web1"]}

    # Fixed: --resume deploys the whole group again. web1's run had finished, so it gets
    # a new run from the first step; web2 continues its own failed run.
    (group.remote / "fail-web2").unlink()
    (group.remote / "order.log").write_text("")
    again = group.cli("run", "all", "--host", "web", "--resume", "--format", "json")
    assert again.returncode == 0, again.stdout + again.stderr
    after = {h["host"]: h for h in json.loads(again.stdout)["hosts"]}
    assert {h["status"] for h in after.values()} == {"ok"}
    assert after["web1"]["run_id"] != hosts["web1"]["run_id"]
    assert after["web2"]["run_id"] == hosts["web2"]["run_id"]
    assert sorted(h for k, h in group.order() if k == "start") == [
        "web1", "web2", "web3", "web4"]
    assert sorted(h for k, h in group.order() if k == "end") == [
        "web1", "web2", "web3", "web4"]


def test_cli_fleet_rollback_stops_at_an_irreversible_step_and_default_is_per_host(group):
    (group.root / "runbooks" / "irrev.yml").write_text(
        "fleet_rollback: all\n"
        "steps:\n"
        "  - id: one\n"
        "    run: 'echo \"start {{ host.name }}\" >> {{ remote_dir }}/order.log'\n"
        "    rollback: {run: 'echo \"undo {{ host.name }}\" >> {{ remote_dir }}/order.log'}\n"
        "  - id: drop\n"
        "    run: 'true'\n"
        "    destructive: true\n"
        "    rollback: irreversible\n"
        "  - id: two\n"
        "    run: 'test ! -f {{ remote_dir }}/fail-{{ host.name }}'\n")
    (group.remote / "fail-web2").write_text("")
    r = group.cli("run", "irrev", "--host", "web", "--parallel", "2", "--yes")
    assert r.returncode == 3, r.stdout + r.stderr
    out = r.stdout
    summary = out[out.index("FLEET FAILED"):]
    rows = {line.split()[0]: line for line in summary.splitlines()[1:5]}
    # web1 succeeded, then its fleet rollback stopped at the irreversible step: the host
    # is left changed and says so; nothing past `drop` was undone on either host.
    assert rows["web1"].split()[1] == "failed"
    assert "because web2 failed" in rows["web1"]
    assert "fleet rollback because web2 failed (fleet_rollback: all): web1 failed" in summary
    assert not [e for e in group.order() if e[0] == "undo"]

    # The default (no fleet_rollback) never touches a host that succeeded.
    (group.remote / "order.log").write_text("")
    r = group.cli("run", "app", "--host", "web", "--parallel", "2", "--format", "json")
    data = json.loads(r.stdout)
    assert data["fleet_rollback"] is None
    assert {h["host"]: h["status"] for h in data["hosts"]}["web1"] == "ok"
    assert ("undo", "web1") not in group.order() and ("undo", "web2") in group.order()


def test_fleet_rollback_all_in_the_scheduler(fleet):
    server, hosts, log = fleet
    calls: list[tuple[int, str]] = []

    def roll_back_one(before: HostOutcome, because: list[str]) -> HostOutcome:
        if before.host == "web2":
            raise LockHeldError("lock held by alice@laptop")
        ssh_run(server, hosts[int(before.host[-1]) - 1],
                f'echo "undo {before.host}" >> {log}\n')
        return HostOutcome(host=before.host, status="rolled_back", exit_code=EXIT_ROLLED_BACK,
                           run_id=before.run_id, message="undone")

    out = run_fleet(hosts, make_run_one(server, log, fail={"web3": 1}), fleet_rollback="all",
                    roll_back_one=roll_back_one, on_interrupt=lambda n, c: calls.append((n, c)))
    by = {o.host: o for o in out.hosts}
    assert [e for e in events_of(log) if e[0] == "undo"] == [("undo", "web1")]
    assert (by["web1"].status, by["web1"].rolled_back_for) == ("rolled_back", ["web3"])
    # A rollback that cannot run leaves the host changed: failed, exit 3, and says why.
    assert (by["web2"].status, by["web2"].exit_code) == ("failed", EXIT_FAILED)
    assert "fleet rollback could not run" in by["web2"].message
    assert by["web2"].run_id == "run-web2"
    assert by["web3"].rolled_back_for is None and by["web4"].status == "not_started"
    assert out.fleet_rollback == {"because": ["web3"], "hosts": ["web1", "web2"]}
    assert out.exit_code == EXIT_FAILED and calls == []

    # Ctrl-C during the fleet rollback: the running one is cancelled, no more start.
    log.write_text("")

    def interrupted(before: HostOutcome, because: list[str]) -> HostOutcome:
        os.kill(os.getpid(), signal.SIGINT)
        return roll_back_one(before, because)

    out = run_fleet(hosts, make_run_one(server, log, fail={"web3": 1}), fleet_rollback="all",
                    roll_back_one=interrupted, poll=0.05,
                    on_interrupt=lambda n, c: calls.append((n, c)))
    assert calls == [(1, "Ctrl-C")]
    assert [o.status for o in out.hosts] == ["rolled_back", "ok", "rolled_back",
                                             "not_started"]
    assert out.fleet_rollback == {"because": ["web3"], "hosts": ["web1"]}
    assert out.interrupted and out.exit_code == EXIT_INTERRUPTED

    # The default never calls roll_back_one.
    out = run_fleet(hosts, make_run_one(server, log, fail={"web3": 1}),
                    roll_back_one=lambda o, b: pytest.fail("rolled back"))
    assert out.fleet_rollback is None and out.hosts[0].status == "ok"


LIVE_RUNBOOK = """\
steps:
  - id: one
    run: |
      echo hello from {{ host.name }}
      # Held until the test has seen the live table show every host running; bounded,
      # so a table that is never drawn fails the test instead of hanging it.
      for i in $(seq 1 1200); do [ -f {{ remote_dir }}/gate ] && exit 0; sleep 0.05; done
      exit 1
  - id: two
    run: 'echo bye from {{ host.name }}'
"""

# CSI (colours, cursor moves, erase), OSC, and single-character escapes such as ESC 7.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def _run_on_a_terminal(group: FleetProject, args: list[str], *, columns: int, rows: int,
                       until: Callable[[str], bool], then: Callable[[], None],
                       deadline: float = 180.0) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal of ``columns`` x ``rows``;
    once the ANSI-stripped output so far satisfies ``until``, call ``then`` (once).
    Return the exit code and everything written to the terminal."""
    import fcntl
    import pty
    import select
    import struct
    import sys
    import termios
    import time

    # COLUMNS/LINES would override the terminal's own size; the size must come from it.
    env = {k: v for k, v in group.env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        proc = subprocess.Popen([sys.executable, "-m", "deployer.cli.main", "-C",
                                 str(group.root), *args], stdout=slave, stderr=slave,
                                stdin=subprocess.DEVNULL, env=env)
    except BaseException:
        os.close(master)
        raise
    finally:
        # Only the child holds the terminal open now, so its exit reads as EOF (EIO).
        os.close(slave)
    chunks: list[bytes] = []
    fired = False
    end = time.monotonic() + deadline
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("deployer on a terminal did not finish in time; "
                                     "output so far:\n" + b"".join(chunks).decode(
                                         "utf-8", "replace"))
            ready, _, _ = select.select([master], [], [], min(left, 1.0))
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    data = b""
                if not data:
                    break
                chunks.append(data)
                if not fired and until(_ANSI.sub("", b"".join(chunks).decode(
                        "utf-8", "replace"))):
                    fired = True
                    then()
        code = proc.wait(timeout=max(end - time.monotonic(), 1.0))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert fired, "the condition was never seen on the terminal"
    return code, b"".join(chunks).decode("utf-8", "replace")


def _frames(text: str) -> list[dict[str, tuple[str, str]]]:
    """Every drawing of the fleet table in ANSI-stripped output: host -> (step, state)."""
    frames = []
    lines = re.split(r"\r\n|\r|\n", text)
    for i, line in enumerate(lines):
        if re.match(r"\d+ hosts: ", line):
            rows = {}
            for row in lines[i + 3:]:
                m = re.match(r"^ (\S+) │ (.*?) │ (.*?) │", row)
                if not m:
                    break
                rows[m[1]] = (m[2].strip(), m[3].strip())
            frames.append(rows)
    return frames


def _screen(raw: str, columns: int) -> list[str]:
    """What a terminal shows (scrollback included) after ``raw``: the cursor moves and
    erases rich's live display uses are applied, so lines a redraw overwrote are gone."""
    lines = [""]
    row = col = 0
    for token in re.findall(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b.|[\s\S]", raw):
        if token.startswith("\x1b["):
            final, arg = token[-1], token[2:-1]
            count = int(arg) if arg.isdigit() else 1
            if final == "A":
                row = max(row - count, 0)
            elif final == "K":
                lines[row] = "" if arg == "2" else lines[row][:col]
            elif final not in "mhl":  # colours, cursor show/hide: nothing to move
                raise AssertionError(f"escape sequence this test does not model: {token!r}")
        elif token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif not token.startswith("\x1b"):
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + 1:]
            col += 1
            assert col <= columns, f"line wider than the terminal: {lines[row]!r}"
    return [line.rstrip() for line in lines]


def test_cli_live_table_on_a_real_terminal(group):
    (group.root / "runbooks" / "live.yml").write_text(LIVE_RUNBOOK)
    names = [f"web{i}" for i in range(1, 5)]
    held = {n: ("[1/2] one", "running") for n in names}

    code, raw = _run_on_a_terminal(
        group, ["run", "live", "--host", "web", "--parallel", "4"], columns=120, rows=40,
        until=lambda text: held in _frames(text),
        then=lambda: (group.remote / "gate").write_text(""))
    text = _ANSI.sub("", raw)
    assert code == 0, text
    assert "Traceback" not in text
    frames = _frames(text)
    # While the hosts were held in step one, the table had a row per host, running;
    # the last drawing, when the live display stopped, shows every host finished.
    assert held in frames
    assert frames[-1] == {n: ("[2/2] two", "ok") for n in names}

    # The terminal as the operator sees it afterwards: the redrawn tables erased, every
    # output line whole, once, prefixed by its host, in step order, then one final table
    # and the fleet summary below it.
    screen = _screen(raw, 120)
    shown = "\n".join(screen)
    for name in names:
        hello = screen.count(f"{name} one | hello from {name}")
        bye = screen.count(f"{name} two | bye from {name}")
        assert (hello, bye) == (1, 1), (name, shown)
        assert (screen.index(f"{name} one | hello from {name}")
                < screen.index(f"{name} two | bye from {name}"))
    titles = [i for i, line in enumerate(screen) if re.match(r"\d+ hosts: ", line)]
    assert [screen[i] for i in titles] == ["4 hosts: 4 ok"], shown
    last_output = max(i for i, line in enumerate(screen) if " | " in line)
    summary = screen.index("FLEET OK: live on web, 4 hosts: 4 ok (exit 0)")
    assert last_output < titles[0] < summary, shown
    assert [line.split()[:2] for line in screen[summary + 1:summary + 5]] == [
        [n, "ok"] for n in names]
