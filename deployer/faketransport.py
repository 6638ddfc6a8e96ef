"""A scripted ``Transport`` for tests: replies chosen by the command, no network.

The executor's policies (retry, rollback, leftover processes, resume) depend only on
what the host answers. ``FakeTransport`` gives those answers from a script, in
milliseconds::

    fake = FakeTransport()
    fake.when(r"docker compose pull", Reply(exit_code=1, stderr="no network"),
              Reply(stdout="pulled"))            # fails once, then succeeds
    fake.when("migrate", Reply(hang=True))       # runs until timeout or interrupt()
    fake.when("restart", Reply(lose_connection=True, leftover=True))
    executor = Executor(..., transport_factory=fake.factory)

Rules are tried in the order given; a rule's replies are used one per matching call
and its last reply repeats. A command no rule matches gets ``default`` (exit 0, no
output). Every call lands in ``calls`` (connect, run, post, collect, put, interrupt,
stop_process, close); uploads in ``uploads``. The fake is the host as well as the connection: a
reconnect (``connect`` after a lost connection or ``close``) sees the same processes
and files, as a new SSH connection would.

Time is simulated: a hanging command with a ``timeout`` times out at once (its
``duration`` is the timeout); without one it blocks until ``interrupt()``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from deployer.errors import RunFailed, TransportError
from deployer.models import Host
from deployer.transport import (
    KILL_GRACE,
    PROCESS_ALIVE,
    PROCESS_GONE,
    PROCESS_REBOOTED,
    PROCESS_STOPPED,
    PROCESS_UNVERIFIABLE,
    ConnectionLost,
    DoneCallback,
    LineCallback,
    ProcessCallback,
    RemoteProcess,
    RunResult,
    StepInterrupted,
)

__all__ = ["Call", "FakeTransport", "Matcher", "Reply"]


@dataclass
class Reply:
    """How the fake host answers one command.

    ``hang``: runs until its timeout or ``interrupt()``. ``lose_connection``: the
    connection dies after the output is delivered (``ConnectionLost``).
    ``ctrl_c``: a Ctrl-C arrives while it runs (``StepInterrupted``; ``second``: a
    second one while it is being stopped). ``leftover``: a stopped, timed-out or
    orphaned command keeps running on the host (``current_process`` keeps naming it,
    and ``stop_process`` later finds it); ``unstoppable``: not even KILL ends it.
    ``announce``: ``on_process`` hears of it (always for hanging, lost and leftover
    commands, which are the ones that run long). ``effect`` is called with the
    ``Call`` before the reply is given (to touch test state, or raise)."""

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    hang: bool = False
    lose_connection: bool = False
    ctrl_c: bool = False
    second: bool = False
    leftover: bool = False
    unstoppable: bool = False
    announce: bool = False
    effect: Callable[[Call], None] | None = None


Matcher = str | re.Pattern[str] | Callable[["Call"], bool]


@dataclass
class Call:
    """One call on the fake, as made."""

    kind: str  # connect | run | post | collect | put | interrupt | stop_process | close
    script: str = ""
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None
    sudo: bool = False
    timeout: float | None = None
    what: str = ""
    path: str = ""  # put: remote path
    data: bytes = b""  # put: the bytes written
    mode: int | None = None  # put
    process: RemoteProcess | None = None  # run: its group; stop_process: the target
    result: Any = None  # run: RunResult; stop_process: the PROCESS_* answer


@dataclass
class _Rule:
    matcher: Matcher
    replies: list[Reply]
    used: int = 0

    def matches(self, call: Call) -> bool:
        m = self.matcher
        if callable(m):
            return bool(m(call))
        return re.search(m, call.script) is not None

    def take(self) -> Reply:
        reply = self.replies[min(self.used, len(self.replies) - 1)]
        self.used += 1
        return reply


@dataclass
class _Process:
    """A command's process group on the fake host."""

    proc: RemoteProcess
    script: str
    unstoppable: bool = False


