"""Command-line interface: click commands, lazily imported, and their rendering.

This package is the only place in deployer that prints.
"""
