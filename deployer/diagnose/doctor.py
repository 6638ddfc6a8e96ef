"""Host preflight checks for ``deployer doctor`` and the cheap subset ``deployer run``
performs before its first step. Returns data (``Check``); the CLI renders it.

Each remote check is a small probe script plus a pure parser of its output, so the
parsing is unit-tested from recorded output and the behaviour against a real sshd.
All probes travel in ONE remote command (sections delimited by a random marker, each
probe under ``timeout``), plus one tiny command for the clock, so a doctor run costs
two round trips. Local checks (secrets, DATABASE_URL) need no connection.

Statuses: ``ok``, ``warn``, ``fail``, ``skip`` (not applicable). ``deployer doctor``
exits 1 when any check failed.
"""

from __future__ import annotations

import os
import re
import secrets as _secrets
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.errors import DeployerError, TransportError

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)

DEFAULT_PLACEHOLDERS = (
    "changeme", "change-me", "change_me", "changeit", "secret", "password", "passw0rd",
    "example", "default", "admin", "test", "todo", "xxx", "replaceme", "replace-me",
    "your-secret-key", "secret-key", "supersecret", "12345678", "123456", "postgres",
)
_PLACEHOLDER_SHAPES = re.compile(
    r"^(?:<[^>]*>|\$\{[^}]*\}|\{\{[^}]*\}\}|(?:change|replace)[-_ ]?me\b.*|your[-_ ].*"
    r"|.*[-_]here|x{3,}|\*+|example[-_].*|.*[-_]example)$",
    re.IGNORECASE,
)
DEFAULT_APP_DIR = "/srv/app"
DEFAULT_DOCKER_ROOT = "/var/lib/docker"
MIN_DOCKER = (20, 10)
PROBE_TIMEOUT = 20

# Defaults of the thresholds; each can be overridden by the var of the same name.
THRESHOLDS: dict[str, float] = {
    "doctor_disk_warn_mb": 2048,
    "doctor_disk_fail_mb": 500,
    "doctor_disk_warn_pct": 10,
    "doctor_disk_fail_pct": 5,
    "doctor_inodes_warn_pct": 10,
    "doctor_inodes_fail_pct": 5,
    "doctor_clock_warn_s": 2,
    "doctor_clock_fail_s": 30,
}


@dataclass(frozen=True)
class Check:
    """One preflight finding: what was checked, the verdict, and the fix when not ok."""

    id: str
    title: str
    status: str
    detail: str
    fix: str = ""

    @property
    def severity(self) -> str:
        """Problem-style severity, so a list of checks can feed ``InputError``."""
        return {FAIL: "error", WARN: "warning"}.get(self.status, "info")

    @property
    def hint(self) -> str:
        return self.fix

    def __str__(self) -> str:
        text = f"{self.title}: {self.detail}"
        if self.fix and self.status in (WARN, FAIL):
            text += f" (fix: {self.fix})"
        return text

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "status": self.status,
                "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class CheckInfo:
    """Documentation of one check (rendered into docs/diagnosis.md)."""

    id: str
    title: str
    how: str
    verdicts: str
    cheap: bool = False
    preflight: str = ""  # when the run preflight makes it, if not always or never


