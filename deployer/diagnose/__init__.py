"""Failure diagnosis: the catalogue of known failure classes, the matcher that names
the likely root cause and fix for failing output (``diagnose``, ``explain_text``), and
the host preflight checks of ``deployer doctor`` (``deployer.diagnose.doctor``).

Everything here returns data; ``deployer/cli/explain.py`` and ``deployer/cli/doctor.py``
render it.
"""

from deployer.diagnose.matcher import (
    Diagnosis,
    Entry,
    Sample,
    diagnose,
    explain_lines,
    explain_text,
    load_catalogue,
    mask_credentials,
    project_context,
)

__all__ = [
    "Diagnosis",
    "Entry",
    "Sample",
    "diagnose",
    "explain_lines",
    "explain_text",
    "load_catalogue",
    "mask_credentials",
    "project_context",
]
