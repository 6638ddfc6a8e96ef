"""deployer: reviewable, resumable, reversible YAML runbooks over SSH."""

__version__ = "0.1.0"
