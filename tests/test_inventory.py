"""Inventories: native and Ansible-style, --host resolution, ssh config aliases."""

from __future__ import annotations

import textwrap

import pytest

from deployer.errors import InputError
from deployer.inventory import load_inventory, ssh_config_aliases

NATIVE = """\
default_host: vps
defaults:
  user: deploy
  port: 2200
  known_hosts: known_hosts
  vars: {level: defaults, only_default: 1}
hosts:
  vps:
    host: 127.0.0.1
    groups: [web, db]
    vars: {level: host}
  stage:
    host: 127.0.0.2
    user: stage
    port: 22
    identity_file: keys/stage
groups:
  web: {vars: {level: web, web_var: w}}
  db: {vars: {level: db, db_var: d}, hosts: [stage]}
secrets:
  db_password: {command: "pass show app/db"}
"""


def write(tmp_path, text, name="inventory.yml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_native_inventory(tmp_path):
    write(tmp_path, NATIVE)
    inv = load_inventory(None, str(tmp_path))
    vps = inv.hosts["vps"]
    assert (vps.address, vps.user, vps.port) == ("127.0.0.1", "deploy", 2200)
    # defaults < groups (in the host's order) < host
    assert vps.vars == {"level": "host", "only_default": 1, "web_var": "w", "db_var": "d"}
    assert vps.known_hosts == [str(tmp_path / "known_hosts")]
    stage = inv.hosts["stage"]
    assert stage.groups == ["db"] and stage.vars["level"] == "db"
    assert stage.identity_file == str(tmp_path / "keys" / "stage")
    assert inv.secret_commands == {"db_password": "pass show app/db"}
    assert len(inv.digest) == 64 and inv.path.endswith("inventory.yml")


def test_resolve_targets(tmp_path):
    inv = load_inventory(str(write(tmp_path, NATIVE)), str(tmp_path))
    assert [h.name for h in inv.resolve(None)] == ["vps"]
    assert [h.name for h in inv.resolve("db")] == ["vps", "stage"]
    assert [h.name for h in inv.resolve("stage")] == ["stage"]
    assert [h.name for h in inv.resolve("all")] == ["vps", "stage"]
    assert [h.name for h in inv.resolve("stage,vps,db")] == ["stage", "vps"]


def test_unknown_target_lists_hosts_and_groups(tmp_path):
    inv = load_inventory(str(write(tmp_path, NATIVE)), str(tmp_path))
    with pytest.raises(InputError) as info:
        inv.resolve("vsp")
    problem = info.value.problems[0]
    assert "unknown host or group `vsp`" in problem.message
    assert "did you mean `vps`" in problem.hint
    assert "hosts: vps, stage" in problem.hint and "groups: web, db" in problem.hint


def test_only_host_is_default_and_ambiguity_is_an_error(tmp_path):
    inv = load_inventory(str(write(tmp_path, "hosts: {a: {host: 127.0.0.1}}\n")), ".")
    assert [h.name for h in inv.resolve(None)] == ["a"]
    inv = load_inventory(str(write(tmp_path, "hosts: {a: {}, b: {}}\n", "two.yml")), ".")
    with pytest.raises(InputError, match="no --host given"):
        inv.resolve(None)


def test_ssh_config_alias(tmp_path, monkeypatch):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host *\n  ServerAliveInterval 5\nHost myvps other\n  HostName 127.0.0.9\n")
    monkeypatch.setenv("DEPLOYER_SSH_CONFIG", str(cfg))
    assert ssh_config_aliases() == ["myvps", "other"]
    inv = load_inventory(str(write(tmp_path, NATIVE)), str(tmp_path))
    (host,) = inv.resolve("myvps")
    assert host.ssh_config_alias and host.address == "myvps" and host.user is None
    assert host.vars["level"] == "defaults"
    monkeypatch.setenv("DEPLOYER_SSH_CONFIG", "none")
    with pytest.raises(InputError):
        inv.resolve("myvps")


def test_missing_inventory_hints_dash_i(tmp_path):
    with pytest.raises(InputError) as info:
        load_inventory(None, str(tmp_path))
    assert "inventory not found" in str(info.value)
    assert "-i" in info.value.problems[0].hint


def test_inventory_problems_all_reported_with_positions(tmp_path):
    path = write(tmp_path, """\
        default_host: nope
        hosts:
          vps: {host: 127.0.0.1, prot: 22, port: x}
        groups:
          web: {hosts: [vsp]}
        """)
    with pytest.raises(InputError) as info:
        load_inventory(str(path), str(tmp_path))
    text = str(info.value)
    assert "inventory.yml:3:26: hosts.vps.prot: unknown field `prot`" in text
    assert "did you mean `port`" in text
    assert "hosts.vps.port: expected an integer" in text
    assert "unknown host `vsp`" in text
    assert "default_host `nope`" in text


def test_ansible_inventory(tmp_path):
    path = write(tmp_path, """\
        all:
          vars: {level: all, a: 1}
          hosts:
            solo: {ansible_host: 127.0.0.5}
          children:
            prod:
              vars: {level: prod}
              children:
                web:
                  vars: {level: web}
                  hosts:
                    web1: {ansible_host: 127.0.0.3, ansible_user: deploy, ansible_port: 2222,
                           level: host}
                    web2:
                      ansible_host: 127.0.0.4
        """)
    inv = load_inventory(str(path), str(tmp_path))
    assert inv.format == "ansible"
    web1 = inv.hosts["web1"]
    assert (web1.address, web1.user, web1.port) == ("127.0.0.3", "deploy", 2222)
    assert web1.vars == {"level": "host", "a": 1}
    assert inv.hosts["web2"].vars["level"] == "web"
    assert sorted(inv.hosts["web2"].groups) == ["prod", "web"]
    assert inv.hosts["solo"].vars["level"] == "all"
    assert [h.name for h in inv.resolve("prod")] == ["web1", "web2"]


SSH_CONFIG = """\
# scratch ssh config: loopback only
Host myvps
  HostName 127.0.0.9
  Port 2299
  User alice
Host bare
  HostName %h.internal
Host *.internal !skip.internal
  Port=2022
Host *
  User fallback
  Port 2200
"""


def test_ssh_config_lookup_follows_openssh_rules(tmp_path, monkeypatch):
    from deployer.inventory import ssh_config_lookup

    cfg = tmp_path / "ssh_config"
    cfg.write_text(SSH_CONFIG)
    monkeypatch.setenv("DEPLOYER_SSH_CONFIG", str(cfg))
    # first value obtained wins, later `Host *` only fills the gaps
    assert ssh_config_lookup("myvps") == {"hostname": "127.0.0.9", "port": "2299",
                                          "user": "alice"}
    assert ssh_config_lookup("bare") == {"hostname": "bare.internal", "user": "fallback",
                                         "port": "2200"}
    assert ssh_config_lookup("a.internal")["port"] == "2022"  # `Key=Value` form
    assert ssh_config_lookup("skip.internal")["port"] == "2200"  # negated pattern
    assert ssh_config_aliases() == ["myvps", "bare"]
    monkeypatch.setenv("DEPLOYER_SSH_CONFIG", "none")
    assert ssh_config_lookup("myvps") == {} and ssh_config_aliases() == []


def test_ssh_endpoint_resolves_aliases_like_the_transport(tmp_path, monkeypatch):
    from deployer.inventory import ssh_endpoint

    cfg = tmp_path / "ssh_config"
    cfg.write_text(SSH_CONFIG)
    monkeypatch.setenv("DEPLOYER_SSH_CONFIG", str(cfg))
    inv = load_inventory(str(write(tmp_path, NATIVE)), str(tmp_path))
    (alias,) = inv.resolve("myvps")
    assert (alias.address, alias.port) == ("myvps", 22)  # the transport looks it up
    assert ssh_endpoint(alias) == ("alice", "127.0.0.9", 2299)
    # the inventory's own port and user win over the ssh config's (as in the transport)
    (vps,) = inv.resolve("vps")
    assert ssh_endpoint(vps) == ("deploy", "127.0.0.1", 2200)
    (stage,) = inv.resolve("stage")  # port 22 in the inventory: ssh config's Port wins
    assert ssh_endpoint(stage) == ("stage", "127.0.0.2", 2200)


def test_ssh_config_lookup_agrees_with_paramiko(tmp_path):
    """The transport resolves with paramiko; the plan with the small reader."""
    from paramiko.config import SSHConfig

    from deployer.inventory import ssh_config_lookup

    cfg = tmp_path / "ssh_config"
    cfg.write_text(SSH_CONFIG)
    for name in ("myvps", "bare", "a.internal", "skip.internal", "other"):
        theirs = SSHConfig.from_path(str(cfg)).lookup(name)
        ours = ssh_config_lookup(name, str(cfg))
        for key in ("port", "user"):
            assert ours.get(key) == theirs.get(key), (name, key)
        assert ours.get("hostname", name) == theirs["hostname"], name
