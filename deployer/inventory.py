"""Inventories: where hosts are, how to reach them, their variables and secret sources.

Two formats are read. The native one (``hosts:``, ``groups:``, ``defaults:``,
``default_host:``, ``secrets:``; see docs/runbooks.md) and Ansible-style YAML
(``all: {hosts: ..., children: ..., vars: ...}``, with ``ansible_host``,
``ansible_user``, ``ansible_port`` and ``ansible_ssh_private_key_file`` understood).

Host variables are merged here, lowest first: defaults < groups < host. In the native
format a host's groups apply in the order the host lists them (then groups that list
the host); in Ansible style parents apply before children, siblings by name (as
Ansible does).
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from deployer.errors import InputError, Problem
from deployer.models import Host
from deployer.schema import INVALID, INVENTORY_FIELDS, Checker, clean
from deployer.yamlsrc import Node, display_path, load_yaml

DEFAULT_INVENTORY = "inventory.yml"
ANSIBLE_GROUP_KEYS = {"hosts", "children", "vars"}
ANSIBLE_HOST_KEYS = {
    "ansible_host": "host",
    "ansible_ssh_host": "host",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_ssh_private_key_file": "identity_file",
}


@dataclass
class Inventory:
    """A loaded inventory. ``hosts`` keep file order; ``groups`` map to member names."""

    path: str
    digest: str
    hosts: dict[str, Host] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    default_host: str | None = None
    secret_commands: dict[str, str] = field(default_factory=dict)
    format: str = "native"
    defaults: dict[str, Any] = field(default_factory=dict)

    def resolve(self, target: str | None) -> list[Host]:
        """Hosts for ``--host``: a host, a group, ``all``, or comma-separated names.

        Without a target: the ``default_host`` (host or group), else the only host.
        An unknown name that is a ``Host`` alias in ``~/.ssh/config`` becomes a host
        reached through that alias.
        """
        if target is None or target == "":
            if self.default_host:
                return self.resolve(self.default_host)
            if len(self.hosts) == 1:
                return list(self.hosts.values())
            raise InputError(Problem(
                f"no --host given and {display_path(self.path)} has {len(self.hosts)} hosts "
                "and no default_host", hint=f"pass --host NAME ({self._known()}), or set "
                "default_host in the inventory"))
        hosts: list[Host] = []
        for name in [t.strip() for t in target.split(",") if t.strip()]:
            for host in self._resolve_one(name):
                if host not in hosts:
                    hosts.append(host)
        return hosts

    def _resolve_one(self, name: str) -> list[Host]:
        if name in self.hosts:
            return [self.hosts[name]]
        if name in self.groups:
            members = [self.hosts[h] for h in self.hosts if h in self.groups[name]]
            if not members:
                raise InputError(Problem(f"group `{name}` has no hosts",
                                         hint=f"add hosts to it in {display_path(self.path)}"))
            return members
        if name == "all":
            return list(self.hosts.values())
        if name in ssh_config_aliases():
            return [self.alias_host(name)]
        known = list(self.hosts) + list(self.groups)
        close = difflib.get_close_matches(name, known, n=1)
        hint = (f"did you mean `{close[0]}`? " if close else "") + self._known()
        raise InputError(Problem(f"unknown host or group `{name}` in "
                                 f"{display_path(self.path)}", hint=hint))

    def _known(self) -> str:
        text = "hosts: " + (", ".join(self.hosts) or "none")
        if self.groups:
            text += "; groups: " + ", ".join(self.groups)
        return text

    def alias_host(self, alias: str) -> Host:
        """A host reached through its ``~/.ssh/config`` alias; ssh config decides the
        address, user, port and key, the inventory defaults give vars and timeouts."""
        d = self.defaults
        return Host(name=alias, address=alias, user=None, port=22, identity_file=None,
                    known_hosts=list(d.get("known_hosts") or []), groups=[],
                    vars=dict(d.get("vars") or {}),
                    connect_timeout=float(d.get("connect_timeout") or 10.0),
                    ssh_config_alias=True)


def ssh_config_file() -> str | None:
    """The OpenSSH client config deployer honours: ``DEPLOYER_SSH_CONFIG`` (``none``,
    empty or ``/dev/null``: none at all, so tests never see the user's own), else
    ``~/.ssh/config``. The transport reads the same file."""
    override = os.environ.get("DEPLOYER_SSH_CONFIG")
    if override is None:
        return os.path.expanduser("~/.ssh/config")
    if override.strip().lower() in ("", "none", "/dev/null"):
        return None
    return os.path.expanduser(override)


_SSH_LINE = re.compile(r"(\S+?)(?:\s*=\s*|\s+)(.*)$")
# One ``Host`` (or ``Match``) section: its patterns (None: a ``Match`` this reader
# cannot evaluate, which then applies to no host) and its options, first value kept.
_Section = tuple[list[str] | None, dict[str, str]]


def _ssh_sections(path: str | None) -> list[_Section]:
    """The sections of an ssh config file, in order; [] when there is none.

    A small reader of the subset that decides where a connection goes (``Host``,
    ``HostName``, ``Port``, ``User``), kept here because only transport.py may import
    paramiko: options before the first ``Host`` apply to every host, ``Match all``
    too; other ``Match`` sections are skipped, and ``Include`` is not followed (as
    paramiko, which the transport uses, does not either).
    """
    if not path:
        return []
    sections: list[_Section] = [(["*"], {})]
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    for raw in lines:
        line = raw.strip()
        match = _SSH_LINE.match(line) if line and not line.startswith("#") else None
        if not match:
            continue
        key, value = match.group(1).lower(), match.group(2).split(" #")[0].strip()
        if key == "host":
            sections.append(([p.strip('"') for p in value.split()], {}))
        elif key == "match":
            sections.append((["*"] if value.lower() == "all" else None, {}))
        else:
            sections[-1][1].setdefault(key, value.strip('"'))
    return sections


def _host_matches(patterns: list[str] | None, name: str) -> bool:
    if not patterns:
        return False
    positive = [p for p in patterns if not p.startswith("!")]
    negated = [p[1:] for p in patterns if p.startswith("!")]
    return (any(fnmatch.fnmatchcase(name, p) for p in positive)
            and not any(fnmatch.fnmatchcase(name, p) for p in negated))


def ssh_config_lookup(name: str, path: str | None = None) -> dict[str, str]:
    """The ssh config options for ``name`` (keys lower-case; the first value obtained
    for a key wins, as in OpenSSH). ``path`` defaults to ``ssh_config_file()``."""
    options: dict[str, str] = {}
    for patterns, section in _ssh_sections(path or ssh_config_file()):
        if _host_matches(patterns, name):
            for key, value in section.items():
                options.setdefault(key, value)
    if "hostname" in options:
        options["hostname"] = options["hostname"].replace("%h", name).replace("%%", "%")
    return options


def ssh_endpoint(host: Host) -> tuple[str | None, str, int]:
    """(user, address, port) the transport connects ``host`` to, resolved the way it
    resolves them: ssh config ``HostName`` for the address; ``Port`` unless the
    inventory set another port than 22; ``User`` unless the inventory set one.
    For plans, so a ``~/.ssh/config`` alias shows where it really goes."""
    cfg = ssh_config_lookup(host.address)
    port = host.port
    if host.port == 22 and cfg.get("port", "").isdigit():
        port = int(cfg["port"])
    return host.user or cfg.get("user"), cfg.get("hostname") or host.address, port


def ssh_config_aliases(path: str | None = None) -> list[str]:
    """Literal ``Host`` names (no wildcards) from the ssh config (``ssh_config_file``)."""
    aliases: list[str] = []
    for patterns, _ in _ssh_sections(path or ssh_config_file())[1:]:
        aliases += [p for p in patterns or [] if not any(c in p for c in "*?!")]
    return aliases


def _file_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _local_file(value: str | None, base: str) -> str | None:
    """Relative key / known_hosts paths are relative to the inventory file."""
    if not value:
        return None
    if value.startswith("~"):
        return value
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(base, value))


def _as_list(value: Any) -> list[str]:
    if value is None or value is INVALID:
        return []
    return [value] if isinstance(value, str) else list(value)


def load_inventory(path: str | None, project_dir: str) -> Inventory:
    """Load ``path`` (default ``<project_dir>/inventory.yml``); every problem at once."""
    explicit = path is not None
    if path is None:
        path = os.path.join(project_dir, DEFAULT_INVENTORY)
    elif not os.path.isabs(path) and not os.path.exists(path):
        in_project = os.path.join(project_dir, path)
        if os.path.exists(in_project):
            path = in_project
    if not os.path.isfile(path):
        hint = "pass the inventory with -i FILE"
        example = os.path.join(project_dir, "inventory.example.yml")
        if not explicit and os.path.isfile(example):
            hint += f" (or copy {display_path(example)} to {display_path(path)})"
        raise InputError(Problem(f"inventory not found: {display_path(path)}", hint=hint))
    node = load_yaml(path)
    if node.value is None:
        raise InputError(Problem(f"inventory {display_path(path)} is empty", node.pos,
                                 hint="add hosts: (see inventory.example.yml)"))
    if not node.is_mapping:
        raise InputError(Problem("the inventory must be a mapping", node.pos,
                                 hint="start with hosts: or all:"))
    inv = Inventory(path=path, digest=_file_digest(path))
    base = os.path.dirname(os.path.abspath(path))
    if "hosts" not in node.value and _looks_ansible(node):
        _load_ansible(node, inv, base)
    else:
        _load_native(node, inv, base)
    return inv


def _looks_ansible(node: Node) -> bool:
    if "all" in node.value:
        return True
    groups = [v for k, v in node.items() if k not in ("default_host", "secrets")]
    return bool(groups) and all(
        v.value is None or (v.is_mapping and set(v.value) <= ANSIBLE_GROUP_KEYS) for v in groups)


def _load_native(node: Node, inv: Inventory, base: str) -> None:
    checker = Checker()
    top = clean(checker.mapping(node, INVENTORY_FIELDS, "", what=" (the inventory)"))
    defaults = top.get("defaults") or {}
    defaults = clean(defaults) if isinstance(defaults, dict) else {}
    defaults["known_hosts"] = [_local_file(p, base) for p in _as_list(
        defaults.get("known_hosts"))]
    inv.defaults = defaults
    groups_spec: dict[str, dict[str, Any]] = {
        k: clean(v) for k, v in (top.get("groups") or {}).items() if isinstance(v, dict)}
    hosts_spec: dict[str, dict[str, Any]] = {
        k: clean(v) for k, v in (top.get("hosts") or {}).items() if isinstance(v, dict)}
    hosts_node = node.get("hosts")
    groups_node = node.get("groups")
    if hosts_node is not None and hosts_node.is_mapping and not hosts_node.value:
        checker.error(hosts_node, "hosts", "the inventory has no hosts",
                      "add one: hosts: {vps: {host: 203.0.113.10}}")
    for name in hosts_spec:
        if name in groups_spec:
            checker.error(groups_node.get(name) if groups_node else None, f"groups.{name}",
                          f"`{name}` is both a host and a group",
                          "rename one: --host must be unambiguous",
                          pos=groups_node.key_pos(name) if groups_node else None)
    membership: dict[str, list[str]] = {h: list(_as_list(s.get("groups")))
                                        for h, s in hosts_spec.items()}
    for gname, gspec in groups_spec.items():
        for member in _as_list(gspec.get("hosts")):
            if member not in hosts_spec:
                gnode = groups_node.get(gname) if groups_node else None
                checker.error(gnode, f"groups.{gname}.hosts",
                              f"group `{gname}` lists unknown host `{member}`",
                              _did_you_mean(member, list(hosts_spec)))
            elif gname not in membership[member]:
                membership[member].append(gname)
    default_vars = dict(defaults.get("vars") or {})
    for hname, spec in hosts_spec.items():
        merged = dict(default_vars)
        for gname in membership[hname]:
            merged.update((groups_spec.get(gname) or {}).get("vars") or {})
        merged.update(spec.get("vars") or {})
        address = spec.get("host") or hname
        known = [_local_file(p, base) for p in _as_list(spec.get("known_hosts"))]
        inv.hosts[hname] = Host(
            name=hname,
            address=str(address),
            user=spec.get("user") or defaults.get("user"),
            port=int(spec.get("port") or defaults.get("port") or 22),
            identity_file=_local_file(spec.get("identity_file") or defaults.get(
                "identity_file"), base),
            known_hosts=[k for k in (defaults["known_hosts"] + known) if k],
            groups=membership[hname],
            vars=merged,
            connect_timeout=float(spec.get("connect_timeout")
                                  or defaults.get("connect_timeout") or 10.0),
            ssh_config_alias=("host" not in spec and hname in ssh_config_aliases()),
        )
        for gname in membership[hname]:
            inv.groups.setdefault(gname, []).append(hname)
    for gname in groups_spec:
        inv.groups.setdefault(gname, [])
    inv.secret_commands = {k: v["command"] for k, v in (top.get("secrets") or {}).items()
                           if isinstance(v, dict) and isinstance(v.get("command"), str)}
    default_host = top.get("default_host")
    if isinstance(default_host, str):
        inv.default_host = default_host
        _check_default(default_host, inv, node, checker)
    if checker.problems:
        raise InputError(checker.problems)


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean `{close[0]}`?" if close else "known: " + ", ".join(known)


def _check_default(default_host: str, inv: Inventory, node: Node, checker: Checker) -> None:
    names = [t.strip() for t in default_host.split(",")]
    for name in names:
        if name not in inv.hosts and name not in inv.groups and name != "all":
            checker.error(node.get("default_host"), "default_host",
                          f"default_host `{name}` is not a host or group of this inventory",
                          _did_you_mean(name, list(inv.hosts) + list(inv.groups)))


def _load_ansible(node: Node, inv: Inventory, base: str) -> None:
    """Read an Ansible YAML inventory (groups with hosts, children and vars)."""
    checker = Checker()
    inv.format = "ansible"
    host_order: list[str] = []
    host_vars: dict[str, dict[str, Any]] = {}
    host_groups: dict[str, set[str]] = {}
    group_vars: dict[str, dict[str, Any]] = {}
    group_depth: dict[str, int] = {}
    parents: dict[str, set[str]] = {}

    def walk(gname: str, gnode: Node, depth: int, path: str, chain: tuple[str, ...]) -> None:
        if gname in chain:
            checker.error(gnode, path, "group cycle: " + " -> ".join(chain + (gname,)))
            return
        group_depth[gname] = min(group_depth.get(gname, depth), depth)
        if gnode.value is None:
            return
        if not gnode.is_mapping:
            checker.error(gnode, path, "expected a group (a mapping with hosts, children, vars)")
            return
        for key in gnode.value:
            if key not in ANSIBLE_GROUP_KEYS:
                checker.error(gnode.value[key], f"{path}.{key}", f"unknown group field `{key}`",
                              _did_you_mean(str(key), sorted(ANSIBLE_GROUP_KEYS)),
                              pos=gnode.key_pos(key))
        vnode = gnode.get("vars")
        if vnode is not None and vnode.value is not None:
            if vnode.is_mapping:
                group_vars.setdefault(gname, {}).update(vnode.plain())
            else:
                checker.error(vnode, f"{path}.vars", "expected a mapping of variables")
        hnode = gnode.get("hosts")
        if hnode is not None and hnode.value is not None:
            if not hnode.is_mapping:
                checker.error(hnode, f"{path}.hosts", "expected a mapping of host names",
                              "write hosts: {web1: {ansible_host: 203.0.113.10}}")
            else:
                for hname, hv in hnode.items():
                    hname = str(hname)
                    if hname not in host_order:
                        host_order.append(hname)
                    if hv.value is not None and not hv.is_mapping:
                        checker.error(hv, f"{path}.hosts.{hname}",
                                      "expected a mapping of host variables")
                        continue
                    host_vars.setdefault(hname, {}).update(hv.plain() or {})
                    host_groups.setdefault(hname, set()).update(chain + (gname,))
        cnode = gnode.get("children")
        if cnode is not None and cnode.value is not None:
            if not cnode.is_mapping:
                checker.error(cnode, f"{path}.children", "expected a mapping of groups")
            else:
                for cname, child in cnode.items():
                    parents.setdefault(str(cname), set()).add(gname)
                    walk(str(cname), child, depth + 1, f"{path}.children.{cname}",
                         chain + (gname,))

    for key, value in node.items():
        if key == "default_host" and isinstance(value.value, str):
            inv.default_host = value.value
            continue
        if key == "secrets" and value.is_mapping:
            for sname, snode in value.items():
                cmd = snode.get("command") if snode.is_mapping else None
                if cmd is None or not isinstance(cmd.value, str):
                    checker.error(snode, f"secrets.{sname}", "expected {command: \"...\"}")
                else:
                    inv.secret_commands[str(sname)] = cmd.value
            continue
        walk(str(key), value, 0 if key == "all" else 1, str(key), ())

    def ancestors(group: str, seen: set[str]) -> set[str]:
        for parent in parents.get(group, set()):
            if parent not in seen:
                seen.add(parent)
                ancestors(parent, seen)
        return seen

    for member_of in host_groups.values():
        for g in list(member_of):
            member_of |= ancestors(g, set())
    all_vars = group_vars.get("all", {})
    for hname in host_order:
        entries = sorted(host_groups.get(hname, set()), key=lambda g: (group_depth[g], g))
        merged = dict(all_vars)
        for g in entries:
            if g != "all":
                merged.update(group_vars.get(g, {}))
        hv = host_vars.get(hname, {})
        conn = {ANSIBLE_HOST_KEYS[k]: merged.pop(k) for k in list(merged)
                if k in ANSIBLE_HOST_KEYS}
        conn.update({ANSIBLE_HOST_KEYS[k]: v for k, v in hv.items() if k in ANSIBLE_HOST_KEYS})
        merged.update({k: v for k, v in hv.items() if k not in ANSIBLE_HOST_KEYS})
        groups = [g for g in entries if g not in ("all", "ungrouped")]
        try:
            port = int(conn.get("port") or 22)
        except (TypeError, ValueError):
            checker.error(node, f"hosts.{hname}.ansible_port",
                          f"ansible_port of `{hname}` must be an integer")
            port = 22
        inv.hosts[hname] = Host(
            name=hname,
            address=str(conn.get("host") or hname),
            user=conn.get("user"),
            port=port,
            identity_file=_local_file(conn.get("identity_file"), base),
            groups=groups,
            vars=merged,
            ssh_config_alias=("host" not in conn and hname in ssh_config_aliases()),
        )
        for g in groups:
            inv.groups.setdefault(g, []).append(hname)
    for g in group_vars:
        if g not in ("all", "ungrouped"):
            inv.groups.setdefault(g, [])
    if not inv.hosts:
        checker.error(node, "all.hosts", "the inventory has no hosts")
    if inv.default_host:
        _check_default(inv.default_host, inv, node, checker)
    if checker.problems:
        raise InputError(checker.problems)
