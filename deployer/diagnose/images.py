"""The doctor's ``images`` check: the api image name the app's compose config gives on
the host (what the runbooks' ``images`` step reads, and what a rollback re-tags)
against var ``api_image``, and which of the compose config's images the host's engine
holds. Pure: ``probe`` builds the shell, ``parse`` reads its output into a ``Check``.

The compose config is read on the host, not from the local file, because only there
do its ``${VAR}`` references see the deployed ``.env``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

import yaml

from deployer.diagnose.checks import FAIL, OK, SKIP, WARN, Check

TITLE = "Image names"
_CONFIG, _IMAGES, _ABSENT = "@@config", "@@images", "@@absent"


def probe(variables: Mapping[str, Any]) -> str:
    """The shell printing the compose config (in the app's directory, as the runbooks
    run compose) and the engine's images; ``@@absent`` when the app is not there yet."""
    where = str(variables.get("compose_project_dir") or variables.get("app_dir") or "")
    cli = str(variables.get("compose_cli") or variables.get("compose_command")
              or "docker compose")
    return "\n".join([
        f"d={shlex.quote(where)}",
        f'if [ -z "$d" ] || [ ! -d "$d" ]; then echo {_ABSENT}; exit 0; fi',
        'cd -- "$d" || exit 1',
        f"echo {_CONFIG}",
        f"{cli} config </dev/null 2>&1 || echo \"@@failed $?\"",
        f"echo {_IMAGES}",
        "docker images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null || true",
    ])


def default_name(variables: Mapping[str, Any], service: str) -> str:
    """The name compose gives the image of a service without ``image:``."""
    project = str(variables.get("compose_project_name") or variables.get("compose_project")
                  or "")
    v1 = "docker-compose" in str(variables.get("compose_command") or "")
    return f"{project}{'_' if v1 else '-'}{service}"


def _tagged(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] or "@" in name else name + ":latest"


def parse(exit_code: int, output: str, variables: Mapping[str, Any]) -> Check:
    """The verdict on the probe's ``output``."""
    if output.strip() == _ABSENT:
        return Check("images", TITLE, SKIP, "the app is not on the host yet (no "
                     f"{variables.get('compose_project_dir') or variables.get('app_dir')}); "
                     "the first run reads the names from the compose config")
    config, _, images = output.partition(_IMAGES)
    config = config.partition(_CONFIG)[2]
    failed = [line for line in config.splitlines() if line.startswith("@@failed")]
    if exit_code != 0 or failed:
        tail = " | ".join(line for line in config.strip().splitlines()[-3:]
                          if not line.startswith("@@"))
        return Check("images", TITLE, FAIL, f"`compose config` failed on the host: {tail}",
                     "run `deployer logs` or the compose command in the app directory; "
                     "a missing .env or a bad compose file stops every run at this point")
    try:
        services = (yaml.safe_load(config) or {}).get("services") or {}
    except (yaml.YAMLError, AttributeError):
        return Check("images", TITLE, WARN, "the compose config on the host could not be "
                     "read as YAML", "check the compose file with `compose config`")
    service = str(variables.get("api_service") or "api")
    if service not in services:
        return Check("images", TITLE, FAIL, f"the compose config on the host has no service "
                     f"`{service}` (it has: {', '.join(sorted(services)) or 'none'})",
                     "set var api_service to the app's service")
    present = {line.strip() for line in images.splitlines() if line.strip()}
    names = {}
    for name, spec in services.items():
        spec = spec if isinstance(spec, dict) else {}
        image = spec.get("image") or default_name(variables, str(name))
        names[str(name)] = (_tagged(str(image)), "build" in spec)
    api_name, _ = names[service]
    missing = sorted(f"{image} ({svc}: {'built by the run' if built else 'pulled'})"
                     for svc, (image, built) in names.items() if image not in present)
    detail = f"{service} runs {api_name}"
    if missing:
        detail += "; not on the host yet: " + ", ".join(missing)
    wanted = str(variables.get("api_image") or "")
    if wanted and _tagged(wanted) != api_name:
        return Check("images", TITLE, WARN, f"var api_image is {wanted} but the compose "
                     f"config on the host gives {service} the image {api_name}: the runs "
                     "build, record and re-tag on rollback the compose name",
                     f"leave api_image empty, or set it to {api_name}")
    return Check("images", TITLE, OK, detail)


__all__ = ["TITLE", "default_name", "parse", "probe"]
