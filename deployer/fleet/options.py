"""The scheduling options of a fleet run, checked: ``--parallel``, ``--batch-size``
(rolling batches) and ``--max-fail`` (the failure budget)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from deployer.errors import UsageError
from deployer.models import Host


def parse_max_fail(value: str | int | None, total: int) -> int:
    """How many failed hosts are tolerated before no new host starts.

    ``None`` -> 0 (stop starting hosts after the first failure). ``"N"`` -> N.
    ``"P%"`` -> floor(P% of ``total``), so ``"100%"`` never stops and ``"0%"`` stops at
    the first failure. Raises ``UsageError`` for anything else.
    """
    if value is None:
        return 0
    if isinstance(value, int):
        if value < 0:
            raise UsageError(f"--max-fail must be >= 0, not {value}")
        return value
    text = str(value).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 <= pct <= 100:
                raise ValueError
            return math.floor(pct * total / 100 + 1e-9)
        count = int(text)
        if count < 0:
            raise ValueError
        return count
    except ValueError:
        raise UsageError(
            f"--max-fail {value!r} is not a count or a percentage",
            hint="use e.g. --max-fail 2 (hosts) or --max-fail 20% (of the hosts in this run)",
        ) from None


def check_positive(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise UsageError(f"{name} must be a whole number >= 1, not {value!r}")


def fleet_width(parallel: int | None, batch_size: int | None) -> int:
    """How many hosts run at once: ``parallel`` (default: the batch size when rolling,
    else 1), capped by the batch size."""
    width = parallel or batch_size or 1
    return min(width, batch_size) if batch_size else width


def batches_of(hosts: Sequence[Host], batch_size: int | None) -> list[list[Host]]:
    """Hosts cut into rolling batches, order kept (one batch when not rolling)."""
    if not hosts:
        return []
    if not batch_size:
        return [list(hosts)]
    return [list(hosts[i : i + batch_size]) for i in range(0, len(hosts), batch_size)]


__all__ = ["batches_of", "check_positive", "fleet_width", "parse_max_fail"]
