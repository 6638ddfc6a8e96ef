"""A run's way onto its host, before anything is recorded: connect, preflight, lock,
stop what a killed run left, resolve the host facts.

The connection opens up front (so a bad host fails before anything runs) unless every
step runs locally and no lock is taken; it then opens on first use. ``deployer run``
runs the cheap preflight (``diagnose.doctor.cheap_preflight``: its errors refuse the
run, its warnings become notices) unless ``--skip-preflight``; a rollback does not.
The lock's acquisition is posted ahead of the preflight's probe (one round trip for
both; a refused preflight still releases it), and read back next (``--resume`` and
``rollback`` take over the one their run left),
then the command a killed run left is stopped (``RemoteGuard.stop_recorded``), and
the host facts the selected steps need (the compose flavour first) are set, from the
answers of their probes, which were posted ahead with the lock.
Anything here raises before the record exists: a refused run leaves no history.
"""

from __future__ import annotations

from typing import Any

from deployer.connection import HostConnection
from deployer.models import Host, Runbook
from deployer.perform import Performer
from deployer.remote_guard import RemoteGuard
from deployer.run_output import RunOutput
from deployer.selection import Selection
from deployer.state import RunRecord


class HostOpening:
    """Opens one run on ``host``: ``variables`` is the run's own mapping (facts are
    set in it); ``force``: ``--force``."""

    def __init__(self, runbook: Runbook, host: Host, link: HostConnection,
                 guard: RemoteGuard, performer: Performer, variables: dict[str, Any],
                 output: RunOutput, *, skip_preflight: bool, force: bool) -> None:
        self.runbook = runbook
        self.host = host
        self.link = link
        self.guard = guard
        self.performer = performer
        self.variables = variables
        self.output = output
        self.skip_preflight = skip_preflight
        self.force = force

    def open(self, run_id: str, purpose: str, prev: RunRecord | None,
             selection: Selection) -> None:
        """Connect, preflight (``purpose`` "run" only), lock, stop what ``prev`` left
        running, resolve the facts the ``selection`` needs."""
        posted: dict[str, list[Any]] = {}
        if self.needs_connection():
            transport = self.link.transport()
            if self.runbook.lock:
                # Taken before the read-only preflight, in the same round trip.
                self.link.post_lock(self.variables, run_id, self.runbook.name, purpose)
            posted = self.post_facts(transport, selection)
            if not self.skip_preflight and purpose == "run":
                self.preflight()
        if self.runbook.lock:
            self.link.take_lock(self.variables, run_id, self.runbook.name, purpose,
                                takeover_run_id=prev.id if prev is not None else None)
        if prev is not None and prev.remote_process:
            self.guard.stop_recorded(prev, self.force)
        # a rollback runs compose too (built-in image restore, explicit undo bodies)
        self.resolve_facts(selection, posted)

    def needs_connection(self) -> bool:
        """Whether the host is reached before the first step: a lock, a remote step,
        or a local step's ``skip_if`` (it runs on the host)."""
        if self.runbook.lock:
            return True
        return any(s.kind != "local" or s.skip_if for s in self.runbook.steps)

    def preflight(self) -> None:
        """The cheap checks; ``InputError`` listing the failed ones."""
        # Loaded here: the doctor's probes are not needed by commands that never run.
        from deployer.diagnose.doctor import cheap_preflight
        from deployer.errors import InputError

        problems = cheap_preflight(self.runbook, self.host, self.link.transport(),
                                   variables=self.variables)
        failed = [p for p in problems if p.severity == "error"]
        for p in problems:
            if p not in failed:
                self.output.notice(f"preflight: {p}", "warning")
        if failed:
            hint = "fix the host, or skip these checks with --skip-preflight"
            # A Check is Problem-shaped (severity, str()): what InputError shows.
            raise InputError(list(failed), hint=hint)  # type: ignore[arg-type]

    def needed_facts(self, selection: Selection) -> list[str]:
        from deployer.facts import needed

        steps = (s for i, s in enumerate(self.runbook.steps) if selection.selected(i))
        return needed(steps, self.variables)

    def post_facts(self, transport: Any, selection: Selection) -> dict[str, list[Any]]:
        """Send the facts' probes ahead: read-only, they ride with the preflight."""
        from deployer.facts import post_probes

        return post_probes(transport, self.needed_facts(selection), self.variables)

    def resolve_facts(self, selection: Selection,
                      posted: dict[str, list[Any]] | None = None) -> None:
        """Set the host facts the selected steps need and the variables do not pin:
        from the answers of the probes posted ahead, else probed now."""
        from deployer.facts import resolve

        transport = self.link.current_transport()
        resolve(self.performer, self.needed_facts(selection), self.variables, self.host.name,
                notice=self.output.notice, posted=posted,
                collect=transport.collect if transport is not None else None)


__all__ = ["HostOpening"]
