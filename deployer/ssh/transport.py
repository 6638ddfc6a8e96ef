"""``SSHTransport``: ``deployer.transport.Transport`` over one SSH connection per host,
reused by every ``run`` and ``put``. It composes the pieces of this package:
``connect`` (the connection), ``shell`` (the bash of a step), ``step`` (running one
step on the remote agent), ``channel`` (agent, kill and SFTP channels) and
``remote_process`` (stopping process groups). Details in docs/ssh.md.

The start marker of a step carries the group leader's start time
(``/proc/<pid>/stat``) and the host's boot id, so the group can be told apart from a
later process that reuses its pid: ``current_process`` is that identity while the
command may still be running (cleared once it is known to have ended), ``on_process``
is called with it once the command has run for ``announce_after`` seconds (the
executor records it), and ``stop_process`` stops such a group later, from another
connection.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterable
from typing import IO, Any

from deployer.errors import RunFailed
from deployer.models import Host
from deployer.ssh import inline_put, remote_process
from deployer.ssh.channel import (
    Agent,
    KillChannel,
    LostAgent,
    sftp_write,
    start_agent,
    temp_path,
)
from deployer.ssh.connect import (
    ENV_KNOWN_HOSTS,
    ENV_SSH_CONFIG,
    KEEPALIVE,
    ConnectOptions,
    Connector,
    env_path,
)
from deployer.ssh.posted import Answers, Posted, notify
from deployer.ssh.shell import frame, posted_frame, step_code
from deployer.ssh.step import Interrupts, StepRun
from deployer.transport import (
    KILL_GRACE,
    ConnectionLost,
    DoneCallback,
    LineCallback,
    ProcessCallback,
    RemoteProcess,
    RunResult,
)

ANNOUNCE_AFTER = 0.2  # seconds a command runs before ``on_process`` hears of it
_DEFAULT: Any = object()


class SSHTransport:
    """One SSH connection to one host (see ``deployer.transport.Transport``).

    Options beyond the interface: ``persistent`` (one remote shell per connection fed
    step after step, default; False = a fresh channel and shell per step),
    ``ssh_config`` (path of the OpenSSH client config to honour, default
    ``$DEPLOYER_SSH_CONFIG`` or ~/.ssh/config; None reads none), ``user_known_hosts``
    (default ``$DEPLOYER_KNOWN_HOSTS`` or ~/.ssh/known_hosts, plus
    /etc/ssh/ssh_known_hosts; None reads neither), ``use_agent`` (ssh-agent keys),
    ``keepalive`` (seconds between SSH keepalives), ``kill_grace`` (seconds between TERM
    and KILL when a step is stopped), ``hash_known_hosts`` (record new keys hashed;
    default from the ssh config's HashKnownHosts).
    """

    def __init__(
        self,
        host: Host,
        accept_new_host_key: bool = False,
        extra_known_hosts: Iterable[str] = (),
        sudo_password: str | None = None,
        *,
        persistent: bool = True,
        ssh_config: str | None = _DEFAULT,
        user_known_hosts: str | None = _DEFAULT,
        use_agent: bool = True,
        keepalive: float = KEEPALIVE,
        kill_grace: float = KILL_GRACE,
        hash_known_hosts: bool | None = None,
    ) -> None:
        self.host = host
        self.sudo_password = sudo_password
        self.persistent = persistent
        self.kill_grace = kill_grace
        if ssh_config is _DEFAULT:
            ssh_config = env_path(ENV_SSH_CONFIG, "~/.ssh/config")
        if user_known_hosts is _DEFAULT:
            user_known_hosts = env_path(ENV_KNOWN_HOSTS, "~/.ssh/known_hosts")
        self.connector = Connector(host, ConnectOptions(
            accept_new_host_key=accept_new_host_key,
            extra_known_hosts=list(extra_known_hosts), ssh_config_path=ssh_config,
            user_known_hosts=user_known_hosts, use_agent=use_agent, keepalive=keepalive,
            hash_known_hosts=hash_known_hosts))
        self.interrupts = Interrupts()
        self._agent: Agent | None = None
        self._sftp: Any = None
        self._lock = threading.Lock()
        self._posted: list[Posted] = []  # sent, answers not read yet (oldest first)
        # The process group of the command started last, while it may still be running.
        self.current_process: RemoteProcess | None = None
        self.on_process: ProcessCallback | None = None
        # Commands shorter than this are never announced: recording costs a write.
        self.announce_after = ANNOUNCE_AFTER

    # -- connection ----------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.connector.label

    @property
    def connected(self) -> bool:
        return self.connector.connected

    @property
    def conn(self) -> Any:
        """The fabric.Connection once connected."""
        return self.connector.conn

    @property
    def keepalive(self) -> float:
        return self.connector.options.keepalive

    @property
    def host_key_fingerprint(self) -> str | None:
        return self.connector.host_key_fingerprint

    @property
    def recorded_host_key(self) -> str | None:
        """The known_hosts file a new host key was recorded in, if one was."""
        return self.connector.recorded_host_key

    def connect(self) -> None:
        """Open the connection (idempotent). Raises HostKeyError or TransportError."""
        if self.connector.conn is not None and self.connected:
            return
        self.close()
        self.connector.open()

    def close(self) -> None:
        """Read what posted scripts answered, then close the agent, SFTP and the
        connection (idempotent)."""
        try:
            self.collect()
        except KeyboardInterrupt:
            pass  # closing anyway; the answers that were not read count as lost
        agent, self._agent = self._agent, None
        if agent is not None:
            agent.close()
        sftp, self._sftp = self._sftp, None
        if sftp is not None:
            try:
                sftp.close()
            except Exception:
                pass
        self.connector.close()
        self.interrupts.close()

    def __enter__(self) -> SSHTransport:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def interrupt(self) -> None:
        """Stop the step running now (thread-safe): its process group gets TERM, then
        KILL, and ``run`` returns with ``interrupted`` set. A second call while the
        group is being stopped stops waiting for it (``stopped`` is then False)."""
        self.interrupts.request()

    # -- run -----------------------------------------------------------------------------

    def run(
        self,
        script: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        sudo: bool = False,
        timeout: float | None = None,
        on_line: LineCallback | None = None,
        check: bool = False,
        what: str = "a remote command",
    ) -> RunResult:
        """Run ``script`` on the host (see ``deployer.transport``). Ctrl-C stops the
        remote command, then raises ``StepInterrupted`` (a KeyboardInterrupt) carrying
        the ``RunResult`` and whether a second Ctrl-C came while it was being stopped."""
        code = step_code(script, cwd, env, stdin, sudo, self.sudo_password)
        with self._lock:
            self.interrupts.reset()
            self.current_process = None
            agent = self._agent_for_step()
            step = StepRun(self, agent, frame(agent.token.decode(), code), sudo, timeout,
                           on_line, what)
            if self._posted:
                # This step goes out first: the host runs it right after the posted
                # scripts while their answers travel back.
                step.send()
                answers = self._read_posted(what)
                step.restart_streams()
                if answers.held_interrupt:
                    step.hold_keyboard()
                result = step.run(sent=True)
            else:
                result = step.run()
        if check and not result.ok:
            last = " | ".join(result.tail[-3:])
            why = "timed out" if result.timed_out else f"exited {result.exit_code}"
            raise RunFailed(f"{what} on {self.host.name} {why}: {last}")
        return result

    # -- posted scripts (deployer.ssh.posted) ------------------------------------------

    def post(self, script: str, on_done: DoneCallback, stdin: str | None = None,
             fork: bool = False) -> bool:
        """See ``deployer.transport.Transport.post``: a builtins-only script only goes
        to a persistent agent that is already up (starting one is a round trip of its
        own); a forked one starts the agent, whose cost the next command saves."""
        with self._lock:
            agent = self._agent
            if not self.persistent:
                return False
            if agent is None or not agent.usable:
                if not fork:
                    return False
                try:
                    agent = self._agent_for_step()
                except ConnectionLost:
                    return False
            data = posted_frame(agent.token.decode(), script, stdin, fork)
            try:
                agent.chan.sendall(data)
            except Exception:
                self.forget_agent(agent)
                return False
            self._posted.append(Posted(agent, on_done))
            return True

    def collect(self) -> None:
        """Read the posted answers now; a Ctrl-C held meanwhile is raised after."""
        with self._lock:
            if not self._posted:
                return
            self.interrupts.reset()  # no step runs now: its wake-up pipe is free
            answers = self._read_posted(None)
        if answers.held_interrupt:
            raise KeyboardInterrupt

    def _read_posted(self, what: str | None) -> Answers:
        """Read every posted answer. A lost agent: the posters hear ``None``, and with
        ``what`` (a step already sent behind them) the step's connection is lost."""
        answers = Answers(self.interrupts.wake_fd)
        while self._posted:
            posted = self._posted.pop(0)
            try:
                notify(posted, answers.read(posted))
            except LostAgent as e:
                notify(posted, None)
                for rest in self._posted:
                    notify(rest, None)
                self._posted.clear()
                self.forget_agent(posted.agent)
                if what is not None:
                    raise self.lost(what, e) from e
        return answers

    def _agent_for_step(self) -> Agent:
        """The persistent agent if it is still usable, else a new one (answers posted
        to a dropped agent are lost: their posters hear ``None``)."""
        if self._agent is not None and not self._agent.usable:
            self.forget_agent(self._agent)
        if self.persistent and self._agent is not None:
            return self._agent
        try:
            # A connection that closed since the last step is lost like one that
            # closes under it (the caller reconnects either way).
            t = self.connector.transport()
            agent = start_agent(t, max(self.host.connect_timeout, 30.0), self.persistent)
        except Exception as e:
            raise self.lost("starting the remote shell", e) from e
        if self.persistent:
            self._agent = agent
        return agent

    # -- what a StepRun needs (step.StepHost) -----------------------------------------

    def forget_agent(self, agent: Agent) -> None:
        if agent is self._agent:
            self._agent = None
        lost = [p for p in self._posted if p.agent is agent]
        self._posted = [p for p in self._posted if p.agent is not agent]
        for posted in lost:
            notify(posted, None)

    def open_kill(self, pgid: int, sudo: bool) -> KillChannel | None:
        """TERM the step's process group, KILL it after ``kill_grace`` seconds, from a
        second channel (the agent is busy waiting for the step)."""
        command, payload = remote_process.kill_group_command(pgid, self.kill_grace, sudo,
                                                             self.sudo_password)
        try:
            t = self.connector.transport()
        except Exception:
            return None  # the connection is going: the step's loop will notice
        return KillChannel.open(t, command, payload)

    def lost(self, what: str, cause: BaseException) -> ConnectionLost:
        """The error for a connection (or remote shell) that ended during ``what``."""
        t = self.conn.client.get_transport() if self.conn is not None else None
        if isinstance(cause, LostAgent) and t is not None and t.is_active():
            detail = f" (exit {cause.exit_status})" if cause.exit_status is not None else ""
            said = f": {cause.stray}" if cause.stray else ""
            return ConnectionLost(
                f"the remote shell on {self.label} ended during {what}{detail}{said}",
                hint="deployer needs bash on the host; the run is resumable with --resume")
        return ConnectionLost(
            f"connection to {self.label} lost during {what}",
            hint="the session was closed by the server or the network (sshd restart, "
                 "reboot, OOM killer?); the run is resumable: run again with --resume")

    # -- processes left running ----------------------------------------------------------

    def stop_process(self, proc: RemoteProcess, grace: float = KILL_GRACE) -> str:
        """See ``deployer.transport.Transport.stop_process``."""
        return remote_process.stop_remote_process(self, proc, grace)

    # -- put -----------------------------------------------------------------------------

    def put(self, data: bytes | IO[bytes], remote_path: str, mode: int | None = None) -> None:
        """Write ``data`` (bytes, or a binary file read in chunks, so an archive of any
        size costs bounded memory) to ``remote_path`` atomically: a small one through the
        agent (``inline_put``, one round trip), a larger one over SFTP on the same
        connection (``channel.sftp_write``). Remote file errors raise OSError; a lost
        connection raises ConnectionLost."""
        import paramiko

        payload = inline_put.small_payload(data) if self.persistent else None
        if payload is not None:
            script, _ = inline_put.put_script(remote_path, temp_path(remote_path), mode)
            result = self.run(script, stdin=inline_put.encode(payload), timeout=120,
                              what=f"upload to {remote_path}")
            if result.exit_code == 0:
                return
            if result.exit_code != inline_put.NO_BASE64:
                reason = " ".join(result.tail[-2:]) or f"exit {result.exit_code}"
                raise OSError(errno.EIO, f"cannot write {remote_path} on {self.host.name}: "
                                         f"{reason}")
            data = payload  # no base64 on the host: SFTP, as for a large file
        with self._lock:
            t = self.connector.transport()
            try:
                if self._sftp is None:
                    self._sftp = self.conn.client.open_sftp()
                sftp_write(self._sftp, data, remote_path, mode, t.is_active)
            except OSError as e:
                if not t.is_active():
                    self._sftp = None
                    raise self.lost(f"upload to {remote_path}", e) from e
                reason = e.strerror or str(e) or type(e).__name__
                raise OSError(e.errno, f"cannot write {remote_path} on {self.host.name}: "
                                       f"{reason}") from e
            except (EOFError, paramiko.SSHException) as e:
                self._sftp = None
                raise self.lost(f"upload to {remote_path}", e) from e
