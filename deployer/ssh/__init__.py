"""The SSH implementation of ``deployer.transport.Transport``: the only package that
imports paramiko or Fabric (lazily, so CLI startup stays light)."""

from deployer.ssh.transport import SSHTransport

__all__ = ["SSHTransport"]