class FakeTransport:
    """Implements ``deployer.transport.Transport`` from scripted ``Reply``s."""

    def __init__(self, host: Host | None = None, *, default: Reply | None = None,
                 kill_grace: float = KILL_GRACE, sudo_password: str | None = None,
                 host_key_fingerprint: str = "SHA256:fake") -> None:
        self.host = host or Host(name="fake", address="127.0.0.1")
        self.default = default or Reply()
        self.kill_grace = kill_grace
        self.sudo_password = sudo_password
        self.current_process: RemoteProcess | None = None
        self.on_process: ProcessCallback | None = None
        self.host_key_fingerprint: str | None = None
        self._fingerprint = host_key_fingerprint
        self.connected = False
        self._dropped = False  # the connection died (not closed): no auto-reconnect
        self.calls: list[Call] = []
        self.uploads: dict[str, bytes] = {}  # remote path -> last bytes written there
        self.processes: dict[int, _Process] = {}  # groups still running on the host
        self.connect_errors: list[BaseException] = []  # raised by the next connects
        self.put_errors: list[tuple[str, BaseException]] = []  # (path regex, error)
        self._rules: list[_Rule] = []
        self._next_pid = 1000
        self.boot_id = "fake-boot-1"
        self._interrupted = threading.Event()
        self._interrupts = 0
        self.can_post = True  # False: post() declines, as a one-shot SSH transport does
        self._posted: list[tuple[Call, DoneCallback]] = []

    # -- scripting ---------------------------------------------------------------------

    def when(self, matcher: Matcher, *replies: Reply) -> FakeTransport:
        """Answer commands matching ``matcher`` (a regex searched in the script, or a
        predicate on the ``Call``) with ``replies``, one per call, the last repeating."""
        self._rules.append(_Rule(matcher, list(replies) or [Reply()]))
        return self

    def fail_put(self, path_regex: str, error: BaseException) -> FakeTransport:
        """Raise ``error`` (an OSError, or ConnectionLost) for puts to matching paths."""
        self.put_errors.append((path_regex, error))
        return self

    def factory(self, host: Host, accept_new_host_key: bool = False,
                sudo_password: str | None = None) -> FakeTransport:
        """A ``TransportFactory`` handing out this fake (unconnected, as a fresh
        transport would be)."""
        self.host = host
        if sudo_password is not None:
            self.sudo_password = sudo_password
        return self

    # -- inspection --------------------------------------------------------------------

    def runs(self, pattern: str | None = None) -> list[Call]:
        """The ``run`` calls made (whose script matches ``pattern``, if given)."""
        return [c for c in self.calls if c.kind == "run"
                and (pattern is None or re.search(pattern, c.script))]

    def kinds(self) -> list[str]:
        return [c.kind for c in self.calls]

    def start_process(self, script: str = "", *, sudo: bool = False,
                      unstoppable: bool = False) -> RemoteProcess:
        """A process group already running on the host (left by an earlier run)."""
        proc = self._new_process(sudo)
        self.processes[proc.pgid] = _Process(proc, script, unstoppable)
        return proc

    def reboot(self) -> None:
        """The host reboots: every process is gone, the boot id changes, and the
        connection with it."""
        self.processes.clear()
        self.boot_id = f"fake-boot-{int(self.boot_id.rsplit('-', 1)[1]) + 1}"
        self._drop()

    # -- the Transport interface ---------------------------------------------------------

    @property
    def label(self) -> str:
        user = f"{self.host.user}@" if self.host.user else ""
        return f"{self.host.name} ({user}{self.host.address}:{self.host.port})"

    def connect(self) -> None:
        self.calls.append(Call("connect"))
        if self.connected:
            return
        if self.connect_errors:
            raise self.connect_errors.pop(0)
        self.connected, self._dropped = True, False
        self.host_key_fingerprint = self._fingerprint

    def close(self) -> None:
        self._deliver_posted()
        self.calls.append(Call("close"))
        self.connected = self._dropped = False

    def post(self, script: str, on_done: DoneCallback, stdin: str | None = None,
             fork: bool = False) -> bool:
        """Answered by the rules like ``run`` (hangs, Ctrl-C and lost connections of a
        reply do not apply); the answer reaches ``on_done`` at the next run, collect
        or close, as over SSH. A dropped connection loses it (``None``)."""
        if not (self.can_post and self.connected):
            return False
        call = Call("post", script=script, stdin=stdin, what="a posted script")
        self.calls.append(call)
        reply = self._reply(call)
        if reply.effect is not None:
            reply.effect(call)
        tail = (reply.stdout + reply.stderr).splitlines()
        call.result = RunResult(exit_code=reply.exit_code, stdout=reply.stdout,
                                tail=tail[-200:])
        self._posted.append((call, on_done))
        return True

    def collect(self) -> None:
        self.calls.append(Call("collect"))
        self._deliver_posted()

    def _deliver_posted(self) -> None:
        posted, self._posted = self._posted, []
        for call, on_done in posted:
            on_done(call.result)

    def interrupt(self) -> None:
        self.calls.append(Call("interrupt"))
        self._interrupts += 1
        self._interrupted.set()

    def run(self, script: str, cwd: str | None = None, env: dict[str, str] | None = None,
            stdin: str | None = None, sudo: bool = False, timeout: float | None = None,
            on_line: LineCallback | None = None, check: bool = False,
            what: str = "a remote command") -> RunResult:
        call = Call("run", script=script, cwd=cwd, env=dict(env or {}), stdin=stdin,
                    sudo=sudo, timeout=timeout, what=what)
        self._deliver_posted()
        self.calls.append(call)
        self._require_connection(what)
        self._interrupted.clear()
        self._interrupts = 0
        reply = self._reply(call)
        if reply.effect is not None:
            reply.effect(call)
        proc = self._new_process(sudo)
        call.process = self.current_process = proc
        if self.on_process is not None and (reply.announce or reply.hang or reply.leftover
                                            or reply.lose_connection):
            self.on_process(proc)
        tail: list[str] = []
        error = self._emit(reply, on_line, tail)
        result = self._finish(reply, call, proc, tail, timeout)
        if error is not None:
            raise error
        if check and not result.ok:
            why = "timed out" if result.timed_out else f"exited {result.exit_code}"
            raise RunFailed(f"{what} on {self.host.name} {why}: {' | '.join(tail[-3:])}")
        return result

    def put(self, data: bytes | IO[bytes], remote_path: str, mode: int | None = None) -> None:
        raw = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else data.read()
        self.calls.append(Call("put", path=remote_path, data=raw, mode=mode))
        self._require_connection(f"upload to {remote_path}")
        for pattern, error in self.put_errors:
            if re.search(pattern, remote_path):
                if isinstance(error, ConnectionLost):
                    self._drop()
                raise error
        self.uploads[remote_path] = raw

    def stop_process(self, proc: RemoteProcess, grace: float = KILL_GRACE) -> str:
        call = Call("stop_process", process=proc, sudo=proc.sudo, timeout=grace)
        self.calls.append(call)
        self._require_connection("stopping a leftover remote command")
        running = self.processes.get(proc.pgid)
        if not proc.start or not proc.boot_id:
            status = PROCESS_UNVERIFIABLE  # nothing recorded to check it against
        elif proc.boot_id != self.boot_id:
            status = PROCESS_REBOOTED
        elif running is None or running.proc != proc:
            status = PROCESS_GONE
        elif running.unstoppable:
            status = PROCESS_ALIVE
        else:
            del self.processes[proc.pgid]
            status = PROCESS_STOPPED
        call.result = status
        return status

    # -- internals -----------------------------------------------------------------------

    def _require_connection(self, what: str) -> None:
        """As the SSH transport: a closed (or never opened) connection opens on first
        use; a lost one stays lost until ``connect()``."""
        if self.connected:
            return
        if self._dropped:
            raise TransportError(f"connection to {self.label} is closed (during {what})",
                                 hint="the run is resumable: run again with --resume")
        self.connect()

    def _drop(self) -> None:
        self.connected, self._dropped = False, True
        posted, self._posted = self._posted, []
        for _call, on_done in posted:
            on_done(None)  # the answers went down with the connection

    def _reply(self, call: Call) -> Reply:
        for rule in self._rules:
            if rule.matches(call):
                return rule.take()
        return self.default

    def _new_process(self, sudo: bool) -> RemoteProcess:
        self._next_pid += 1
        return RemoteProcess(pgid=self._next_pid, start=str(self._next_pid * 7),
                             boot_id=self.boot_id, sudo=sudo)

    def _emit(self, reply: Reply, on_line: LineCallback | None,
              tail: list[str]) -> BaseException | None:
        """Deliver the reply's output; the first exception of ``on_line`` stops the
        command (as the SSH transport does) and is returned, to raise after."""
        for stream, text in (("stdout", reply.stdout), ("stderr", reply.stderr)):
            for line in text.splitlines():
                tail.append(line)
                if on_line is None:
                    continue
                try:
                    on_line(stream, line)
                except Exception as e:  # noqa: BLE001 - re-raised by run()
                    return e
        return None

    def _finish(self, reply: Reply, call: Call, proc: RemoteProcess, tail: list[str],
                timeout: float | None) -> RunResult:
        """The result of a command whose output is out; raises for lost connections
        and Ctrl-C. Leaves ``current_process`` naming a group that may still run."""
        stays = _Process(proc, call.script, reply.unstoppable)
        if reply.lose_connection:
            self._drop()
            if reply.leftover:
                self.processes[proc.pgid] = stays
            call.result = error = ConnectionLost(
                f"connection to {self.label} lost during {call.what}",
                hint="the session was closed by the server or the network (sshd restart, "
                     "reboot, OOM killer?); the run is resumable: run again with --resume")
            raise error
        timed_out = interrupted = False
        if reply.hang and not reply.ctrl_c:
            if timeout is None:
                self._interrupted.wait()
                interrupted = True
            else:
                timed_out = True
        stopping = timed_out or interrupted or reply.ctrl_c
        second = reply.second or self._interrupts >= 2
        stopped = None if not stopping else not (reply.leftover or second)
        if stopping and not stopped:
            self.processes[proc.pgid] = stays
        else:
            self.current_process = None  # known to have ended
        # A stopped command's shell reports TERM's 143 once the group is gone; one not
        # seen to end reports nothing.
        code = reply.exit_code if not stopping else 143 if stopped else -1
        result = RunResult(
            exit_code=code, stdout=reply.stdout,
            tail=tail[-200:], timed_out=timed_out, interrupted=interrupted or reply.ctrl_c,
            duration=timeout if timed_out and timeout is not None else 0.0, stopped=stopped)
        call.result = result
        if reply.ctrl_c:
            raise StepInterrupted(result, second=reply.second)
        return result

