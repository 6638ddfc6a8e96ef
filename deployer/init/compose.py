"""Read an app's Compose file(s) as data, never by running Compose.

``load_compose`` parses each file with the YAML loader (positions kept for messages),
merges services the way Compose does for the fields ``deployer init`` needs (later files
override scalars, mappings are merged), and records every ``${VAR}`` reference with its
default, so the inventory can name the variables the stack reads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from deployer.errors import InputError, Problem
from deployer.yamlsrc import Node, display_path, load_yaml

# The names Compose looks for, in its own order of preference.
COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
# Overrides ``init`` offers in compose_files when present (production first).
OVERRIDE_NAMES = ("docker-compose.prod.yml", "docker-compose.prod.yaml",
                  "docker-compose.production.yml", "compose.prod.yaml", "compose.prod.yml",
                  "compose.production.yaml")

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, ${NAME?err}; $$ is a literal $.
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}"
                  r"|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class VarRef:
    """One ``${NAME...}`` in a compose file."""

    name: str
    default: str | None  # the `:-` / `-` default, None when there is none
    required: bool  # `:?` / `?`: Compose refuses to start without it
    where: str  # "service.field" it appears in


@dataclass
class Service:
    """The fields of one compose service that ``init`` looks at (plain data)."""

    name: str
    image: str | None = None
    build: dict[str, Any] | None = None
    command: Any = None
    entrypoint: Any = None
    environment: dict[str, str] = field(default_factory=dict)
    env_file: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    depends_on: dict[str, str] = field(default_factory=dict)  # name -> condition
    healthcheck: Any = None
    network_mode: str | None = None
    restart: str | None = None
    volumes: list[str] = field(default_factory=list)


@dataclass
class ComposeProject:
    files: list[str]  # relative to the app directory, in order
    services: dict[str, Service]
    refs: list[VarRef]

    def ref(self, name: str) -> VarRef | None:
        for r in self.refs:
            if r.name == name:
                return r
        return None


def find_compose_files(app_dir: str) -> list[str]:
    """The main compose file (first of ``COMPOSE_NAMES``) and a production override."""
    main = next((n for n in COMPOSE_NAMES if os.path.isfile(os.path.join(app_dir, n))), None)
    if main is None:
        return []
    files = [main]
    override = next((n for n in OVERRIDE_NAMES if os.path.isfile(os.path.join(app_dir, n))),
                    None)
    if override:
        files.append(override)
    return files


def var_refs(text: str, where: str) -> list[VarRef]:
    refs = []
    for m in _VAR.finditer(text):
        if m.group(0) == "$$":
            continue
        name = m.group(1) or m.group(4)
        op, arg = m.group(2) or "", m.group(3)
        default = arg if op in (":-", "-") else None
        refs.append(VarRef(name, default, op in (":?", "?"), where))
    return refs


def substitute_defaults(text: str, env: dict[str, str] | None = None) -> str:
    """``text`` with each ``${NAME...}`` replaced by ``env[NAME]`` or its default ("" when
    it has none): what Compose would see with only the file's own defaults."""
    env = env or {}

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        if name in env:
            return env[name]
        op, arg = m.group(2) or "", m.group(3)
        return arg if op in (":-", "-") and arg is not None else ""

    return _VAR.sub(repl, text)


def _walk_refs(value: Any, where: str, out: list[VarRef]) -> None:
    if isinstance(value, str):
        out.extend(var_refs(value, where))
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk_refs(v, f"{where}.{k}", out)
    elif isinstance(value, list):
        for v in value:
            _walk_refs(v, where, out)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) if not isinstance(v, dict) else str(v.get("path", "")) for v in value]
    return [str(value)]


def _env_mapping(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in _as_list(value):
        name, _, val = item.partition("=")
        out[name] = val
    return out


def _depends(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str((v or {}).get("condition", "service_started"))
                if isinstance(v, dict) else "service_started" for k, v in value.items()}
    return {name: "service_started" for name in _as_list(value)}


def _problem(node: Node | None, path: str, message: str, hint: str) -> Problem:
    pos = node.pos if node is not None else None
    return Problem(message, pos, hint=hint)


def _merge(into: Service, spec: dict[str, Any]) -> None:
    for key, attr in (("image", "image"), ("command", "command"),
                      ("entrypoint", "entrypoint"), ("healthcheck", "healthcheck"),
                      ("network_mode", "network_mode"), ("restart", "restart")):
        if key in spec:
            setattr(into, attr, spec[key])
    if "build" in spec:
        build = spec["build"]
        into.build = {"context": build} if isinstance(build, str) else dict(build or {})
    if "environment" in spec:
        into.environment.update(_env_mapping(spec["environment"]))
    for key in ("env_file", "ports", "profiles", "volumes"):
        if key in spec:
            merged = getattr(into, key) + [v for v in _as_list(spec[key])
                                            if v not in getattr(into, key)]
            setattr(into, key, merged)
    if "depends_on" in spec:
        into.depends_on.update(_depends(spec["depends_on"]))


def load_compose(app_dir: str, files: list[str]) -> ComposeProject:
    """Parse ``files`` (relative to ``app_dir``). Raises ``InputError`` naming file:line
    for a file that is not a compose file."""
    services: dict[str, Service] = {}
    refs: list[VarRef] = []
    problems: list[Problem] = []
    for rel in files:
        path = os.path.join(app_dir, rel)
        tree = load_yaml(path)
        if not tree.is_mapping:
            problems.append(_problem(tree, rel, f"{display_path(path)} is not a compose "
                                     "file (its top level is not a mapping)",
                                     "a compose file starts with `services:`"))
            continue
        snode = tree.get("services")
        if snode is None or not snode.is_mapping:
            problems.append(_problem(snode or tree, rel, f"{display_path(path)} has no "
                                     "`services:` mapping", "list the stack's services "
                                     "under `services:`"))
            continue
        for name, node in snode.items():
            if not node.is_mapping:
                problems.append(_problem(node, f"services.{name}", f"service `{name}` is "
                                         "not a mapping", "give it `image:` or `build:`"))
                continue
            spec = node.plain()
            _walk_refs(spec, f"{name}", refs)
            _merge(services.setdefault(str(name), Service(str(name))), spec)
        for key, node in tree.items():
            if key != "services" and str(key).startswith("x-"):
                _walk_refs(node.plain(), str(key), refs)
    if problems:
        raise InputError(problems)
    return ComposeProject(files=list(files), services=services, refs=_dedupe(refs))


def _dedupe(refs: list[VarRef]) -> list[VarRef]:
    """One ref per name: the first with a default (or the first), required if any is."""
    by_name: dict[str, VarRef] = {}
    for r in refs:
        old = by_name.get(r.name)
        if old is None:
            by_name[r.name] = r
        else:
            by_name[r.name] = VarRef(r.name, old.default if old.default is not None
                                     else r.default, old.required or r.required, old.where)
    return list(by_name.values())