CHECKS: tuple[CheckInfo, ...] = (
    CheckInfo("ssh", "SSH and host key", "connects with the inventory settings; unknown or "
              "changed host keys are refused", "fail when the connection or host key check "
              "fails (the fix comes from the failure catalogue)", cheap=True),
    CheckInfo("sudo", "sudo", "`sudo -n true` (skipped for root)",
              "warn when sudo needs a password and none is configured, or is missing"),
    CheckInfo("docker", "Docker engine", "`docker info --format ...` as the SSH user, and "
              "through sudo (the configured sudo password works) when the runbook's "
              "docker/compose steps use `sudo: true`",
              f"fail when docker is missing, stopped or not permitted the way the runbook "
              f"runs it (a user outside the docker group whose steps run without sudo "
              f"is told whether sudo would work); warn below "
              f"{MIN_DOCKER[0]}.{MIN_DOCKER[1]}", cheap=True),
    CheckInfo("compose", "Compose flavour", "`docker compose version`, `docker-compose "
              "version`; honours var `compose_command`", "fail when neither works (or the "
              "configured one is missing); warn when only v1 is available", cheap=True),
    CheckInfo("disk", "Free disk and inodes", "`df -Pk`, `df -Pi` for `app_dir` and the "
              "Docker root dir (nearest existing parent)", "warn below 2048 MB or 10 % "
              "free, fail below 500 MB or 5 % (vars `doctor_disk_*`, `doctor_inodes_*`)",
              cheap=True),
    CheckInfo("secrets", "Secrets", "names the runbook requires, values from the usual "
              "sources", "fail when missing, a placeholder (changeme, secret, password, "
              "example, ...) or equal to a value in the example env file; warn when short"),
    CheckInfo("database_url", "DATABASE_URL driver", "scheme of `DATABASE_URL`: var or "
              "secret `database_url`, else every `DATABASE_URL=` line the runbooks' "
              "`upload` and `run` steps render for the host (the shipped runbooks: "
              "templates/env.j2 with var `db_driver`), against the app: var `app_async`, or "
              "`create_async_engine` in the local source (`app_source_dir`, else "
              "`app_source`)", "fail on an async app with a sync driver and the reverse, or "
              "the `postgres://` scheme"),
    CheckInfo("ports", "Ports free", "var `required_ports` (e.g. `[\"{{ api_port }}\", "
              "\"{{ pg_port }}\"]`), else the values of the `*_port` vars; `ss -ltnpH` "
              "(through `sudo -n` when allowed), each holder's container from its cgroup, "
              "`docker ps` with the compose labels",
              "ok when free or held by the stack's own containers (compose project "
              "`compose_project_name` / `compose_project`: a redeploy replaces them); fail "
              "when another process or container holds one (warn for ports derived from "
              "`*_port` vars); warn when the holder cannot be identified while the stack "
              "runs", preflight="when `required_ports` is set"),
    CheckInfo("images", "Image names", "`compose config` in the app directory on the host "
              "(var `compose_cli`, as the runbooks run it, so `${VAR}` references see the "
              "deployed .env) and `docker images`",
              "warn when var `api_image` disagrees with the image compose gives "
              "`api_service` (the runs use compose's); fail when `compose config` fails or "
              "has no `api_service`; names the images not on the host yet; skip before "
              "the first deploy"),
    CheckInfo("clock", "Clock skew", "remote `date +%s.%N` against the local clock",
              "warn above 2 s, fail above 30 s (vars `doctor_clock_warn_s`, "
              "`doctor_clock_fail_s`)"),
)
CHEAP_CHECKS = tuple(c.id for c in CHECKS if c.cheap)


# ------------------------------------------------------------------------ helpers


def _threshold(variables: Mapping[str, Any], name: str) -> float:
    value = variables.get(name, THRESHOLDS[name])
    try:
        return float(value)
    except (TypeError, ValueError):
        return THRESHOLDS[name]


