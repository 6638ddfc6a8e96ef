"""SSHTransport satisfies the Transport Protocol, and deployer/ssh/ is the only package
that imports paramiko, Fabric or invoke."""

from __future__ import annotations

import ast
from pathlib import Path

from deployer.faketransport import FakeTransport
from deployer.models import Host
from deployer.ssh import SSHTransport
from deployer.transport import Transport

PACKAGE = Path(__file__).resolve().parents[2] / "deployer"
SSH_LIBRARIES = {"paramiko", "fabric", "invoke"}


def test_ssh_transport_satisfies_the_protocol() -> None:
    # The annotated assignment is what mypy checks; isinstance checks the members.
    t: Transport = SSHTransport(Host(name="h", address="127.0.0.1", user="u", port=2200),
                                ssh_config=None, user_known_hosts=None)
    assert isinstance(t, Transport)
    assert t.label == "h (u@127.0.0.1:2200)" and t.current_process is None
    assert t.host_key_fingerprint is None  # not connected yet
    t.close()  # closing an unconnected transport is fine


def test_protocol_members_are_what_both_implementations_have() -> None:
    members = [m for m in dir(Transport) if not m.startswith("_")]
    members += list(Transport.__annotations__)
    fake = FakeTransport()
    ssh = SSHTransport(Host(name="h", address="127.0.0.1"), ssh_config=None,
                       user_known_hosts=None)
    for name in members:
        assert hasattr(fake, name) and hasattr(ssh, name), name


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
            if node.module == "deployer":
                found |= {f"deployer.{a.name}" for a in node.names}
            elif node.module.startswith("deployer."):
                found.add(node.module)
    return found


def test_only_the_ssh_package_imports_ssh_libraries() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if PACKAGE / "ssh" in path.parents:
            continue
        if used := _imports(path) & SSH_LIBRARIES:
            offenders.append(f"{path.relative_to(PACKAGE)}: {sorted(used)}")
    assert offenders == []


def test_the_seam_and_the_fake_do_not_depend_on_the_ssh_package() -> None:
    for name in ("transport.py", "faketransport.py"):
        used = _imports(PACKAGE / name)
        assert not any(u == "deployer.ssh" or u.startswith("deployer.ssh.") for u in used)
        assert not used & SSH_LIBRARIES
