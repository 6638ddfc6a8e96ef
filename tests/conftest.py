"""Shared pytest fixtures: real OpenSSH servers on loopback (see tests/sshd.py).

Kept small and generic; other suites may add fixtures at the end of this file.

- ``sshd``: one session-wide server on 127.0.0.1 (``SshServer``); ``sshd.host()``
  gives a ready ``deployer.models.Host``.
- ``make_sshd(addresses=["127.0.0.2"], user=None, extra_config="")``: more servers
  (up to 16 addresses each), stopped after the test. Use one of these, not ``sshd``,
  for tests that call ``kill_sessions()`` or change the server.

Every test runs with ``DEPLOYER_SSH_CONFIG=none`` and ``DEPLOYER_KNOWN_HOSTS=none`` and
without ``SSH_AUTH_SOCK``, so deployer never reads the user's ~/.ssh/config,
~/.ssh/known_hosts or agent: hosts carry their identity file and known_hosts explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.sshd import SshServer


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
