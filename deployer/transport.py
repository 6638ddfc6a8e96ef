"""The one I/O seam to a host: run a script, put a file, close. Only module importing
Fabric/paramiko (lazily, so CLI startup stays light).

Interface (used by executor, lock, doctor):

    t = SSHTransport(host, accept_new_host_key=False, extra_known_hosts=[...], sudo_password=None)
    t.connect()                      -> raises HostKeyError / TransportError
    r = t.run(script, cwd=None, env=None, stdin=None, sudo=False, timeout=None,
              on_line=None, check=False) -> RunResult
    t.put(data: bytes, remote_path: str, mode: int | None = None) -> None
    t.close()

``run`` executes ``script`` under ``bash -e -o pipefail`` on the host. Script, env
exports and stdin travel over the channel's stdin (never the remote argv) so secrets
never show in ``ps``. ``on_line(stream, line)`` is called for each output line as it
arrives ("stdout"/"stderr"); memory stays bounded whatever the output size.
``timeout`` kills the remote process group, not just the local wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

LineCallback = Callable[[str, str], None]


@dataclass
class RunResult:
    exit_code: int
    stdout: str = ""  # kept up to MAX_CAPTURE bytes (for capture)
    stdout_truncated: bool = False
    tail: list[str] = field(default_factory=list)  # last lines of combined output
    timed_out: bool = False
    interrupted: bool = False
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.interrupted
