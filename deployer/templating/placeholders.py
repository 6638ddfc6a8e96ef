"""Captured values before they are captured: the placeholder a plan shows for one, and
the names a runbook's steps capture."""

from __future__ import annotations

from deployer.models import Runbook, Step


def captured_placeholder(name: str) -> str:
    """What a value captured at run time looks like in a plan."""
    return f"<captured: {name}>"


_CAPTURES: dict[int, tuple[list[Step], tuple[str, ...]]] = {}


def capture_names(runbook: Runbook) -> tuple[str, ...]:
    """The names the runbook's steps capture, computed once per runbook: a plan builds a
    context per step, and scanning every step each time would make planning N^2."""
    cached = _CAPTURES.get(id(runbook))
    # Keyed by id(): kept only while it is the same step list, since a freed runbook's
    # id can be reused by another.
    if cached is not None and cached[0] is runbook.steps:
        return cached[1]
    names = tuple(dict.fromkeys(s.capture for s in runbook.steps if s.capture))
    if len(_CAPTURES) > 64:
        _CAPTURES.clear()
    _CAPTURES[id(runbook)] = (runbook.steps, names)
    return names
