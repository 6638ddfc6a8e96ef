"""Test suite of deployer (a package so helpers import as ``tests.sshd``)."""
