"""Host preflight checks for ``deployer doctor`` and the cheap subset ``deployer run``
performs before its first step. Returns data (``Check``); the CLI renders it.

Each remote check is a small probe script plus a pure parser of its output, so the
parsing is unit-tested from recorded output and the behaviour against a real sshd.
All probes travel in ONE remote command (sections delimited by a random marker, each
probe under ``timeout``), plus one tiny command for the clock, so a doctor run costs
two round trips. Local checks (secrets, DATABASE_URL) need no connection.

Statuses: ``ok``, ``warn``, ``fail``, ``skip`` (not applicable). ``deployer doctor``
exits 1 when any check failed.

This module runs the checks; the rooms it draws on: ``checks`` (the data a check
returns), ``probes`` (host probes and their parsers), ``ports``, ``inputs`` (secrets,
DATABASE_URL) and ``images``. Their names are re-exported here.
"""

from __future__ import annotations

import os
import re
import secrets as _secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from deployer.diagnose.checks import (  # noqa: F401 - re-exported
    FAIL,
    OK,
    SKIP,
    STATUSES,
    THRESHOLDS,
    WARN,
    Check,
    CheckInfo,
    _catalogue_fix,
    _fmt_mb,
    _threshold,
    _truthy,
)
from deployer.diagnose.inputs import (  # noqa: F401 - re-exported
    _ASYNC_SOURCE_RE,
    _ENV_URL_RE,
    _PLACEHOLDER_SHAPES,
    _SKIP_SOURCE_DIRS,
    ASYNC_DRIVERS,
    DEFAULT_PLACEHOLDERS,
    SYNC_DRIVERS,
    _check_database_url,
    _find_database_url,
    check_database_url,
    check_database_urls,
    check_secrets,
    detect_async_app,
    is_placeholder,
    parse_env_file,
    rendered_database_urls,
    url_driver,
)
from deployer.diagnose.ports import (  # noqa: F401 - re-exported
    _compose_name,
    _Container,
    _listen_port,
    parse_ports,
    port_numbers,
    stack_ports,
    stack_project,
)
from deployer.diagnose.probes import (  # noqa: F401 - re-exported
    _DF_RE,
    _DFI_RE,
    CONTAINERS,
    DEFAULT_APP_DIR,
    DEFAULT_DOCKER_ROOT,
    DOCKER_INFO,
    MIN_DOCKER,
    PROBE_TIMEOUT,
    PROBES,
    SUDO_PROBES,
    SUDO_WORKS,
    _version_tuple,
    combine_probes,
    disk_probe,
    docker_check,
    parse_clock,
    parse_compose,
    parse_disk,
    parse_docker,
    parse_ssh,
    parse_sudo,
    split_probes,
)
from deployer.errors import DeployerError, TransportError

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
