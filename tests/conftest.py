"""Shared pytest fixtures: real OpenSSH servers on loopback (see tests/sshd.py).

Kept small and generic; other suites may add fixtures at the end of this file.

- ``sshd``: one session-wide server on 127.0.0.1 (``SshServer``); ``sshd.host()``
  gives a ready ``deployer.models.Host``.
- ``make_sshd(addresses=["127.0.0.2"], user=None, extra_config="", log_level="INFO")``:
  more servers (up to 16 addresses each), stopped after the test. Use one of these, not
  ``sshd``, for tests that call ``kill_sessions()`` or change the server.
- ``sudo_user``: ``(server, password)``: a throwaway login user whose ``sudo`` asks for
  a password, and an sshd that lets it in (root only; skipped otherwise).

Timeouts (pytest-timeout, the default in pyproject.toml): an e2e test counts only its
own body, because the session fixtures land in whichever e2e test runs first (the
sandbox's first ``up`` takes minutes) and bound themselves with their own timeouts.

Every test runs with ``DEPLOYER_SSH_CONFIG=none`` and ``DEPLOYER_KNOWN_HOSTS=none`` and
without ``SSH_AUTH_SOCK``, so deployer never reads the user's ~/.ssh/config,
~/.ssh/known_hosts or agent: hosts carry their identity file and known_hosts explicitly.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.sshd import SshServer


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("timeout"):
        return
    # The effective default (command line over pyproject), so `--timeout 0` still
    # disables it for a debugging session.
    default = config.getoption("timeout", default=None)
    if default is None:
        default = config.getini("timeout")
    for item in items:
        if item.get_closest_marker("e2e") and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(float(default or 0), func_only=True))


@pytest.fixture(scope="session", autouse=True)
def _isolate_user_ssh() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("DEPLOYER_SSH_CONFIG", "DEPLOYER_KNOWN_HOSTS",
                                            "SSH_AUTH_SOCK")}
    os.environ["DEPLOYER_SSH_CONFIG"] = "none"
    os.environ["DEPLOYER_KNOWN_HOSTS"] = "none"
    os.environ.pop("SSH_AUTH_SOCK", None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = SshServer(tmp_path_factory.mktemp("sshd"), addresses=["127.0.0.1"]).start()
    yield server
    server.stop()


@pytest.fixture
def make_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., SshServer]]:
    servers: list[SshServer] = []

    def make(addresses: list[str] | tuple[str, ...] = ("127.0.0.2",), **kwargs) -> SshServer:
        server = SshServer(tmp_path_factory.mktemp("sshd"), addresses=addresses, **kwargs)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def sudo_user(make_sshd, tmp_path: Path):
    """A throwaway login user whose sudo needs a password (root only: creates the user
    and a sudoers rule, removes both afterwards)."""
    if os.getuid() != 0:
        pytest.skip("creating a sudo user needs root (CI runs as root)")
    assert os.path.exists("/usr/bin/sudo"), "sudo is required: apt-get install sudo"
    name = "dpl" + os.urandom(3).hex()
    password = "pw-" + os.urandom(8).hex()
    rule = Path(f"/etc/sudoers.d/{name}")
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        rule.write_text(f"{name} ALL=(ALL) ALL\nDefaults:{name} lecture=never\n")
        os.chmod(rule, 0o440)
        server = make_sshd(user=name)
        home = Path(f"/home/{name}")
        (home / ".ssh").mkdir(mode=0o700)
        (home / ".ssh" / "authorized_keys").write_text(Path(server.client_key + ".pub").read_text())
        subprocess.run(["chown", "-R", f"{name}:{name}", str(home / ".ssh")], check=True)
        yield server, password
    finally:
        rule.unlink(missing_ok=True)
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", "-r", name], capture_output=True)
