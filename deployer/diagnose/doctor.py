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


CHECKS: tuple[CheckInfo, ...] = (
    CheckInfo("ssh", "SSH and host key", "connects with the inventory settings; unknown or "
              "changed host keys are refused", "fail when the connection or host key check "
              "fails (the fix comes from the failure catalogue)", cheap=True),
    CheckInfo("sudo", "sudo", "`sudo -n true` (skipped for root)",
              "warn when sudo needs a password and none is configured, or is missing"),
    CheckInfo("docker", "Docker engine", "`docker info --format ...`",
              f"fail when docker is missing, stopped or not permitted; warn below "
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
    CheckInfo("database_url", "DATABASE_URL driver", "scheme of `DATABASE_URL` (var or "
              "secret) against the app: var `app_async`, or `create_async_engine` in the "
              "project source", "fail on an async app with a sync driver and the reverse, "
              "or the `postgres://` scheme"),
    CheckInfo("ports", "Ports free", "var `required_ports`; `ss -ltnpH` and `docker ps` on "
              "the host", "fail when another process listens; warn when a container "
              "publishes it (fine for a redeploy of the same stack)"),
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

PROBES: dict[str, str] = {
    "ssh": 'printf "%s\\n%s\\n%s\\n" "$(id -un)" "$(id -u)" "$(uname -srm)"',
    "sudo": (
        'if [ "$(id -u)" = 0 ]; then echo "root"; exit 0; fi\n'
        'command -v sudo >/dev/null 2>&1 || { echo "sudo: command not found"; exit 127; }\n'
        "sudo -n true 2>&1"
    ),
    "docker": (
        'command -v docker >/dev/null 2>&1 || { echo "docker: command not found"; exit 127; }\n'
        "docker info --format '{{.ServerVersion}}|{{.OperatingSystem}}|{{.DockerRootDir}}' 2>&1"
    ),
    "compose": (
        "v2=$(docker compose version --short 2>&1); rc2=$?\n"
        "v1=$(docker-compose version --short 2>&1); rc1=$?\n"
        'printf "v2 %s %s\\nv1 %s %s\\n" "$rc2" "$(printf %s "$v2" | head -n 1)" '
        '"$rc1" "$(printf %s "$v1" | tail -n 1)"'
    ),
    "ports": (
        "if command -v ss >/dev/null 2>&1; then ss -ltnpH 2>&1 || ss -ltnH 2>&1;"
        " else echo 'ss: command not found'; fi\n"
        "echo '@@docker'\n"
        "docker ps --format '{{.Names}}\t{{.Ports}}' 2>/dev/null || true"
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
    elif "permission denied" in text.lower():
        what = "the SSH user may not use the Docker socket"
    elif exit_code == 124:
        what = f"`docker info` did not answer within {PROBE_TIMEOUT} s (engine hung?)"
    else:
        what = f"`docker info` failed (exit {exit_code})"
    _, fix = _catalogue_fix(text, "sudo systemctl status docker; sudo journalctl -u docker -n 50")
    return Check("docker", "Docker engine", FAIL, f"{what}: {text[:300]}" if text else what, fix)


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


def parse_ports(exit_code: int, output: str, required: Iterable[Any]) -> Check:
    """Who listens on each required port: free, a container, or another process."""
    wanted: list[int] = []
    for item in required:
        m = re.match(r"^\s*(\d+)", str(item))
        if m:
            wanted.append(int(m.group(1)))
    if not wanted:
        return Check("ports", "Ports free", SKIP, "no required_ports set for this host")
    ss_part, _, docker_part = output.partition("@@docker")
    if "ss: command not found" in ss_part:
        return Check("ports", "Ports free", WARN, "cannot check: `ss` is not installed",
                     "sudo apt-get install iproute2")
    listeners: dict[int, list[str]] = {}
    for line in ss_part.splitlines():
        cols = line.split()
        if len(cols) < 4 or not cols[0].startswith("LISTEN"):
            continue
        port = _listen_port(cols[3])
        if port is None:
            continue
        proc = re.search(r'users:\(\("([^"]+)"', line)
        listeners.setdefault(port, []).append(proc.group(1) if proc else "")
    published: dict[int, list[str]] = {}
    for line in docker_part.splitlines():
        name, _, ports = line.partition("\t")
        for m in re.finditer(r":(\d+)->", ports):
            published.setdefault(int(m.group(1)), []).append(name.strip())
    busy, by_docker, free = [], [], []
    for port in wanted:
        procs = [p for p in listeners.get(port, []) if p]
        containers = published.get(port, [])
        if port not in listeners and not containers:
            free.append(port)
        elif containers or (procs and all(p in ("docker-proxy", "dockerd") for p in procs)):
            who = ", ".join(sorted(set(containers))) or "docker-proxy"
            by_docker.append(f"{port} (published by {who})")
        else:
            who = ", ".join(sorted(set(procs))) or "process not visible to the SSH user"
            busy.append(f"{port} ({who})")
    free_text = f"free: {', '.join(map(str, free))}" if free else ""
    if busy:
        detail = "; ".join(x for x in [f"in use: {', '.join(busy)}", free_text] if x)
        return Check("ports", "Ports free", FAIL, detail,
                     "find the holder with sudo ss -ltnp 'sport = :PORT' and stop it, or "
                     "publish the stack on other ports")
    if by_docker:
        detail = "; ".join(x for x in [f"held by containers: {', '.join(by_docker)}",
                                        free_text] if x)
        return Check("ports", "Ports free", WARN, detail + " (fine if this is the same stack "
                     "being redeployed)", "docker ps --filter publish=PORT; stop a stack of "
                     "another compose project that holds them")
    return Check("ports", "Ports free", OK, free_text)


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

    return parse_dotenv(Path(path).read_text(encoding="utf-8", errors="replace"), str(path))


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


def check_database_url(url: str | None, app_async: bool | None) -> Check:
    title = "DATABASE_URL driver"
    if not url:
        return Check("database_url", title, SKIP, "no DATABASE_URL in vars or secrets")
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


def _find_database_url(variables: Mapping[str, Any], secrets: Mapping[str, str]) -> str | None:
    for source in (secrets, variables):
        for key in ("database_url", "DATABASE_URL"):
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value
    return None


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


def _run_remote(transport: Any, probes: dict[str, str],
                env: Mapping[str, str] | None) -> dict[str, tuple[int, str]] | str:
    token = "@@doctor-" + _secrets.token_hex(6)
    script = combine_probes(probes, token)
    try:
        result = transport.run(script, env=dict(env) if env else None, check=False,
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
               ) -> list[Check]:
    """Every preflight check for one host, in ``CHECKS`` order.

    ``transport`` is an ``SSHTransport`` (connected or not; a failed connection becomes
    a failing ``ssh`` check and the remote checks are skipped). ``variables`` are the
    host's merged vars (app_dir, required_ports, compose_command, app_async, thresholds);
    ``secrets`` the resolved values of ``secret_names``; ``example_env`` the parsed
    example env file whose values count as placeholders; ``project_dir`` the local
    source scanned for ``create_async_engine`` when var ``app_async`` is unset; ``only``
    restricts to some check ids; ``env`` is exported for the remote probes.
    """
    if variables is None:
        variables = dict(getattr(host, "vars", None) or {})
    variables = dict(variables)
    secrets = dict(secrets or {})
    wanted = [c.id for c in CHECKS if only is None or c.id in only]
    results: dict[str, Check] = {}

    if "secrets" in wanted:
        results["secrets"] = check_secrets(secret_names, secrets, placeholders, example_env)
    if "database_url" in wanted:
        app_async = _truthy(variables.get("app_async"))
        if app_async is None and project_dir is not None:
            source = Path(project_dir) / str(variables.get("app_source_dir", "."))
            app_async = detect_async_app(source) if source.is_dir() else None
        results["database_url"] = check_database_url(
            _find_database_url(variables, secrets), app_async)

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
                                              getattr(transport, "sudo_password", None))))
    return [results[i] for i in wanted if i in results]


def _remote_checks(transport: Any, ids: list[str], variables: Mapping[str, Any],
                   env: Mapping[str, str] | None, clock: Callable[[], float],
                   has_sudo_password: bool) -> dict[str, Check]:
    results: dict[str, Check] = {}
    probes = {i: PROBES[i] for i in ("ssh", "sudo", "docker", "compose", "ports") if i in ids}
    if "disk" in ids:
        app_dir = str(variables.get("app_dir") or DEFAULT_APP_DIR)
        probes["disk"] = disk_probe([app_dir], str(variables.get("docker_root")
                                                   or DEFAULT_DOCKER_ROOT))
    sections = _run_remote(transport, probes, env) if probes else {}
    if isinstance(sections, str):
        for check_id in ids:
            info = next(c for c in CHECKS if c.id == check_id)
            results[check_id] = Check(check_id, info.title, FAIL, sections,
                                      "rerun; if it persists check the host's load and sshd")
        return results
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
            code, out = sections.get("docker", (1, ""))
            results["docker"] = parse_docker(code, out)
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
            required = variables.get("required_ports") or []
            if isinstance(required, (str, int)):
                required = [p for p in re.split(r"[,\s]+", str(required)) if p]
            results["ports"] = parse_ports(code, out, required)
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
    steps = getattr(runbook, "steps", None)
    if steps is None:
        return True
    for step in steps:
        if step.kind == "compose":
            return True
        if "docker" in repr(getattr(step.body, "options", "")):
            return True
    return False


def cheap_preflight(runbook: Any, host: Any, transport: Any,
                    variables: Mapping[str, Any] | None = None,
                    include_ok: bool = False, env: Mapping[str, str] | None = None,
                    ) -> list[Check]:
    """The fast checks ``deployer run`` performs before its first step: SSH, Docker
    engine and Compose flavour (only when the runbook uses Docker), free disk.

    Returns the checks that are not ok (``include_ok`` for all). A ``Check`` has
    ``severity`` ("error" for fail) and ``str()``, so failures can feed ``InputError``.
    """
    only = ["ssh", "disk"]
    if _runbook_uses_docker(runbook):
        only += ["docker", "compose"]
    checks = run_checks(transport, host, variables, only=only, env=env)
    return [c for c in checks if include_ok or c.status in (WARN, FAIL)]


def summary_exit_code(checks: Iterable[Check]) -> int:
    """0 when nothing failed, 1 when any check failed."""
    return 1 if any(c.status == FAIL for c in checks) else 0