def _truthy(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _catalogue_fix(text: str, default: str) -> tuple[str, str]:
    """(title, fix) of the best catalogue diagnosis of ``text``, for failures we can name."""
    from deployer.diagnose.matcher import diagnose

    found = diagnose(text)
    if found:
        return found[0].title, " ".join(found[0].fix.split())
    return "", default


def _fmt_mb(kb: int) -> str:
    mb = kb / 1024
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


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
    each section framed by ``token`` lines carrying the probe id and its exit code."""
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
    for probe_id, code in probes.items():
        out.append(f"__probe {shlex.quote(probe_id)} {shlex.quote(code)}")
    out.append("exit 0")
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


def _listen_port(addr: str) -> int | None:
    m = re.search(r":(\d+)$", addr)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class _Container:
    id: str
    name: str
    project: str
    workdir: str


def port_numbers(items: Iterable[Any]) -> list[int]:
    """Port numbers of ``required_ports`` items (``8000``, ``"443/tcp"``, ``"5432"``)."""
    found: list[int] = []
    for item in items:
        m = re.match(r"^\s*(\d+)", str(item))
        if m and 0 < int(m.group(1)) < 65536 and int(m.group(1)) not in found:
            found.append(int(m.group(1)))
    return found


def parse_ports(exit_code: int, output: str, required: Iterable[Any],
                project: str | None = None, project_dir: str | None = None,
                source: str = "required_ports", explicit: bool = True) -> Check:
    """Who listens on each port the stack needs: nobody, the stack's own containers
    (a redeploy replaces them: fine), or something else (the stack cannot bind).

    ``project``/``project_dir`` name the stack's compose project (its containers carry
    them as labels). A holder that cannot be identified is a conflict when the stack
    has no running container (so it is not the stack), a warning otherwise. ``explicit``
    is False for ports derived from ``*_port`` vars: a conflict is then a warning."""
    wanted = port_numbers(required)
    if not wanted:
        return Check("ports", "Ports free", SKIP, "no required_ports set for this host "
                     "(and no *_port vars)")
    ss_part, _, docker_part = output.partition("@@docker")
    if "ss: command not found" in ss_part:
        return Check("ports", "Ports free", WARN, "cannot check: `ss` is not installed",
                     "sudo apt-get install iproute2")
    cgroups: dict[str, str] = {}
    for line in ss_part.splitlines():
        if line.startswith("@@pid "):
            parts = line.split()
            if len(parts) >= 3:
                cgroups[parts[1]] = parts[2]
    listeners: dict[int, list[tuple[str, str]]] = {}  # port -> [(process, pid)]
    for line in ss_part.splitlines():
        cols = line.split()
        if len(cols) < 4 or not cols[0].startswith("LISTEN"):
            continue
        port = _listen_port(cols[3])
        if port is None:
            continue
        procs = re.findall(r'\("([^"]+)",pid=(\d+)', line)
        listeners.setdefault(port, []).extend(procs or [("", "")])
    docker_known = "@@docker-failed" not in docker_part
    containers: dict[str, _Container] = {}
    published: dict[int, list[_Container]] = {}
    for line in docker_part.splitlines():
        fields = line.split("\t")
        if len(fields) >= 5:
            c = _Container(fields[0].strip(), fields[1].strip(), fields[2].strip(),
                           fields[3].strip().rstrip("/"))
            ports = fields[4]
        elif len(fields) == 2:  # `{{.Names}}\t{{.Ports}}` (no labels known)
            c = _Container("", fields[0].strip(), "", "")
            ports = fields[1]
        else:
            continue
        if c.id:
            containers[c.id] = c
        for m in re.finditer(r":(\d+)->", ports):
            published.setdefault(int(m.group(1)), []).append(c)
    wanted_dir = (project_dir or "").rstrip("/")

    def ours(c: _Container) -> bool | None:
        if project and c.project:
            return c.project == project or bool(wanted_dir and c.workdir == wanted_dir)
        if wanted_dir and c.workdir:
            return c.workdir == wanted_dir
        return None  # no compose labels, or no project name to compare with

    stack_running = docker_known and any(ours(c) for c in containers.values())
    free: list[str] = []
    mine: list[str] = []
    busy: list[str] = []
    unclear: list[str] = []
    for port in wanted:
        holders: list[tuple[str, bool | None]] = []
        for c in published.get(port, []):
            holders.append((f"container {c.name}", ours(c)))
        for proc, pid in listeners.get(port, []):
            cid = cgroups.get(pid, "")
            if cid:
                held_by = containers.get(cid)
                if held_by is not None:
                    holders.append((f"container {held_by.name}", ours(held_by)))
                else:
                    holders.append((f"container {cid[:12]}", None))
            elif proc in ("docker-proxy", "dockerd"):
                if not published.get(port):
                    holders.append(("a published container port (docker-proxy)", None))
            elif proc:
                holders.append((proc, False))
            else:
                holders.append(("a process the SSH user cannot see", None))
        if not holders and port not in listeners:
            free.append(str(port))
            continue
        names = ", ".join(dict.fromkeys(h for h, _ in holders)) or "docker-proxy"
        verdicts = [v for _, v in holders]
        if verdicts and all(v is True for v in verdicts):
            mine.append(f"{port} ({names})")
        elif any(v is False for v in verdicts) or (docker_known and not stack_running
                                                    and project):
            busy.append(f"{port} ({names})")
        else:
            unclear.append(f"{port} ({names})")
    parts = []
    if busy:
        parts.append(f"in use: {', '.join(busy)}")
    if unclear:
        parts.append(f"in use, holder unknown: {', '.join(unclear)}")
    if mine:
        parts.append(f"held by this stack's own containers, replaced by the deploy: "
                     f"{', '.join(mine)}")
    if free:
        parts.append(f"free: {', '.join(free)}")
    where = f" [ports from {source}]" if source else ""
    detail = "; ".join(parts) + where
    if busy:
        stack = f"compose project {project}" if project else "this stack"
        fix = ("find the holder: sudo ss -ltnp 'sport = :PORT'; docker ps --filter "
               "publish=PORT; stop it (docker compose -p OTHER down, systemctl stop "
               f"SERVICE) or give {stack} other ports")
        if not explicit:
            fix += "; set var required_ports to the ports the stack really needs"
        return Check("ports", "Ports free", FAIL if explicit else WARN, detail, fix)
    if unclear:
        return Check("ports", "Ports free", WARN, detail + " (fine if it is this stack "
                     "being redeployed)", "check with sudo ss -ltnp 'sport = :PORT'; set var "
                     "compose_project_name so the stack's containers are recognised")
    return Check("ports", "Ports free", OK, detail)


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


# ------------------------------------------------------------------ local checks


def parse_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """NAME=value pairs of an example env file (quotes and `export` allowed)."""
    from deployer.secrets import parse_dotenv

    return parse_dotenv(Path(path).read_text(encoding="utf-8-sig", errors="replace"), str(path),
                        bare_names=True)


def is_placeholder(value: str, placeholders: Iterable[str] = DEFAULT_PLACEHOLDERS) -> bool:
    """True for values that are obviously not real secrets."""
    low = value.strip().lower()
    if not low:
        return True
    if low in {p.lower() for p in placeholders}:
        return True
    return bool(_PLACEHOLDER_SHAPES.match(low))


def check_secrets(secret_names: Sequence[str], secrets: Mapping[str, str],
                  placeholders: Iterable[str] = DEFAULT_PLACEHOLDERS,
                  example_env: Mapping[str, str] | None = None,
                  min_length: int = 8) -> Check:
    """Required secrets present, not placeholders, not the example file's defaults.
    Values never appear in the result, only names."""
    names = list(dict.fromkeys(secret_names))
    if not names:
        return Check("secrets", "Secrets", SKIP, "the runbook requires no secrets")
    examples = {v.strip(): k for k, v in (example_env or {}).items() if v and v.strip()}
    missing, fake, defaults, short = [], [], [], []
    for name in names:
        value = secrets.get(name)
        if value is None:
            missing.append(name)
        elif value.strip() in examples:
            defaults.append(f"{name} (= {examples[value.strip()]} in the example env)")
        elif is_placeholder(value, placeholders):
            fake.append(name)
        elif len(value) < min_length and re.search(r"pass|secret|key|token", name, re.I):
            short.append(name)
    problems = []
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    if fake:
        problems.append(f"placeholder values: {', '.join(fake)}")
    if defaults:
        problems.append(f"example defaults: {', '.join(defaults)}")
    if problems:
        from deployer.secrets import env_name

        first = (missing + fake + [d.split(" ")[0] for d in defaults])[0]
        return Check("secrets", "Secrets", FAIL, "; ".join(problems),
                     f"set real values, e.g. {env_name(first)}=... in the environment, a "
                     f"--secrets-file, or a secrets: command in the inventory; generate one "
                     f"with: openssl rand -base64 32")
    if short:
        return Check("secrets", "Secrets", WARN, f"short values (< {min_length} characters): "
                     f"{', '.join(short)}", "use longer random values: openssl rand -base64 32")
    return Check("secrets", "Secrets", OK, f"{len(names)} present, none a placeholder")


ASYNC_DRIVERS = {"asyncpg", "aiosqlite", "aiomysql", "asyncmy", "psycopg_async"}
SYNC_DRIVERS = {"psycopg2", "pg8000", "pymysql", "mysqldb", "mysqlconnector", "pysqlite", ""}
_ASYNC_SOURCE_RE = re.compile(r"\b(?:create_async_engine|async_sessionmaker|AsyncSession)\b")
_SKIP_SOURCE_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".deployer",
                     "site-packages", "dist", "build"}


def detect_async_app(source_dir: str | os.PathLike[str], max_files: int = 5000) -> bool | None:
    """True when the project source uses SQLAlchemy's asyncio API, False when it uses a
    sync engine only, None when there is no SQLAlchemy engine in sight."""
    found_sync = False
    count = 0
    for root, dirs, files in os.walk(source_dir):
        dirs[:] = [d for d in dirs if d not in _SKIP_SOURCE_DIRS and not d.startswith(".")]
        for name in files:
            if not name.endswith(".py"):
                continue
            count += 1
            if count > max_files:  # bounded: a huge tree gets a verdict from what was read
                return False if found_sync else None
            try:
                text = Path(root, name).read_text(encoding="utf-8", errors="replace")[:500_000]
            except OSError:
                continue
            if _ASYNC_SOURCE_RE.search(text):
                return True
            if re.search(r"\bcreate_engine\s*\(", text):
                found_sync = True
    return False if found_sync else None


def url_driver(url: str) -> tuple[str, str]:
    """(dialect, driver) of a SQLAlchemy URL: postgresql+asyncpg://... -> (postgresql, asyncpg)."""
    scheme = url.strip().split("://", 1)[0].lower() if "://" in url else ""
    dialect, _, driver = scheme.partition("+")
    return dialect, driver


