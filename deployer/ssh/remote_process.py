"""Remote process control: the shell scripts that stop a step's process group, built
from a few numbers (no user text ever enters them), and reading their answers.

Two stoppers exist. ``kill_group_command`` is sent on a second channel while the
step runs (timeout, Ctrl-C, ``interrupt()``): TERM the group, KILL it after the grace
period, exit 0 once nothing of it is left. ``stop_group_script`` stops a group left by
an earlier connection (``stop_remote_process``): only if it is verifiably the same
group (same boot id, leader start time), since its pid may have been reused since.
"""

from __future__ import annotations

import math
from typing import Any

from deployer.ssh.shell import sh_quote
from deployer.transport import KILL_GRACE, PROCESS_ALIVE, PROCESS_STATES, RemoteProcess


def _ticks(grace: float) -> int:
    """Polls of 0.1 s that make up ``grace`` seconds."""
    return max(1, int(math.ceil(grace / 0.1)))


def kill_group_script(pgid: int, grace: float) -> str:
    """TERM group ``pgid``, KILL it after ``grace`` seconds. Exits 0 once no process of
    the group is left, 1 if one outlives KILL (another user's process, uninterruptible
    sleep): ``run`` only reports ``stopped`` on 0."""
    return (f"p={pgid}; kill -TERM -$p 2>/dev/null || exit 0; i=0; "
            f"while [ $i -lt {_ticks(grace)} ]; do sleep 0.1; kill -0 -$p 2>/dev/null || "
            "exit 0; i=$((i+1)); done; kill -KILL -$p 2>/dev/null; i=0; "
            "while [ $i -lt 20 ]; do kill -0 -$p 2>/dev/null || exit 0; sleep 0.1; "
            "i=$((i+1)); done; exit 1")


def kill_group_command(pgid: int, grace: float, sudo: bool,
                       sudo_password: str | None) -> tuple[str, bytes]:
    """The exec command running ``kill_group_script``, and what to send on its stdin.
    A group started through sudo holds root processes: it is signalled as root too
    (the exit status is root's view, which sees the whole group)."""
    script = kill_group_script(pgid, grace)
    plain = f"sh -c {sh_quote(script)}"
    if not sudo:
        return plain, b""
    if sudo_password is not None:
        return (f"{plain} >/dev/null 2>&1 & sudo -S -p '' -- {plain}",
                sudo_password.encode() + b"\n")
    return f"{plain} >/dev/null 2>&1 & sudo -n -- {plain}", b""


# Arguments: pgid, the leader's recorded start time, the recorded boot id, polls of
# 0.1 s before KILL. Prints one of the PROCESS_* states as its last line.
_STOP_GROUP = r"""
p=$1; want=$2; boot=$3; steps=$4
now=; { read -r now </proc/sys/kernel/random/boot_id; } 2>/dev/null || true
if [ -z "$now" ] || [ -z "$want" ] || [ -z "$boot" ]; then echo UNVERIFIABLE; exit 0; fi
if [ "$now" != "$boot" ]; then echo REBOOTED; exit 0; fi
# Live members of group $p started no earlier than its leader: a pid is never reused
# while its process group exists, so these are the recorded command's processes.
members() {
  n=0
  for f in /proc/[0-9]*/stat; do
    s=; { read -r s <"$f"; } 2>/dev/null || continue
    a=(${s##*) })
    [ "${a[2]}" = "$p" ] || continue
    [ "${a[0]}" = Z ] && continue
    [ "${a[19]}" -ge "$want" ] 2>/dev/null || continue
    n=$((n+1))
  done
  echo "$n"
}
lead=; { read -r lead </proc/$p/stat; } 2>/dev/null || true
if [ -n "$lead" ]; then
  a=(${lead##*) })
  # The pid is taken by a process started at another time: the group ended long ago.
  [ "${a[19]}" = "$want" ] || { echo GONE; exit 0; }
fi
[ "$(members)" -gt 0 ] || { echo GONE; exit 0; }
kill -TERM -- -"$p" 2>/dev/null || true
i=0
while [ $i -lt "$steps" ]; do
  [ "$(members)" -gt 0 ] || { echo STOPPED; exit 0; }
  sleep 0.1; i=$((i+1))
done
kill -KILL -- -"$p" 2>/dev/null || true
i=0
while [ $i -lt 30 ]; do
  [ "$(members)" -gt 0 ] || { echo STOPPED; exit 0; }
  sleep 0.1; i=$((i+1))
done
echo ALIVE
"""


def stop_group_script(proc: RemoteProcess, grace: float) -> str:
    """The bash script stopping ``proc`` (see ``_STOP_GROUP``)."""
    args = " ".join(sh_quote(str(a)) for a in (proc.pgid, proc.start, proc.boot_id,
                                                 _ticks(grace)))
    return f"set -- {args}\n{_STOP_GROUP}"


def stop_answer(exit_code: int, stdout: str) -> str:
    """The state ``stop_group_script`` reported; ALIVE when it said nothing usable
    (it could not run: no proof the group is gone)."""
    said = stdout.strip().splitlines()[-1:] if exit_code == 0 else []
    if said and said[0] in PROCESS_STATES:
        return said[0]
    return PROCESS_ALIVE


def stop_remote_process(runner: Any, proc: RemoteProcess, grace: float = KILL_GRACE) -> str:
    """Stop the process group ``proc`` on the host behind ``runner`` (a connected
    ``SSHTransport``, typically a new connection after the one that started it was
    lost). Returns one of ``PROCESS_STATES``; a lost connection raises
    ConnectionLost."""
    result = runner.run(stop_group_script(proc, grace), sudo=proc.sudo, check=False,
                        timeout=grace + 60, what="stopping a leftover remote command")
    return stop_answer(result.exit_code, result.stdout)
