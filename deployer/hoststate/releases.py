"""A release from a successful run: what the run's ``release_facts`` step saw on the host.

The shipped runbooks end with a step (``runbooks/parts/release.yml``) that prints one
JSON object, captured as ``release_facts``: the code revision (git commit, or a digest
of the synced tree), the image of every running service, the migration revision and a
digest of each env file. A run without that capture (a runbook of your own) records no
release; its audit lines and record are kept all the same.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from deployer.hoststate.records import Release
from deployer.state import RunRecord

FACTS_CAPTURE = "release_facts"

# Digest kinds that describe the deploy's logic, not the host or the operator's inputs.
_LOGIC = ("runbook:", "include:", "template:")


def facts_of(record: RunRecord) -> dict[str, Any] | None:
    """The parsed ``release_facts`` capture, or None (absent, masked or not JSON)."""
    raw = record.captured().get(FACTS_CAPTURE)
    if not raw or raw == "***":
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def logic_digest(digests: dict[str, str]) -> str:
    """One digest of the runbook, its includes and templates (the plan's digests)."""
    items = sorted((k, v) for k, v in digests.items() if k.startswith(_LOGIC))
    blob = json.dumps(items, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16] if items else ""


def release_for(record: RunRecord, number: int) -> Release | None:
    """Release ``number`` made by ``record``, if it succeeded and captured its facts."""
    facts = facts_of(record)
    if facts is None or not record.finished_ok:
        return None
    images = facts.get("images")
    env = facts.get("env_digests")
    return Release(
        number=number, run_id=record.id, runbook=record.runbook, host=record.host,
        revision=str(facts.get("revision") or ""),
        images={str(k): str(v) for k, v in images.items()} if isinstance(images, dict) else {},
        migration_revision=str(facts.get("migration_revision") or ""),
        env_digest=(json.dumps(env, sort_keys=True, separators=(",", ":"))
                    if isinstance(env, dict) else str(env or "")),
        runbook_digest=logic_digest(record.digests),
        who=record.operator)


def current_release(releases: list[Release], status_of: dict[str, str]) -> Release | None:
    """The release the host runs now: the newest whose run was not rolled back since."""
    for release in reversed(releases):
        if status_of.get(release.run_id, "succeeded") == "succeeded":
            return release
    return None


def undo_chain(releases: list[Release], to: str, status_of: dict[str, str],
               keep: int | None = None) -> list[Release]:
    """The releases to undo, newest first, to bring the host back to release ``to`` (a
    number, or ``previous``: the one before the current). ``keep``: how many releases
    back the host keeps what a rollback may need (the shipped runbooks' ``backup_keep``
    backups); an older target is not a rollback target. Raises ``ValueError`` with the
    reason when there is no such target."""
    now = current_release(releases, status_of)
    if now is None:
        raise ValueError("no release is current on the host (none recorded, or all rolled "
                         "back)")
    live = [r for r in releases if status_of.get(r.run_id, "succeeded") == "succeeded"]
    if to == "previous":
        older = [r for r in live if r.number < now.number]
        if not older:
            raise ValueError(f"release {now.number} is the first one still applied: there "
                             "is no previous release to go back to")
        target = older[-1].number
    elif to.isdigit():
        target = int(to)
        if target not in {r.number for r in releases}:
            raise ValueError(f"there is no release {target} (releases: "
                             f"{', '.join(str(r.number) for r in releases)})")
        if target not in {r.number for r in live}:
            raise ValueError(f"release {target} was rolled back itself: its changes are "
                             "not applied any more, so it cannot be gone back to")
        if target >= now.number:
            raise ValueError(f"release {target} is not older than the current release "
                             f"{now.number}")
    else:
        raise ValueError(f"--to {to!r}: a release number, or `previous`")
    chain = [r for r in reversed(live) if r.number > target]
    if keep is not None and len(chain) > keep:
        raise ValueError(f"release {target} is {len(chain)} releases back, more than the "
                         f"{keep} whose backups the host keeps (var backup_keep): a "
                         "downgrade that fails could not fall back to a backup; go back "
                         f"at most {keep} releases, or raise backup_keep for the future")
    return chain