def check_database_url(url: str | None, app_async: bool | None, source: str = "") -> Check:
    """The driver in ``url`` against the app's engine style. Only the scheme is shown
    (the URL holds a password); ``source`` says where the URL was found."""
    title = "DATABASE_URL driver"
    if not url:
        return Check("database_url", title, SKIP, "no DATABASE_URL in vars, secrets or the "
                     "runbooks' rendered uploads")
    check = _check_database_url(url, app_async)
    if source:
        check = Check(check.id, check.title, check.status, f"{check.detail} [{source}]",
                      check.fix)
    return check


def _check_database_url(url: str, app_async: bool | None) -> Check:
    title = "DATABASE_URL driver"
    dialect, driver = url_driver(url)
    if not dialect:
        return Check("database_url", title, WARN, "DATABASE_URL has no scheme://",
                     "use postgresql+asyncpg://USER:PASSWORD@db:5432/DB (async app) or "
                     "postgresql+psycopg://... (sync app)")
    shown = f"{dialect}{'+' + driver if driver else ''}://"
    if dialect == "postgres":
        return Check("database_url", title, FAIL, f"scheme {shown} is rejected by SQLAlchemy "
                     "1.4+", "write postgresql+asyncpg:// (async app) or postgresql+psycopg:// "
                     "(sync app)")
    if app_async is None:
        return Check("database_url", title, OK, f"{shown} (app style unknown: set var "
                     "app_async to check the driver)")
    is_async_driver = driver in ASYNC_DRIVERS
    is_sync_driver = driver in SYNC_DRIVERS
    if driver == "psycopg":  # psycopg 3 serves both engines
        return Check("database_url", title, OK, f"{shown} works with sync and async engines")
    if app_async and is_sync_driver:
        return Check("database_url", title, FAIL,
                     f"the app uses an async engine but DATABASE_URL uses {shown} "
                     f"(sync driver {driver or 'default psycopg2'})",
                     f"use {dialect}+asyncpg:// (and install asyncpg)")
    if app_async is False and is_async_driver:
        return Check("database_url", title, FAIL,
                     f"the app uses a sync engine but DATABASE_URL uses {shown} (async driver)",
                     f"use {dialect}+psycopg:// or {dialect}+psycopg2://")
    style = "async" if app_async else "sync"
    return Check("database_url", title, OK, f"{shown} matches the {style} app")


