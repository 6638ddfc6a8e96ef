"""What the host state directory holds, as plain data: audit events and releases.

Both are written as one JSON object per line. Nothing here sees secrets: callers pass
values already masked by the redactor (the audit log lives on a server other people may
read as root).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from deployer.state import now_iso, operator


@dataclass(frozen=True)
class AuditEvent:
    """One line of ``audit.jsonl``: who did what to the host, when, from where.

    ``event`` is one of: ``run_started``, ``step`` (a step transition: ``step`` and
    ``state`` set), ``rollback_started``, ``undo``, ``run_finished`` (``result`` set),
    ``approved`` (``plan_digest`` set), ``maintenance``, ``lock_taken_over``.
    """

    event: str
    run_id: str
    runbook: str
    host: str
    step: str = ""
    state: str = ""
    result: str = ""
    plan_digest: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    who: str = field(default_factory=operator)
    at: str = field(default_factory=now_iso)

    def to_json(self) -> str:
        # Not asdict(): its deep copy is most of the cost, at every step transition.
        data = {k: v for k in self.__dataclass_fields__
                if (v := getattr(self, k)) not in ("", {}, None)}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEvent:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class Release:
    """One successful deploy: what the host runs since then.

    ``images`` maps a compose service to its image id (``sha256:...``, plus
    ``@digest`` where the image has a repo digest); ``revision`` is the code revision
    (a git commit) or, for synced code, a digest of the tree; the env file and the
    runbook are recorded by digest only.
    """

    number: int
    run_id: str
    runbook: str
    host: str
    revision: str = ""
    images: dict[str, str] = field(default_factory=dict)
    migration_revision: str = ""
    env_digest: str = ""
    runbook_digest: str = ""
    who: str = field(default_factory=operator)
    at: str = field(default_factory=now_iso)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Release:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)
