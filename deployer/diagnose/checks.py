"""What a doctor check returns (``Check``), how each check is documented
(``CheckInfo``), the four statuses, and the thresholds and small helpers the probe,
port and input checks share. Plain data; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)

# Defaults of the thresholds; each can be overridden by the var of the same name.
THRESHOLDS: dict[str, float] = {
    "doctor_disk_warn_mb": 2048,
    "doctor_disk_fail_mb": 500,
    "doctor_disk_warn_pct": 10,
    "doctor_disk_fail_pct": 5,
    "doctor_inodes_warn_pct": 10,
    "doctor_inodes_fail_pct": 5,
    "doctor_clock_warn_s": 2,
    "doctor_clock_fail_s": 30,
}


@dataclass(frozen=True)
class Check:
    """One preflight finding: what was checked, the verdict, and the fix when not ok."""

    id: str
    title: str
    status: str
    detail: str
    fix: str = ""

    @property
    def severity(self) -> str:
        """Problem-style severity, so a list of checks can feed ``InputError``."""
        return {FAIL: "error", WARN: "warning"}.get(self.status, "info")

    @property
    def hint(self) -> str:
        return self.fix

    def __str__(self) -> str:
        text = f"{self.title}: {self.detail}"
        if self.fix and self.status in (WARN, FAIL):
            text += f" (fix: {self.fix})"
        return text

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "status": self.status,
                "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class CheckInfo:
    """Documentation of one check (rendered into docs/diagnosis.md)."""

    id: str
    title: str
    how: str
    verdicts: str
    cheap: bool = False
    preflight: str = ""  # when the run preflight makes it, if not always or never




def _threshold(variables: Mapping[str, Any], name: str) -> float:
    value = variables.get(name, THRESHOLDS[name])
    try:
        return float(value)
    except (TypeError, ValueError):
        return THRESHOLDS[name]


def _truthy(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _catalogue_fix(text: str, default: str) -> tuple[str, str]:
    """(title, fix) of the best catalogue diagnosis of ``text``, for failures we can name."""
    from deployer.diagnose.matcher import diagnose

    found = diagnose(text)
    if found:
        return found[0].title, " ".join(found[0].fix.split())
    return "", default


def _fmt_mb(kb: int) -> str:
    mb = kb / 1024
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