def _find_database_url(variables: Mapping[str, Any],
                       secrets: Mapping[str, str]) -> tuple[str, str] | None:
    for label, source in (("secret", secrets), ("var", variables)):
        for key in ("database_url", "DATABASE_URL"):
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value, f"{label} {key}"
    return None


_ENV_URL_RE = re.compile(r"""^[ \t]*(?:export[ \t]+)?DATABASE_URL[ \t]*=[ \t]*["']?([^"'\s]+)""",
                         re.MULTILINE)


def rendered_database_urls(runbook: Any, host: Any, variables: Mapping[str, Any],
                           secrets: Mapping[str, str],
                           project_dir: str | os.PathLike[str] = ".") -> list[tuple[str, str]]:
    """(url, where) for every ``DATABASE_URL=`` the runbook's ``upload`` and ``run``
    steps would write, rendered for ``host`` the way the planner renders them (stand-ins
    for secrets that are not available). The shipped runbooks build it in
    templates/env.j2 from var ``db_driver``. A step that cannot be rendered is skipped:
    ``deployer plan`` is the place that reports it. The URLs hold secrets: callers show
    only their scheme."""
    from deployer.appsecrets import with_app_secrets
    from deployer.commands import RemoteCommand, Upload
    from deployer.errors import DeployerError
    from deployer.planner import render_step
    from deployer.secrets import placeholder_secrets
    from deployer.templating import make_context

    # the runbook's own names plus the var app_secrets (what a run would fetch)
    values = placeholder_secrets(with_app_secrets(getattr(runbook, "secrets", ()),
                                                  [dict(variables)]))
    values.update({k: v for k, v in secrets.items() if k in values})
    found: list[tuple[str, str]] = []
    for index, step in enumerate(getattr(runbook, "steps", ()), start=1):
        if step.kind not in ("upload", "run") and "DATABASE_URL" not in step.body.env:
            continue
        try:
            ctx = make_context(runbook, host, dict(variables), values, {}, step,
                               planning=True, project_dir=str(project_dir))
            planned = render_step(step, index, ctx)
        except (DeployerError, OSError):
            continue
        for command in planned.commands:
            texts: list[tuple[str, str]] = []
            if isinstance(command, Upload):
                texts.append((command.content.decode("utf-8", "replace"),
                              f"{command.source} -> {command.dest}"))
            elif isinstance(command, RemoteCommand):
                texts.append((command.script, "script"))
                if "DATABASE_URL" in command.env:
                    texts.append((f"DATABASE_URL={command.env['DATABASE_URL']}", "env"))
            for text, what in texts:
                for m in _ENV_URL_RE.finditer(text):
                    found.append((m.group(1), f"{runbook.name} step {step.id}: {what}"))
    return found


def check_database_urls(found: Sequence[tuple[str, str]], app_async: bool | None) -> Check:
    """``check_database_url`` for every distinct scheme found; the worst verdict wins."""
    if not found:
        return check_database_url(None, app_async)
    by_scheme: dict[str, tuple[str, list[str]]] = {}
    for url, where in found:
        scheme = url.split("://", 1)[0].lower() if "://" in url else url[:0]
        by_scheme.setdefault(scheme, (url, []))[1].append(where)
    checks = [check_database_url(url, app_async, ", ".join(dict.fromkeys(wheres)))
              for url, wheres in by_scheme.values()]
    rank = {OK: 0, SKIP: 0, WARN: 1, FAIL: 2}
    worst = max(checks, key=lambda c: rank[c.status])
    if len(checks) == 1:
        return worst
    return Check("database_url", worst.title, worst.status,
                 "; ".join(c.detail for c in checks), worst.fix)


