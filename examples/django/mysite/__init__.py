"""Example Django site deployed by deployer's shipped runbooks (examples/django)."""

__version__ = "1.0.0"
