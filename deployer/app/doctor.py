"""``deployer doctor``: the checks of every targeted host, as data.

Loads what the checks need (the runbooks in use, their secrets and vars, the example
env file whose values count as placeholders, the DATABASE_URLs the runbooks render)
and runs ``deployer.diagnose.doctor.run_checks`` over one connection per host, made
as an executor makes its own. The CLI renders the result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.appsecrets import with_app_secrets
from deployer.errors import InputError, SecretError, UsageError
from deployer.executor import default_transport_factory
from deployer.inventory import Inventory, load_inventory
from deployer.models import Runbook

EXAMPLE_ENV_CANDIDATES = (".env.example", "examples/app/.env.example", "app/.env.example",
                          "backend/.env.example")


@dataclass(frozen=True)
class DoctorRequest:
    """What ``deployer doctor`` was asked, as parsed."""

    project_dir: str
    inventory: str | None
    host: str | None
    vars_files: tuple[str, ...] = ()
    cli_vars: tuple[str, ...] = ()
    secrets_file: str | None = None
    runbooks: tuple[str, ...] = ()  # default: the runbooks in use
    example_env: str | None = None
    only: tuple[str, ...] = ()  # check ids; default: all
    accept_new_host_key: bool = False


@dataclass
class DoctorReport:
    """Each host's checks (``deployer.diagnose.doctor.Check``), in inventory order."""

    results: dict[str, list[Any]]

    @property
    def exit_code(self) -> int:
        from deployer.diagnose.doctor import summary_exit_code

        return summary_exit_code([c for checks in self.results.values() for c in checks])


def example_env(project_dir: str, given: str | None) -> tuple[dict[str, str], str | None]:
    """The example env file's values and path: ``given``, else the first of
    ``EXAMPLE_ENV_CANDIDATES`` in the project (none: empty)."""
    from deployer.diagnose.doctor import parse_env_file

    if given:
        path = Path(given)
        if not path.is_file():
            raise UsageError(f"example env file {given} does not exist")
        return parse_env_file(path), str(path)
    for candidate in EXAMPLE_ENV_CANDIDATES:
        path = Path(project_dir) / candidate
        if path.is_file():
            try:
                return parse_env_file(path), str(path)
            except (SecretError, InputError):
                return {}, None  # a malformed example is not the host's problem
    return {}, None


def _load_runbooks(project_dir: str, names: tuple[str, ...]) -> list[Runbook]:
    from deployer.runbook import load_runbook, runbooks_in_use

    chosen = list(names) or runbooks_in_use(project_dir)
    return [load_runbook(name, project_dir) for name in chosen]


def _resolve_each(names: list[str], inventory: Inventory,
                  secrets_file: str | None) -> dict[str, str]:
    """Secrets that can be resolved; a missing or failing one is simply absent (the
    secrets check reports it) instead of aborting the whole doctor run."""
    from deployer.secrets import resolve_secrets

    found: dict[str, str] = {}
    for name in names:
        try:
            found.update(resolve_secrets([name], inventory, secrets_file, os.environ))
        except SecretError:
            continue
    return found


def check_hosts(req: DoctorRequest) -> DoctorReport:
    """Run the doctor checks on every host ``req.host`` names."""
    from deployer.diagnose.doctor import CHECKS, docker_use, rendered_database_urls, run_checks
    from deployer.templating import merge_vars

    known = {c.id for c in CHECKS}
    unknown = [o for o in req.only if o not in known]
    if unknown:
        raise UsageError(f"unknown check {', '.join(unknown)}",
                         hint=f"checks: {' '.join(c.id for c in CHECKS)}")
    inventory = load_inventory(req.inventory, req.project_dir)
    hosts = inventory.resolve(req.host)
    loaded = _load_runbooks(req.project_dir, req.runbooks)
    secret_names = list(dict.fromkeys(n for rb in loaded for n in rb.secrets))
    combined = Runbook(name="doctor", path="")
    for rb in loaded:
        combined.vars.update(rb.vars)
    vars_files, cli_vars = list(req.vars_files), list(req.cli_vars)
    # The secrets the inventory's app_secrets names are needed too (docs/deploying.md).
    secret_names = with_app_secrets(secret_names, [
        merge_vars(combined, target, vars_files, cli_vars) for target in hosts])
    for rb in loaded:
        rb.secrets = with_app_secrets(rb.secrets, [
            merge_vars(rb, target, vars_files, cli_vars) for target in hosts])
    examples, _ = example_env(req.project_dir, req.example_env)
    secrets = _resolve_each(secret_names + ["sudo_password"], inventory, req.secrets_file)

    results: dict[str, list[Any]] = {}
    for target in hosts:
        variables = dict(merge_vars(combined, target, vars_files, cli_vars))
        urls: list[tuple[str, str]] = []
        if not req.only or "database_url" in req.only:
            for rb in loaded:
                urls += rendered_database_urls(
                    rb, target, merge_vars(rb, target, vars_files, cli_vars), secrets,
                    req.project_dir)
        transport = default_transport_factory(target, req.accept_new_host_key,
                                              secrets.get("sudo_password"))
        try:
            results[target.name] = run_checks(
                transport, target, variables, secrets, secret_names,
                example_env=examples, project_dir=req.project_dir,
                only=list(req.only) or None, database_urls=urls,
                docker=docker_use(loaded) if loaded else (True, False))
        finally:
            transport.close()
    return DoctorReport(results)


__all__ = ["EXAMPLE_ENV_CANDIDATES", "DoctorReport", "DoctorRequest", "check_hosts",
           "example_env"]
