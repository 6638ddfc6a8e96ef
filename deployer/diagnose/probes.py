"""The doctor's host probes and their parsers: SSH, sudo, Docker, Compose, disk and
clock. Each probe is a small shell script (all travel in one remote command, split by a
random marker: ``combine_probes`` / ``split_probes``); each parser turns its recorded
output into a ``Check``. Pure: tested from recorded output.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from deployer.diagnose.checks import (
    FAIL,
    OK,
    SKIP,
    WARN,
    Check,
    _catalogue_fix,
    _fmt_mb,
    _threshold,
)

DEFAULT_APP_DIR = "/srv/app"
DEFAULT_DOCKER_ROOT = "/var/lib/docker"
MIN_DOCKER = (20, 10)
PROBE_TIMEOUT = 20

# ------------------------------------------------------------------------ probes

DOCKER_INFO = ("docker info --format "
               "'{{.ServerVersion}}|{{.OperatingSystem}}|{{.DockerRootDir}}'")
SUDO_WORKS = "@@docker-works-with-sudo"
CONTAINERS = ("docker ps --no-trunc --format '{{.ID}}\t{{.Names}}\t"
              "{{.Label \"com.docker.compose.project\"}}\t"
              "{{.Label \"com.docker.compose.project.working_dir\"}}\t{{.Ports}}'")
# What runs through sudo when the runbook's docker steps use sudo: true (one more round
# trip, through the transport's sudo, so a configured sudo password works too).
SUDO_PROBES: dict[str, str] = {
    "docker": 'command -v docker >/dev/null 2>&1 || { echo "docker: command not found"; '
              f'exit 127; }}\n{DOCKER_INFO} 2>&1',
    "containers": f"{CONTAINERS} 2>&1 || echo '@@docker-failed'",
}

PROBES: dict[str, str] = {
    "ssh": 'printf "%s\\n%s\\n%s\\n" "$(id -un)" "$(id -u)" "$(uname -srm)"',
    "sudo": (
        'if [ "$(id -u)" = 0 ]; then echo "root"; exit 0; fi\n'
        'command -v sudo >/dev/null 2>&1 || { echo "sudo: command not found"; exit 127; }\n'
        "sudo -n true 2>&1"
    ),
    # A user outside the docker group gets "permission denied"; whether docker works
    # through sudo decides the advice (join the group, or run the steps with sudo).
    "docker": (
        'command -v docker >/dev/null 2>&1 || { echo "docker: command not found"; exit 127; }\n'
        f"out=$({DOCKER_INFO} 2>&1); rc=$?\n"
        "printf '%s\\n' \"$out\"\n"
        'if [ "$rc" != 0 ] && [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && '
        "printf '%s' \"$out\" | grep -qi 'permission denied' && "
        f"sudo -n {DOCKER_INFO} >/dev/null 2>&1; then echo '{SUDO_WORKS}'; fi\n"
        'exit "$rc"'
    ),
    "compose": (
        "v2=$(docker compose version --short 2>&1); rc2=$?\n"
        "v1=$(docker-compose version --short 2>&1); rc1=$?\n"
        'printf "v2 %s %s\\nv1 %s %s\\n" "$rc2" "$(printf %s "$v2" | head -n 1)" '
        '"$rc1" "$(printf %s "$v1" | tail -n 1)"'
    ),
    # Listening sockets with their processes (through sudo -n when the user has it: a
    # plain user sees only its own processes), then each process's container id from
    # its cgroup (world-readable), so a port held by the stack's own host-network
    # container can be told from a stranger.
    "ports": (
        "command -v ss >/dev/null 2>&1 || { echo 'ss: command not found'; exit 0; }\n"
        'if [ "$(id -u)" != 0 ] && sudo -n true >/dev/null 2>&1; then '
        "out=$(sudo -n ss -ltnpH 2>/dev/null) || out=$(ss -ltnpH 2>&1);\n"
        "else out=$(ss -ltnpH 2>/dev/null) || out=$(ss -ltnH 2>&1); fi\n"
        "printf '%s\\n' \"$out\"\n"
        "printf '%s\\n' \"$out\" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u | "
        "while read -r p; do c=$(grep -oE '[0-9a-f]{64}' /proc/$p/cgroup 2>/dev/null "
        "| head -n 1); printf '@@pid %s %s\\n' \"$p\" \"$c\"; done\n"
        "echo '@@docker'\n"
        f"{CONTAINERS} 2>/dev/null || {{ [ \"$(id -u)\" != 0 ] && sudo -n {CONTAINERS} "
        "2>/dev/null; } || echo '@@docker-failed'"
    ),
}


def disk_probe(paths: Sequence[str], docker_root: str | None = DEFAULT_DOCKER_ROOT) -> str:
    """df for each path's nearest existing ancestor (the app dir may not exist yet), plus
    the Docker root dir as the engine reports it (``docker_root`` when it cannot)."""
    lines = ['__df() { p=$1; while [ ! -e "$p" ]; do p=$(dirname -- "$p"); done; '
             'printf "@@path\\t%s\\t%s\\n" "$1" "$p"; '
             "df -Pk -- \"$p\" 2>&1 | awk 'NR>1{print \"DF \" $0}'; "
             "df -Pi -- \"$p\" 2>&1 | awk 'NR>1{print \"DFI \" $0}'; }"]
    for path in paths:
        lines.append(f"__df {shlex.quote(path)}")
    if docker_root is not None:
        lines.append("dr=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null) || dr=''")
        lines.append(f'[ -n "$dr" ] || dr={shlex.quote(docker_root)}')
        quoted = " ".join(shlex.quote(p) for p in paths)
        lines.append(f'case " {quoted} " in *" $dr "*) ;; *) __df "$dr" ;; esac')
    return "\n".join(lines)


def combine_probes(probes: Mapping[str, str], token: str) -> str:
    """One script running every probe (stdout+stderr merged, bounded by ``timeout``),
    each section framed by ``token`` lines carrying the probe id and its exit code, in
    the order given whatever order they finished in."""
    out = [
        "set +e",
        "__probe() {",
        f'  printf "\\n{token} begin %s\\n" "$1"',
        "  if command -v timeout >/dev/null 2>&1; then",
        f'    timeout {PROBE_TIMEOUT} bash -c "$2" </dev/null 2>&1',
        "  else",
        '    bash -c "$2" </dev/null 2>&1',
        "  fi",
        f'  printf "\\n{token} end %s %s\\n" "$1" "$?"',
        "}",
    ]
    calls = [f"__probe {shlex.quote(probe_id)} {shlex.quote(code)}"
             for probe_id, code in probes.items()]
    # The probes are read-only and independent: they run side by side (docker info
    # alone can take a second), each into its own file, printed in order after.
    out += ['__pd=$(mktemp -d 2>/dev/null) || __pd=""', 'if [ -n "$__pd" ]; then']
    out += [f'  {call} > "$__pd/{i}" &' for i, call in enumerate(calls)]
    out += ["  wait", '  cat -- ' + " ".join(f'"$__pd/{i}"' for i in range(len(calls)))
            if calls else "  :", '  rm -rf -- "$__pd"', "else"]
    out += [f"  {call}" for call in calls] or ["  :"]
    out += ["fi", "exit 0"]
    return "\n".join(out) + "\n"


def split_probes(output: str, token: str) -> dict[str, tuple[int, str]]:
    """Parse ``combine_probes`` output into probe id -> (exit code, output)."""
    results: dict[str, tuple[int, str]] = {}
    current: str | None = None
    buf: list[str] = []
    for line in output.splitlines():
        if line.startswith(token + " "):
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "begin":
                current, buf = parts[2], []
            elif len(parts) >= 4 and parts[1] == "end" and current == parts[2]:
                try:
                    code = int(parts[3])
                except ValueError:
                    code = -1
                results[current] = (code, "\n".join(buf).strip("\n"))
                current = None
            continue
        if current is not None:
            buf.append(line)
    return results


# ------------------------------------------------------------------------ parsers


def parse_ssh(exit_code: int, output: str, label: str = "",
              fingerprint: str | None = None) -> Check:
    lines = output.splitlines()
    if exit_code != 0 or len(lines) < 3:
        return Check("ssh", "SSH", FAIL, f"connected, but a basic command failed: "
                     f"{output.strip()[:200]}", "check the login shell of the deploy user")
    user, uid, system = lines[0].strip(), lines[1].strip(), lines[2].strip()
    key = f"; host key {fingerprint}" if fingerprint else "; host key verified"
    where = f" to {label}" if label else ""
    return Check("ssh", "SSH", OK, f"connected{where} as {user} (uid {uid}), {system}{key}")


def parse_sudo(exit_code: int, output: str, has_password: bool = False) -> Check:
    text = output.strip()
    if exit_code == 0:
        if text == "root":
            return Check("sudo", "sudo", OK, "connected as root; sudo not needed")
        return Check("sudo", "sudo", OK, "passwordless sudo works")
    if "command not found" in text:
        return Check("sudo", "sudo", WARN, "sudo is not installed; steps with sudo: true "
                     "will fail", "apt-get install sudo (as root) or avoid sudo: true steps")
    if has_password:
        return Check("sudo", "sudo", OK, "sudo asks for a password; a sudo password is "
                     "configured for this host")
    return Check("sudo", "sudo", WARN, f"sudo needs a password and none is configured "
                 f"({text.splitlines()[0] if text else 'exit ' + str(exit_code)}); steps with "
                 "sudo: true will fail",
                 "allow the deploy user passwordless sudo for what it needs (a file in "
                 "/etc/sudoers.d/ via visudo) or configure the sudo password secret")


def _version_tuple(text: str) -> tuple[int, ...]:
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    return tuple(int(g) for g in m.groups() if g is not None) if m else ()


def parse_docker(exit_code: int, output: str,
                 min_version: tuple[int, ...] = MIN_DOCKER) -> Check:
    # a failing `docker info --format` still prints the empty template ("||")
    text = "\n".join(line for line in output.strip().splitlines()
                     if line.strip().strip("|")).strip()
    last = text.splitlines()[-1] if text else ""
    if exit_code == 0 and last.count("|") >= 2:
        version, system, root = (last.split("|") + ["", ""])[:3]
        parsed = _version_tuple(version)
        detail = f"Docker {version} on {system} (root dir {root})"
        if parsed and parsed < min_version:
            need = ".".join(map(str, min_version))
            return Check("docker", "Docker engine", WARN, f"{detail}: older than {need}",
                         "upgrade Docker Engine (https://docs.docker.com/engine/install/)")
        return Check("docker", "Docker engine", OK, detail)
    if "command not found" in text or exit_code == 127:
        what = "docker is not installed (not on the SSH user's PATH)"
    elif "Cannot connect to the Docker daemon" in text:
        what = "the Docker engine is not running"
    elif "a password is required" in text or "incorrect password" in text:
        return Check("docker", "Docker engine", FAIL, "docker runs with sudo here (the "
                     "runbook's docker steps use sudo: true) but sudo needs a password and "
                     "none is configured",
                     "configure the sudo_password secret, or allow the deploy user "
                     "passwordless sudo for docker (/etc/sudoers.d/ via visudo)")
    elif "permission denied" in text.lower():
        what = "the SSH user may not use the Docker socket"
    elif exit_code == 124:
        what = f"`docker info` did not answer within {PROBE_TIMEOUT} s (engine hung?)"
    else:
        what = f"`docker info` failed (exit {exit_code})"
    _, fix = _catalogue_fix(text, "sudo systemctl status docker; sudo journalctl -u docker -n 50")
    return Check("docker", "Docker engine", FAIL, f"{what}: {text[:300]}" if text else what, fix)


def docker_check(plain: tuple[int, str] | None, sudo: tuple[int, str] | None,
                 user: str = "") -> Check:
    """The Docker verdict for how the runbook runs docker: ``plain`` is the result of
    ``docker info`` as the SSH user (None when no docker step runs without sudo),
    ``sudo`` through sudo (None when no docker step uses sudo: true)."""
    checks: list[Check] = []
    if sudo is not None:
        c = parse_docker(*sudo)
        checks.append(Check(c.id, c.title, c.status, "via sudo (the runbook's docker steps "
                            f"use sudo: true): {c.detail}", c.fix))
    if plain is not None:
        code, out = plain
        works_with_sudo = SUDO_WORKS in out
        c = parse_docker(code, out.replace(SUDO_WORKS, "").strip())
        if c.status == FAIL and works_with_sudo:
            who = user or "$USER"
            c = Check("docker", "Docker engine", FAIL,
                      "the SSH user may not use the Docker socket (docker works with sudo, "
                      "but the runbook's docker steps run without it)",
                      f"add the user to the docker group: sudo usermod -aG docker {who} "
                      "(then reconnect), or set sudo: true on the runbook's docker and "
                      "compose steps")
        checks.append(c)
    if not checks:
        return Check("docker", "Docker engine", SKIP, "no runbook step uses Docker")
    rank = {OK: 0, SKIP: 0, WARN: 1, FAIL: 2}
    worst = max(checks, key=lambda c: rank[c.status])
    if len(checks) == 1 or worst.status != OK:
        return worst
    return Check("docker", "Docker engine", OK, f"{checks[1].detail}; {checks[0].detail}")


def parse_compose(exit_code: int, output: str, configured: str | None = None) -> Check:
    flavours: dict[str, tuple[int, str]] = {}
    for line in output.splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[0] in ("v1", "v2"):
            try:
                code = int(parts[1])
            except ValueError:
                continue
            flavours[parts[0]] = (code, parts[2].strip() if len(parts) > 2 else "")
    v2 = flavours.get("v2", (1, ""))
    v1 = flavours.get("v1", (1, ""))
    v2_ok = v2[0] == 0 and bool(_version_tuple(v2[1]))
    v1_ok = v1[0] == 0 and bool(_version_tuple(v1[1]))
    found = []
    if v2_ok:
        found.append(f"docker compose {v2[1]}")
    if v1_ok:
        found.append(f"docker-compose {v1[1]}")
    have = ", ".join(found) or "none"
    install = ("install the compose plugin: sudo apt-get install docker-compose-plugin "
               "(docker-compose-v2 on Ubuntu)")
    if configured:
        wanted_v2 = configured.strip() == "docker compose"
        works = v2_ok if wanted_v2 else v1_ok
        if works:
            return Check("compose", "Compose flavour", OK,
                         f"compose_command `{configured}` works (found: {have})")
        other = "docker-compose" if wanted_v2 else "docker compose"
        alt = (v1_ok if wanted_v2 else v2_ok)
        fix = f"set var compose_command: {other}" if alt else install
        return Check("compose", "Compose flavour", FAIL,
                     f"compose_command is `{configured}` but it does not work here "
                     f"(found: {have})", fix)
    if v2_ok:
        return Check("compose", "Compose flavour", OK, f"{have}; deployer uses `docker compose`")
    if v1_ok:
        return Check("compose", "Compose flavour", WARN,
                     f"only the standalone {have} (Compose v1, end of life); deployer uses it",
                     install)
    return Check("compose", "Compose flavour", FAIL,
                 "neither `docker compose` nor `docker-compose` works", install)


_DF_RE = re.compile(r"^(?P<fs>.*?)\s+(?P<total>\d+)\s+(?P<used>\d+)\s+(?P<avail>\d+)\s+"
                    r"(?P<pct>\d+|-)%?\s+(?P<mount>/.*)$")
_DFI_RE = re.compile(r"^(?P<fs>.*?)\s+(?P<total>\d+|-)\s+(?P<used>\d+|-)\s+(?P<avail>\d+|-)\s+"
                     r"(?P<pct>\d+|-)%?\s+(?P<mount>/.*)$")


def parse_disk(exit_code: int, output: str, variables: Mapping[str, Any] | None = None) -> Check:
    """Free space and inodes for each probed path; the worst verdict wins."""
    variables = variables or {}
    warn_mb = _threshold(variables, "doctor_disk_warn_mb")
    fail_mb = _threshold(variables, "doctor_disk_fail_mb")
    warn_pct = _threshold(variables, "doctor_disk_warn_pct")
    fail_pct = _threshold(variables, "doctor_disk_fail_pct")
    iwarn = _threshold(variables, "doctor_inodes_warn_pct")
    ifail = _threshold(variables, "doctor_inodes_fail_pct")
    rank = {OK: 0, WARN: 1, FAIL: 2}
    worst = OK
    details: list[str] = []
    seen_mounts: set[str] = set()
    current: tuple[str, str] | None = None
    parsed_any = False
    for line in output.splitlines():
        if line.startswith("@@path\t"):
            parts = line.split("\t")
            current = (parts[1], parts[2] if len(parts) > 2 else parts[1])
            continue
        if current is None:
            continue
        if line.startswith("DF "):
            m = _DF_RE.match(line[3:].strip())
            if not m:
                continue
            parsed_any = True
            mount = m.group("mount")
            fs_key = f"{m.group('fs')}:{m.group('total')}"  # bind mounts share a filesystem
            if fs_key in seen_mounts:
                details.append(f"{current[0]}: same filesystem as above")
                current = None
                continue
            seen_mounts.add(fs_key)
            total, avail = int(m.group("total")), int(m.group("avail"))
            free_pct = 100.0 * avail / total if total else 100.0
            status = OK
            if avail < fail_mb * 1024 or free_pct < fail_pct:
                status = FAIL
            elif avail < warn_mb * 1024 or free_pct < warn_pct:
                status = WARN
            worst = max(worst, status, key=rank.__getitem__)
            details.append(f"{current[0]}: {_fmt_mb(avail)} free of {_fmt_mb(total)} "
                           f"({free_pct:.0f} %) on {mount}" +
                           ("" if status == OK else f" [{status}]"))
        elif line.startswith("DFI ") and current is not None:
            m = _DFI_RE.match(line[4:].strip())
            if not m or m.group("total") in ("-", "0"):
                continue  # filesystems without inode limits (btrfs, some overlays)
            total = int(m.group("total"))
            ifree = int(m.group("avail")) if m.group("avail") != "-" else total
            ifree_pct = 100.0 * ifree / total
            status = FAIL if ifree_pct < ifail else WARN if ifree_pct < iwarn else OK
            worst = max(worst, status, key=rank.__getitem__)
            if status != OK:
                details.append(f"{current[0]}: only {ifree_pct:.1f} % inodes free [{status}]")
    if not parsed_any:
        return Check("disk", "Free disk", WARN,
                     f"could not read df output: {output.strip()[:200]}",
                     "check that df (coreutils) is installed on the host")
    fix = ""
    if worst != OK:
        fix = ("free space: docker image prune -a -f; docker builder prune -af; "
               "sudo journalctl --vacuum-size=200M; or grow the disk")
    return Check("disk", "Free disk", worst, "; ".join(details), fix)


def parse_clock(exit_code: int, output: str, local_before: float, local_after: float,
                variables: Mapping[str, Any] | None = None) -> Check:
    variables = variables or {}
    try:
        remote = float(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Check("clock", "Clock skew", WARN, f"could not read the remote clock: "
                     f"{output.strip()[:100]}", "check that `date` works on the host")
    local = (local_before + local_after) / 2
    uncertainty = (local_after - local_before) / 2
    skew = remote - local
    # Only the part of the skew the round trip cannot explain counts.
    effective = max(0.0, abs(skew) - uncertainty)
    warn_s = _threshold(variables, "doctor_clock_warn_s")
    fail_s = _threshold(variables, "doctor_clock_fail_s")
    direction = "ahead of" if skew > 0 else "behind"
    detail = f"host clock {abs(skew):.1f} s {direction} this machine (±{uncertainty:.2f} s)"
    fix = "enable time sync on the host: sudo timedatectl set-ntp true (and locally)"
    if effective > fail_s:
        return Check("clock", "Clock skew", FAIL, detail, fix)
    if effective > warn_s:
        return Check("clock", "Clock skew", WARN, detail, fix)
    return Check("clock", "Clock skew", OK, detail)