def docker_use(runbooks: Iterable[Any]) -> tuple[bool, bool]:
    """(plain, sudo): whether the runbooks run docker without sudo, and with sudo:
    compose steps, psql through ``compose exec``, and run steps or rollbacks naming
    docker."""
    from deployer.facts import body_needs, step_bodies
    from deployer.templating import strings_in

    plain = sudo = False
    for runbook in runbooks:
        for step in getattr(runbook, "steps", ()):
            for body in step_bodies(step):
                if body.kind == "local":
                    continue
                # the compose fact (compose steps, psql's `compose exec`, templates
                # naming compose_command), or a command naming docker itself
                uses = ("compose_command" in body_needs(body)
                        or any(re.search(r"\bdocker\b", text)
                               for text in strings_in(body.options)))
                if uses:
                    if body.sudo:
                        sudo = True
                    else:
                        plain = True
    return plain, sudo


def _compose_name(text: str) -> str:
    # Compose's own normalisation of a project name taken from a directory
    return re.sub(r"[^a-z0-9_-]", "", text.lower())


def stack_project(variables: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(compose project name, project dir) of the stack, from the vars the compose
    kind reads (``compose_project_name``, else the directory's name) and the shipped
    runbooks' ``compose_project``."""
    project_dir = variables.get("compose_project_dir") or variables.get("app_dir")
    project_dir = str(project_dir).rstrip("/") if project_dir else None
    for key in ("compose_project_name", "compose_project"):
        value = variables.get(key)
        if isinstance(value, str) and value.strip() and "{" not in value:
            return value.strip(), project_dir
    if project_dir and "{" not in project_dir:
        return _compose_name(os.path.basename(project_dir)) or None, project_dir
    return None, project_dir


def stack_ports(variables: Mapping[str, Any]) -> tuple[list[int], str, bool]:
    """(ports, where they come from, explicit): var ``required_ports`` when set, else
    the values of the ``*_port`` vars (the shipped runbooks' ``api_port`` and
    ``pg_port``)."""
    required = variables.get("required_ports")
    if required not in (None, "", []):
        if isinstance(required, (str, int)):
            # "8000, 5432", or a list that arrived as text (`--var 'required_ports=[...]'`)
            required = re.findall(r"(?<![\w/])\d{1,5}(?![\w.])", str(required))
        return port_numbers(required if isinstance(required, (list, tuple)) else []), \
            "required_ports", True
    names = sorted(k for k, v in variables.items()
                   if k.endswith("_port") and k != "ssh_port" and not k.startswith("doctor_")
                   and re.fullmatch(r"\s*\d{1,5}\s*", str(v)))
    ports = port_numbers(variables[k] for k in names)
    return ports, ("vars " + ", ".join(names)) if names else "", False


def render_vars(variables: Mapping[str, Any], host: Any,
                project_dir: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """The vars with their Jinja rendered for ``host`` (``required_ports: ["{{ api_port
    }}"]`` works); a var that cannot be rendered without secrets or run-time captures
    keeps its raw value."""
    from deployer.errors import DeployerError
    from deployer.models import Runbook
    from deployer.templating import make_context

    if host is None or not hasattr(host, "address"):
        return dict(variables)
    try:
        ctx = make_context(Runbook(name="doctor", path=""), host, variables, {}, {}, None,
                           planning=True, project_dir=str(project_dir))
    except DeployerError:
        return dict(variables)
    rendered: dict[str, Any] = {}
    for key, value in variables.items():
        try:
            rendered[key] = ctx.vars[key]
        except Exception:  # noqa: BLE001 - any render failure: keep what the user wrote
            rendered[key] = value
    return rendered


# --------------------------------------------------------------------- runners


def _connect(transport: Any) -> Check:
    """Connect (if needed) and turn connection failures into a failing check."""
    label = getattr(transport, "label", "") or ""
    try:
        transport.connect()
    except DeployerError as exc:
        message = str(exc)
        # the transport's own hint names exact commands; the catalogue covers the rest
        title, fix = _catalogue_fix(message, "check address, port, user and identity_file "
                                    "in the inventory")
        fix = exc.hint or fix
        where = f"cannot connect to {label}: " if label and label not in message else ""
        known = f" ({title})" if title else ""
        return Check("ssh", "SSH", FAIL, f"{where}{message}{known}", fix)
    return Check("ssh", "SSH", OK, f"connected to {label}" if label else "connected")


def _run_remote(transport: Any, probes: dict[str, str], env: Mapping[str, str] | None,
                sudo: bool = False) -> dict[str, tuple[int, str]] | str:
    token = "@@doctor-" + _secrets.token_hex(6)
    script = combine_probes(probes, token)
    try:
        result = transport.run(script, env=dict(env) if env else None, check=False, sudo=sudo,
                               timeout=PROBE_TIMEOUT * (len(probes) + 1),
                               what="the doctor probes")
    except TransportError as exc:
        return str(exc)
    output = result.stdout or "\n".join(result.tail)
    sections = split_probes(output, token)
    if not sections:
        return f"the probe script failed (exit {result.exit_code}): " + \
            " | ".join(result.tail[-3:])
    return sections


def run_checks(transport: Any, host: Any = None, variables: Mapping[str, Any] | None = None,
               secrets: Mapping[str, str] | None = None, secret_names: Sequence[str] = (),
               placeholders: Iterable[str] = DEFAULT_PLACEHOLDERS,
               example_env: Mapping[str, str] | None = None,
               project_dir: str | os.PathLike[str] | None = None,
               only: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
               clock: Callable[[], float] = time.time, has_sudo_password: bool = False,
               database_urls: Sequence[tuple[str, str]] = (),
               docker: tuple[bool, bool] = (True, False), derive_ports: bool = True,
               ) -> list[Check]:
    """Every preflight check for one host, in ``CHECKS`` order.

    ``transport`` is an ``SSHTransport`` (connected or not; a failed connection becomes
    a failing ``ssh`` check and the remote checks are skipped). ``variables`` are the
    host's merged vars (app_dir, required_ports, compose_command, app_async,
    compose_project_name, thresholds), rendered here; ``secrets`` the resolved values
    of ``secret_names``; ``example_env`` the parsed example env file whose values count
    as placeholders; ``project_dir`` the local source scanned for
    ``create_async_engine`` when var ``app_async`` is unset; ``only`` restricts to some
    check ids; ``env`` is exported for the remote probes. ``database_urls`` are the
    (url, where) pairs the runbooks render (``rendered_database_urls``); ``docker`` is
    ``docker_use`` of the runbooks: (runs docker without sudo, runs it with sudo).
    ``derive_ports``: without ``required_ports``, check the ``*_port`` vars' values.
    """
    if variables is None:
        variables = dict(getattr(host, "vars", None) or {})
    variables = render_vars(variables, host, project_dir or ".")
    secrets = dict(secrets or {})
    wanted = [c.id for c in CHECKS if only is None or c.id in only]
    results: dict[str, Check] = {}

    if "secrets" in wanted:
        results["secrets"] = check_secrets(secret_names, secrets, placeholders, example_env)
    if "database_url" in wanted:
        app_async = _truthy(variables.get("app_async"))
        if app_async is None and project_dir is not None:
            # the shipped runbooks name the local code `app_source`
            source = Path(project_dir) / str(variables.get("app_source_dir")
                                             or variables.get("app_source") or ".")
            app_async = detect_async_app(source) if source.is_dir() else None
        given = _find_database_url(variables, secrets)
        found = [given] if given else list(database_urls)
        results["database_url"] = check_database_urls(found, app_async)

    remote_ids = [i for i in wanted if i not in ("secrets", "database_url")]
    if remote_ids:
        ssh = _connect(transport)
        if ssh.status == FAIL:
            results["ssh"] = ssh
            for check_id in remote_ids:
                if check_id != "ssh":
                    info = next(c for c in CHECKS if c.id == check_id)
                    results[check_id] = Check(check_id, info.title, SKIP, "no SSH connection")
        else:
            results.update(_remote_checks(transport, remote_ids, variables, env, clock,
                                          has_sudo_password or bool(
                                              getattr(transport, "sudo_password", None)),
                                          docker, derive_ports))
    return [results[i] for i in wanted if i in results]


def _remote_checks(transport: Any, ids: list[str], variables: Mapping[str, Any],
                   env: Mapping[str, str] | None, clock: Callable[[], float],
                   has_sudo_password: bool, docker: tuple[bool, bool] = (True, False),
                   derive_ports: bool = True) -> dict[str, Check]:
    results: dict[str, Check] = {}
    plain_docker, sudo_docker = docker
    probes: dict[str, str] = {i: PROBES[i] for i in ("ssh", "sudo", "docker", "compose", "ports")
                              if i in ids}
    if not plain_docker and sudo_docker:
        probes.pop("docker", None)
    if "disk" in ids:
        app_dir = str(variables.get("app_dir") or DEFAULT_APP_DIR)
        probes["disk"] = disk_probe([app_dir], str(variables.get("docker_root")
                                                   or DEFAULT_DOCKER_ROOT))
    if "images" in ids:
        from deployer.diagnose import images
        probes["images"] = images.probe(variables)
    sections = _run_remote(transport, probes, env) if probes else {}
    if isinstance(sections, str):
        for check_id in ids:
            info = next(c for c in CHECKS if c.id == check_id)
            results[check_id] = Check(check_id, info.title, FAIL, sections,
                                      "rerun; if it persists check the host's load and sshd")
        return results
    # docker through the transport's sudo, as the runbook's sudo: true steps run it
    sudo_sections: dict[str, tuple[int, str]] = {}
    if sudo_docker and ("docker" in ids or "ports" in ids):
        got = _run_remote(transport, SUDO_PROBES, env, sudo=True)
        sudo_sections = got if isinstance(got, dict) else {"docker": (1, got)}
    missing = Check("probe", "probe", FAIL, "no output")
    for check_id in ids:
        if check_id == "ssh":
            code, out = sections.get("ssh", (1, ""))
            results["ssh"] = parse_ssh(code, out, getattr(transport, "label", ""),
                                       getattr(transport, "host_key_fingerprint", None))
        elif check_id == "sudo":
            code, out = sections.get("sudo", (1, ""))
            results["sudo"] = parse_sudo(code, out, has_sudo_password)
        elif check_id == "docker":
            plain = sections.get("docker", (1, "")) if plain_docker or not sudo_docker \
                else None
            via_sudo = sudo_sections.get("docker", (1, "")) if sudo_docker else None
            user = getattr(getattr(transport, "host", None), "user", "") or ""
            results["docker"] = docker_check(plain, via_sudo, user)
        elif check_id == "compose":
            code, out = sections.get("compose", (1, ""))
            configured = variables.get("compose_command")
            results["compose"] = parse_compose(code, out, str(configured) if configured
                                               else None)
        elif check_id == "disk":
            code, out = sections.get("disk", (1, ""))
            results["disk"] = parse_disk(code, out, variables)
        elif check_id == "ports":
            code, out = sections.get("ports", (1, ""))
            ports, source, explicit = stack_ports(variables)
            if not explicit and not derive_ports:
                ports = []
            if sudo_sections.get("containers"):
                # the containers as the sudo: true steps see them
                out = out.partition("@@docker")[0] + "@@docker\n" + \
                    sudo_sections["containers"][1]
            project, project_dir = stack_project(variables)
            results["ports"] = parse_ports(code, out, ports, project, project_dir, source,
                                           explicit)
        elif check_id == "images":
            from deployer.diagnose import images
            code, out = sections.get("images", (1, ""))
            results["images"] = images.parse(code, out, variables)
        elif check_id == "clock":
            before = clock()
            try:
                res = transport.run("date +%s.%N", env=dict(env) if env else None,
                                    check=False, timeout=PROBE_TIMEOUT, what="date")
            except TransportError as exc:
                results["clock"] = Check("clock", "Clock skew", FAIL, str(exc))
                continue
            after = clock()
            results["clock"] = parse_clock(res.exit_code, res.stdout, before, after, variables)
        elif check_id not in results:
            results[check_id] = missing
    return results


def _runbook_uses_docker(runbook: Any) -> bool:
    if getattr(runbook, "steps", None) is None:
        return True
    return any(docker_use([runbook]))


def cheap_preflight(runbook: Any, host: Any, transport: Any,
                    variables: Mapping[str, Any] | None = None,
                    include_ok: bool = False, env: Mapping[str, str] | None = None,
                    ) -> list[Check]:
    """The fast checks ``deployer run`` performs before its first step: SSH, Docker
    engine (through sudo when the runbook's docker steps use sudo: true) and Compose
    flavour (only when the runbook uses Docker), free disk, and the ports in var
    ``required_ports`` when it is set (the stack's own containers may hold them).

    Returns the checks that are not ok (``include_ok`` for all). A ``Check`` has
    ``severity`` ("error" for fail) and ``str()``, so failures can feed ``InputError``.
    """
    only = ["ssh", "disk"]
    docker = docker_use([runbook]) if getattr(runbook, "steps", None) is not None \
        else (True, False)
    if any(docker):
        only += ["docker", "compose"]
    merged = variables if variables is not None else dict(getattr(host, "vars", None) or {})
    if merged.get("required_ports") not in (None, "", []):
        only.append("ports")
    checks = run_checks(transport, host, variables, only=only, env=env, docker=docker,
                        derive_ports=False)
    return [c for c in checks if include_ok or c.status in (WARN, FAIL)]


def summary_exit_code(checks: Iterable[Check]) -> int:
    """0 when nothing failed, 1 when any check failed."""
    return 1 if any(c.status == FAIL for c in checks) else 0
