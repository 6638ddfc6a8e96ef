"""The doctor's ``ports`` check: which required ports are free on the host, and whether
a held one belongs to the stack's own containers (a redeploy replaces them) or to a
stranger. Pure: parses the listening sockets, their processes' cgroups and
``docker ps`` as the probe printed them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from deployer.diagnose.checks import FAIL, OK, SKIP, WARN, Check


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


