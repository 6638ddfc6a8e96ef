"""Multi-host orchestration: run one runbook on many hosts, in parallel or in rolling
batches, with a failure budget, and aggregate per-host results.

Each host is run by a ``run_one(host) -> HostOutcome`` callable (``deployer.app`` builds it
around the executor), so every host has its own connection, checkpoint, lock and
rollback: a failure on one host never touches another. This module only schedules,
collects and records; it never prints. Progress reaches the CLI as ``FleetEvent``s.

Scheduling rules (documented for operators in docs/multi-host.md):

- hosts start in the given (inventory) order; at most ``width`` run at once, where
  ``width`` is ``parallel`` (default: ``batch_size`` when rolling, else 1), capped by
  the batch size;
- with ``batch_size`` K, hosts are cut into batches of K and a batch starts only when
  the previous batch has finished and the failure budget still holds; with the default
  budget of 0 that means "the whole previous batch succeeded";
- ``max_fail`` ("N" or "P%") is the failure budget over the whole run; once more hosts
  than that have failed, no new host is started. Hosts already running finish (and
  roll back) on their own; hosts never started are reported as ``not_started``;
- Ctrl-C (or SIGTERM) stops starting hosts and asks the running ones to stop
  (``on_interrupt``); a second one stops waiting for them;
- with ``fleet_rollback="all"`` (the runbook's ``fleet_rollback: all``), once the
  failure budget is exceeded and every running host has finished, each host that
  finished ok in this fleet run (and each host a ``--resume`` skipped because an earlier
  part of it finished it) is rolled back by ``roll_back_one``, the same path as
  ``deployer rollback``. Not after Ctrl-C: the operator asked to stop, not to undo.

Exit code of a fleet run: the worst per-host code, ordered by how much attention the
operator owes the fleet (``EXIT_SEVERITY``): 0 < 4 (lock held, nothing done) < 2 (bad
input / host key, nothing done) < 1 (failed, rolled back) < 3 (failed, host left
changed) < 130 (interrupted). ``not_started`` hosts add nothing: the failure that
stopped them already sets the code.

A fleet record (``.deployer/fleets/<id>.json``, rewritten atomically when a host's run
starts and when it finishes) lets ``--resume`` on a group pick exactly the hosts that
did not finish.
"""

from __future__ import annotations

import functools
import getpass
import json
import math
import os
import secrets as _secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deployer.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_ROLLED_BACK,
    EXIT_USAGE,
    DeployerError,
    HostKeyError,
    LockHeldError,
    TransportError,
    UsageError,
)
from deployer.interrupts import CTRL_C, interrupt_signals
from deployer.models import Host

# Per-host statuses.
OK = "ok"  # every step finished (or was skipped by its own condition)
ROLLED_BACK = "rolled_back"  # a step failed, rollback completed (exit 1)
FAILED = "failed"  # a step failed, rollback incomplete or not run (exit 3)
LOCKED = "locked"  # another run holds the host lock (exit 4)
ERROR = "error"  # bad input, refused host key, stale resume... nothing run (exit 2)
INTERRUPTED = "interrupted"  # Ctrl-C (exit 130)
NOT_STARTED = "not_started"  # never started: budget exceeded, batch failed, Ctrl-C
SKIPPED = "skipped"  # --resume: this host already finished ok

STATUSES = (OK, ROLLED_BACK, FAILED, LOCKED, ERROR, INTERRUPTED, NOT_STARTED, SKIPPED)
SUCCESS_STATUSES = frozenset({OK, SKIPPED})

# Higher = needs more attention; the fleet exit code is the per-host code ranked worst.
EXIT_SEVERITY: dict[int, int] = {
    EXIT_OK: 0,
    EXIT_LOCKED: 1,
    EXIT_USAGE: 2,
    EXIT_ROLLED_BACK: 3,
    EXIT_FAILED: 4,
    EXIT_INTERRUPTED: 5,
}

_STATUS_FOR_CODE = {
    EXIT_OK: OK,
    EXIT_ROLLED_BACK: ROLLED_BACK,
    EXIT_USAGE: ERROR,
    EXIT_FAILED: FAILED,
    EXIT_LOCKED: LOCKED,
    EXIT_INTERRUPTED: INTERRUPTED,
}

# Summary order: what the operator must look at first.
_SUMMARY_RANK = {FAILED: 0, INTERRUPTED: 1, ROLLED_BACK: 2, ERROR: 3, LOCKED: 4,
                 NOT_STARTED: 5, OK: 6, SKIPPED: 7}


@dataclass
class HostOutcome:
    """The result of one host in a fleet run (JSON-friendly via ``to_dict``)."""

    host: str
    status: str
    exit_code: int
    run_id: str | None = None
    failed_step: str | None = None
    diagnosis: Any = None  # str or a JSON-friendly dict from deployer.diagnose
    message: str = ""
    duration: float = 0.0
    steps_done: int = 0
    steps_total: int = 0
    address: str = ""
    # Set when fleet_rollback: all rolled this host back: the hosts whose failure did.
    rolled_back_for: list[str] | None = None

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS_STATUSES

    @property
    def counts_as_failure(self) -> bool:
        return self.status not in SUCCESS_STATUSES and self.status != NOT_STARTED

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration"] = round(self.duration, 3)
        return data


def status_for_exit_code(code: int) -> str:
    """The host status a bare exit code stands for (unknown codes count as failed)."""
    return _STATUS_FOR_CODE.get(code, FAILED)


def outcome_from_error(host: Host, error: BaseException) -> HostOutcome:
    """Turn an exception that escaped ``run_one`` into that host's outcome, so one
    host's problem (refused key, lock held, dead connection, even a bug) never stops
    the scheduler or hides the other hosts' results."""
    if isinstance(error, LockHeldError):
        status, code = LOCKED, EXIT_LOCKED
    elif isinstance(error, HostKeyError):
        status, code = ERROR, EXIT_USAGE
    elif isinstance(error, TransportError):
        # The connection died: whether steps ran is unknown, so the host needs a look.
        status, code = FAILED, EXIT_FAILED
    elif isinstance(error, DeployerError):
        code = error.exit_code
        status = status_for_exit_code(code)
    elif isinstance(error, KeyboardInterrupt):
        status, code = INTERRUPTED, EXIT_INTERRUPTED
    else:
        status, code = FAILED, EXIT_FAILED
    message = str(error) if isinstance(error, DeployerError) else (
        f"internal error: {type(error).__name__}: {error}")
    hint = getattr(error, "hint", "")
    return HostOutcome(host=host.name, address=host.address, status=status, exit_code=code,
                       message=message, diagnosis=hint or None)


def worst_exit_code(codes: Iterable[int]) -> int:
    """The code ranked worst by ``EXIT_SEVERITY`` (unknown codes rank as 3)."""
    worst = EXIT_OK
    for code in codes:
        rank = EXIT_SEVERITY.get(code, EXIT_SEVERITY[EXIT_FAILED])
        if rank > EXIT_SEVERITY.get(worst, EXIT_SEVERITY[EXIT_FAILED]):
            worst = code
    return worst


# -- options --------------------------------------------------------------------------


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


def _check_positive(name: str, value: int | None) -> None:
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


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetEvent:
    """Progress for the CLI. ``kind`` is one of:

    ``batch_start`` (batch, hosts), ``host_start`` (host), ``host_done`` (host,
    outcome), ``stop`` (message: why no new host will start), ``interrupt`` (message),
    ``fleet_rollback`` (message, hosts: the hosts about to be rolled back),
    ``rollback_start`` (host), ``rollback_done`` (host, outcome: the host's outcome
    after its rollback), ``done`` (message: one-line tally).
    """

    kind: str
    host: str | None = None
    batch: int | None = None
    hosts: tuple[str, ...] = ()
    outcome: HostOutcome | None = None
    message: str = ""


EventSink = Callable[[FleetEvent], None]


@dataclass
class FleetOutcome:
    """Per-host outcomes in the order hosts were given, plus the aggregate."""

    hosts: list[HostOutcome]
    exit_code: int
    stopped_reason: str | None = None
    interrupted: bool = False
    fleet_id: str | None = None
    duration: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    # fleet_rollback: all ran: {"because": failed hosts, "hosts": hosts rolled back}.
    fleet_rollback: dict[str, Any] | None = None

    def by_status(self, status: str) -> list[HostOutcome]:
        return [h for h in self.hosts if h.status == status]

    def counts(self) -> dict[str, int]:
        tally = {s: 0 for s in STATUSES}
        for h in self.hosts:
            tally[h.status] = tally.get(h.status, 0) + 1
        return {s: n for s, n in tally.items() if n}

    def for_summary(self) -> list[HostOutcome]:
        """Hosts needing attention first (failed, interrupted, rolled back, ...), each
        group in the original order."""
        indexed = list(enumerate(self.hosts))
        indexed.sort(key=lambda p: (_SUMMARY_RANK.get(p[1].status, 0), p[0]))
        return [h for _, h in indexed]

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def tally_line(self) -> str:
        parts = [f"{n} {s.replace('_', ' ')}" for s, n in self.counts().items()]
        return f"{len(self.hosts)} hosts: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fleet_id": self.fleet_id,
            "exit_code": self.exit_code,
            "ok": self.ok,
            "interrupted": self.interrupted,
            "stopped_reason": self.stopped_reason,
            "duration": round(self.duration, 3),
            "options": self.options,
            "counts": self.counts(),
            "fleet_rollback": self.fleet_rollback,
            "hosts": [h.to_dict() for h in self.hosts],
        }


# -- the scheduler --------------------------------------------------------------------


def run_fleet(
    hosts: Sequence[Host],
    run_one: Callable[[Host], HostOutcome],
    parallel: int | None = None,
    batch_size: int | None = None,
    max_fail: str | int | None = None,
    events: EventSink | None = None,
    skipped: Sequence[HostOutcome] = (),
    record: FleetRecord | None = None,
    on_interrupt: Callable[[int, str], None] | None = None,
    poll: float = 0.2,
    order: Sequence[str] = (),
    fleet_rollback: str = "host",
    roll_back_one: Callable[[HostOutcome, list[str]], HostOutcome] | None = None,
) -> FleetOutcome:
    """Run ``run_one`` for every host under the scheduling rules of this module.

    ``skipped`` are outcomes of hosts that are not run at all (``--resume`` found them
    finished); they are reported and recorded, not scheduled. ``order`` lists the host
    names in the order results are reported (the inventory order of the whole group,
    skipped hosts included); by default skipped hosts come first. ``record``
    (optional) is updated after every host. ``fleet_rollback="all"`` with
    ``roll_back_one(outcome, failed_hosts) -> HostOutcome`` rolls back the hosts that
    succeeded once failures stop the fleet (module docstring).
    ``on_interrupt(n, cause)`` is called on the n-th Ctrl-C or SIGTERM (``cause``
    names which) so the caller can stop its running executors (1: stop and roll back,
    2: abandon rollback).
    ``events`` is called from the scheduling thread only, one event at a time.
    """
    scheduler = FleetScheduler(
        hosts, run_one, parallel=parallel, batch_size=batch_size, max_fail=max_fail,
        events=events, skipped=skipped, record=record, on_interrupt=on_interrupt,
        poll=poll, order=order, fleet_rollback=fleet_rollback, roll_back_one=roll_back_one)
    return scheduler.run()


class _Workers:
    """Threads running one job per host; their results wait here for the scheduling
    thread, which alone touches the scheduler's state."""

    def __init__(self, poll: float) -> None:
        self.poll = poll
        self.busy: dict[str, HostOutcome | Host] = {}  # host name -> what it was given
        self._cond = threading.Condition()
        self._done: list[HostOutcome] = []

    def start(self, name: str, given: HostOutcome | Host, job: Callable[[], HostOutcome],
              thread_name: str) -> None:
        self.busy[name] = given
        threading.Thread(target=lambda: self._finished(job()), name=thread_name,
                         daemon=True).start()

    def _finished(self, out: HostOutcome) -> None:
        with self._cond:
            self._done.append(out)
            self._cond.notify_all()

    def wait(self) -> None:
        """Until a job finishes, at most ``poll`` seconds (signals are looked at then)."""
        with self._cond:
            if not self._done:
                self._cond.wait(self.poll)

    def take(self) -> list[HostOutcome]:
        """The jobs finished since the last call (no longer busy)."""
        with self._cond:
            done, self._done = self._done, []
        for out in done:
            self.busy.pop(out.host, None)
        return done


class FleetScheduler:
    """One fleet run under the scheduling rules of this module (see ``run_fleet`` for
    the arguments). All state is explicit and changed by the scheduling thread only;
    host threads (``_Workers``) just hand back outcomes."""

    def __init__(self, hosts: Sequence[Host], run_one: Callable[[Host], HostOutcome], *,
                 parallel: int | None = None, batch_size: int | None = None,
                 max_fail: str | int | None = None, events: EventSink | None = None,
                 skipped: Sequence[HostOutcome] = (), record: FleetRecord | None = None,
                 on_interrupt: Callable[[int, str], None] | None = None, poll: float = 0.2,
                 order: Sequence[str] = (), fleet_rollback: str = "host",
                 roll_back_one: Callable[[HostOutcome, list[str]], HostOutcome] | None = None,
                 ) -> None:
        _check_positive("--parallel", parallel)
        _check_positive("--batch-size", batch_size)
        names = [h.name for h in hosts]
        if fleet_rollback not in ("host", "all"):
            raise UsageError(f"fleet_rollback must be host or all, not {fleet_rollback!r}")
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise UsageError(f"host(s) listed more than once: {', '.join(dup)}")
        self.hosts = list(hosts)
        self.run_one = run_one
        self.batch_size = batch_size
        self.max_fail = max_fail
        self.budget = parse_max_fail(max_fail, len(hosts))
        self.width = fleet_width(parallel, batch_size)
        self.emit: EventSink = events or (lambda _e: None)
        self.skipped = list(skipped)
        self.record = record
        self.on_interrupt = on_interrupt
        self.order = list(order) or [o.host for o in self.skipped] + names
        self.fleet_rollback = fleet_rollback
        self.roll_back_one = roll_back_one
        self.workers = _Workers(poll)
        # The state of the run:
        self.results: dict[str, HostOutcome] = {}
        self.failures = 0
        self.budget_exceeded = False
        self.stop_reason: str | None = None
        self.current_batch = 0
        self.interrupts = 0  # signals acted on
        self.signals: list[str] = []  # signals received (their causes), by the handler
        self.rollback_info: dict[str, Any] | None = None

    # -- the run ----------------------------------------------------------------------

    def run(self) -> FleetOutcome:
        started_at = time.monotonic()
        for out in self.skipped:
            self._store(FleetEvent("host_done", host=out.host, outcome=out))
        with interrupt_signals(self._on_signal):
            self._run_batches()
            if (self.fleet_rollback == "all" and self.budget_exceeded and not self.interrupts
                    and self.roll_back_one is not None and not self.workers.busy):
                self.rollback_info = self._roll_back_fleet()
        self._settle_unfinished()
        return self._finish(time.monotonic() - started_at)

    def _run_batches(self) -> None:
        for index, batch in enumerate(batches_of(self.hosts, self.batch_size), start=1):
            self._take_interrupts()
            if self.stop_reason is not None:
                return
            self.current_batch = index
            if self.batch_size:
                self.emit(FleetEvent("batch_start", batch=index,
                                     hosts=tuple(h.name for h in batch)))
            self._run_batch(batch)
            self._take_interrupts()
            if self.interrupts >= 2:
                return

    def _run_batch(self, batch: list[Host]) -> None:
        """Start the batch's hosts ``width`` at a time until all finished, the budget or
        an interrupt stops new starts, or a second interrupt stops the waiting."""
        queue = list(batch)
        while queue or self.workers.busy:
            self._take_interrupts()
            if self.interrupts >= 2:
                return
            while queue and len(self.workers.busy) < self.width and self.stop_reason is None:
                self._start(queue.pop(0))
            if self.stop_reason is not None:
                queue.clear()
            if self.workers.busy:
                self._wait()
            for out in self.workers.take():
                self._host_done(out)

    def _start(self, host: Host) -> None:
        self.emit(FleetEvent("host_start", host=host.name))
        self.workers.start(host.name, host, lambda: self._work(host),
                           thread_name=f"deployer-{host.name}")

    def _work(self, host: Host) -> HostOutcome:
        """On the host's thread: its outcome, whatever ``run_one`` does."""
        t0 = time.monotonic()
        try:
            out = self.run_one(host)
            if not isinstance(out, HostOutcome):
                raise TypeError(f"run_one returned {type(out).__name__}, not HostOutcome")
        except BaseException as exc:  # noqa: BLE001 - one host's error is its outcome
            out = outcome_from_error(host, exc)
        if not out.duration:
            out.duration = time.monotonic() - t0
        out.address = out.address or host.address
        return out

    def _host_done(self, out: HostOutcome) -> None:
        self._store(FleetEvent("host_done", host=out.host, outcome=out))
        if out.counts_as_failure:
            self.failures += 1
        if self.failures <= self.budget:
            return
        self.budget_exceeded = True
        if self.stop_reason is None:
            if self.batch_size and self.max_fail is None:
                self.stop_reason = (f"{out.host} failed in batch {self.current_batch}: "
                                    "later batches are not started")
            else:
                self.stop_reason = (f"{self.failures} host(s) failed, more than --max-fail "
                                    f"allows ({_budget_text(self.max_fail, self.budget)}): "
                                    "no new host is started")
            self.emit(FleetEvent("stop", message=self.stop_reason))

    def _store(self, event: FleetEvent) -> None:
        """A host's (new) outcome: kept, announced and recorded."""
        out = event.outcome
        assert out is not None
        self.results[out.host] = out
        self.emit(event)
        self._record(out)

    def _record(self, out: HostOutcome) -> None:
        if self.record is not None:
            self.record.update(out)

    # -- interrupts -------------------------------------------------------------------

    def _on_signal(self, cause: str) -> None:
        # Just count: a KeyboardInterrupt raised at an arbitrary point of the loop
        # (e.g. inside Thread.start) would lose track of running hosts.
        self.signals.append(cause)

    def _wait(self) -> None:
        try:
            self.workers.wait()
        except KeyboardInterrupt:
            # Only when no handler could be installed (not the main thread).
            self.signals.append(CTRL_C)

    def _take_interrupts(self) -> None:
        """Act on the signals received since the last call: the first stops new starts,
        each is passed on to the caller (``on_interrupt``)."""
        while self.interrupts < len(self.signals):
            cause = self.signals[self.interrupts]
            self.interrupts += 1
            if self.interrupts == 1:
                self.stop_reason = f"interrupted ({cause}): no new host is started"
            msg = ("interrupted: stopping running hosts (Ctrl-C again to stop waiting)"
                   if self.interrupts == 1
                   else "interrupted again: not waiting for running hosts")
            self.emit(FleetEvent("interrupt", message=msg))
            if self.on_interrupt is not None:
                self.on_interrupt(self.interrupts, cause)

    # -- fleet_rollback: all ----------------------------------------------------------

    def _roll_back_fleet(self) -> dict[str, Any] | None:
        """Roll back the hosts that finished ok, ``width`` at a time, on the scheduling
        thread under the same signal handling: a Ctrl-C cancels the rollbacks running
        (``on_interrupt``) and starts no more; those hosts are reported with what their
        rollback reported. Returns ``{"because": failed hosts, "hosts": rolled back}``."""
        results = self.results
        because = [n for n in self.order if n in results and results[n].counts_as_failure]
        targets = [results[n] for n in self.order if n in results
                   and (results[n].status == OK
                        or (results[n].status == SKIPPED and results[n].run_id))]
        if not targets:
            return None
        self.emit(FleetEvent("fleet_rollback", hosts=tuple(o.host for o in targets),
                             message=f"{', '.join(because)} failed and the runbook sets "
                                     f"fleet_rollback: all: rolling back "
                                     f"{', '.join(o.host for o in targets)}"))
        queue = list(targets)
        while queue or self.workers.busy:
            self._take_interrupts()
            if self.interrupts >= 2:
                break
            while queue and len(self.workers.busy) < self.width and not self.interrupts:
                before = queue.pop(0)
                self.emit(FleetEvent("rollback_start", host=before.host))
                self.workers.start(before.host, before,
                                   functools.partial(self._undo, before, because),
                                   thread_name=f"deployer-undo-{before.host}")
            if self.interrupts:
                queue.clear()
            if self.workers.busy:
                self._wait()
            for out in self.workers.take():
                self._store(FleetEvent("rollback_done", host=out.host, outcome=out))
        self._abandon_rollbacks(because)
        # Hosts whose rollback a Ctrl-C kept from starting keep their "ok".
        return {"because": because,
                "hosts": [o.host for o in targets if results[o.host].rolled_back_for]}

    def _undo(self, before: HostOutcome, because: list[str]) -> HostOutcome:
        """On the host's thread: its outcome after its rollback, whatever happens."""
        assert self.roll_back_one is not None
        t0 = time.monotonic()
        try:
            out = self.roll_back_one(before, list(because))
            if not isinstance(out, HostOutcome):
                raise TypeError(f"roll_back_one returned {type(out).__name__}")
        except BaseException as exc:  # noqa: BLE001 - one host's error is its outcome
            # The host stays on what its run deployed while the fleet meant to undo
            # it: that needs a look, whatever the reason.
            err = outcome_from_error(Host(before.host, before.address), exc)
            out = HostOutcome(host=before.host, address=before.address, status=FAILED,
                              exit_code=EXIT_FAILED, run_id=before.run_id,
                              message=f"fleet rollback could not run: {err.message}",
                              diagnosis=err.diagnosis)
        out.rolled_back_for = list(because)
        out.duration = before.duration + (out.duration or time.monotonic() - t0)
        out.address = out.address or before.address
        out.steps_done = out.steps_done or before.steps_done
        out.steps_total = out.steps_total or before.steps_total
        return out

    def _abandon_rollbacks(self, because: list[str]) -> None:
        """A second Ctrl-C stopped the waiting: rollbacks still running are reported."""
        for name, given in list(self.workers.busy.items()):
            assert isinstance(given, HostOutcome)
            self.results[name] = HostOutcome(
                host=name, address=given.address, status=INTERRUPTED,
                exit_code=EXIT_INTERRUPTED, run_id=given.run_id, rolled_back_for=because,
                message="its fleet rollback was still running when deployer stopped "
                        "waiting; finish it with `deployer rollback`")
            self._record(self.results[name])
        self.workers.busy.clear()

    # -- the outcome ------------------------------------------------------------------

    def _settle_unfinished(self) -> None:
        """Every host gets an outcome: still running (a second Ctrl-C) or never started."""
        for name, given in list(self.workers.busy.items()):
            self.results[name] = HostOutcome(
                host=name, address=given.address, status=INTERRUPTED,
                exit_code=EXIT_INTERRUPTED,
                message="still running when deployer stopped waiting; "
                        "its run is resumable with --resume")
            self._record(self.results[name])
        for host in self.hosts:
            if host.name not in self.results:
                self.results[host.name] = HostOutcome(
                    host=host.name, address=host.address, status=NOT_STARTED,
                    exit_code=EXIT_OK, message=self.stop_reason or "not started")
                self._record(self.results[host.name])

    def _finish(self, duration: float) -> FleetOutcome:
        report = self.order + [o.host for o in self.skipped] + [h.name for h in self.hosts]
        ordered = [self.results[n] for n in dict.fromkeys(report) if n in self.results]
        code = worst_exit_code(o.exit_code for o in ordered)
        if self.interrupts:
            code = EXIT_INTERRUPTED
        options = {"parallel": self.width, "batch_size": self.batch_size,
                   "max_fail": self.max_fail if self.max_fail is not None else 0,
                   "budget": self.budget}
        outcome = FleetOutcome(hosts=ordered, exit_code=code, stopped_reason=self.stop_reason,
                               interrupted=bool(self.interrupts),
                               fleet_id=self.record.id if self.record is not None else None,
                               duration=duration, options=options,
                               fleet_rollback=self.rollback_info)
        if self.record is not None:
            self.record.finish(outcome)
        self.emit(FleetEvent("done", message=outcome.tally_line()))
        return outcome


def _budget_text(max_fail: str | int | None, budget: int) -> str:
    if max_fail is None:
        return "default 0"
    return f"{max_fail} = {budget} host(s)" if str(max_fail).endswith("%") else str(budget)


# -- fleet records and --resume -------------------------------------------------------


def _atomic_write_json(path: Path, data: dict[str, Any], durable: bool = True) -> None:
    """Write-then-rename, so readers and a killed deployer only ever see a whole file.
    ``durable`` adds an fsync (power loss); per-host updates skip it because 50 hosts
    finishing together would queue 50 journal commits on the scheduling thread, and a
    lost update only makes ``--resume`` fall back to the per-host run history."""
    from deployer.state import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True), durable=durable)


def fleets_dir(project_dir: str | os.PathLike[str]) -> Path:
    return Path(project_dir) / ".deployer" / "fleets"


class FleetRecord:
    """``.deployer/fleets/<id>.json``: which hosts of a group run finished how.

    Small (one entry per host) and rewritten atomically when a host's run starts
    (``running`` with its run id) and when it ends, so a killed deployer leaves a valid
    record for ``--resume`` that tells hosts it had started from hosts it never reached.
    Holds no output and no secrets.
    """

    def __init__(self, project_dir: str | os.PathLike[str], runbook: str, target: str,
                 hosts: Sequence[str], resumed_from: str | None = None) -> None:
        now_ns = time.time_ns()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now_ns / 1e9))
        # Microseconds in the id keep records of quick successive runs ordered.
        self.id = f"fleet-{stamp}.{now_ns // 1000 % 1_000_000:06d}-{_secrets.token_hex(2)}"
        self.path = fleets_dir(project_dir) / f"{self.id}.json"
        self._lock = threading.Lock()
        try:
            operator = f"{getpass.getuser()}@{socket.gethostname()}"
        except Exception:  # noqa: BLE001 - no passwd entry in some containers
            operator = f"uid{os.getuid()}@{socket.gethostname()}"
        self.data: dict[str, Any] = {
            "id": self.id,
            "runbook": runbook,
            "target": target,
            "operator": operator,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9)),
            "started_ns": now_ns,
            "finished": None,
            "status": "running",
            "resumed_from": resumed_from,
            "hosts": {name: {"status": "pending", "exit_code": None, "run_id": None,
                             "failed_step": None} for name in hosts},
        }
        self._save()

    def _save(self, durable: bool = True) -> None:
        _atomic_write_json(self.path, self.data, durable)

    def update(self, outcome: HostOutcome) -> None:
        with self._lock:
            entry = self.data["hosts"].setdefault(outcome.host, {})
            entry.update(status=outcome.status, exit_code=outcome.exit_code,
                         run_id=outcome.run_id, failed_step=outcome.failed_step)
            if outcome.rolled_back_for:
                entry["rolled_back_for"] = list(outcome.rolled_back_for)
            self._save(durable=False)

    def mark_running(self, host: str, run_id: str) -> None:
        """The host's run ``run_id`` has started (its run record exists)."""
        with self._lock:
            entry = self.data["hosts"].setdefault(host, {})
            entry.update(status="running", run_id=run_id)
            self._save(durable=False)

    def finish(self, outcome: FleetOutcome) -> None:
        with self._lock:
            if outcome.fleet_rollback:
                self.data["fleet_rollback"] = outcome.fleet_rollback
            self.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.data["exit_code"] = outcome.exit_code
            self.data["status"] = "ok" if outcome.ok else (
                "interrupted" if outcome.interrupted else "failed")
            self._save()


def load_fleet_records(project_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every readable fleet record, oldest first (unreadable files are ignored: a
    half-written temp file is never named ``*.json``, so this only skips foreign junk)."""
    out: list[dict[str, Any]] = []
    folder = fleets_dir(project_dir)
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("fleet-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("hosts"), dict):
            out.append(data)
    out.sort(key=lambda d: (d.get("started_ns") or 0, d.get("id") or ""))
    return out


def latest_fleet_record(project_dir: str | os.PathLike[str], runbook: str,
                        target: str) -> dict[str, Any] | None:
    """The most recent record of ``runbook`` run on ``target`` (group or host list)."""
    for data in reversed(load_fleet_records(project_dir)):
        if data.get("runbook") == runbook and data.get("target") == target:
            return data
    return None


@dataclass(frozen=True)
class ResumeAction:
    """What ``--resume`` does on one host: ``skip`` (finished ok), ``resume`` (continue
    run ``run_id``), or ``start`` (never ran, or nothing to continue)."""

    action: str
    run_id: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class LatestRun:
    """The newest run of the runbook on one host, from the run history. ``active_ns``
    is when it last started or resumed (ns since the epoch; 0 when unknown)."""

    run_id: str
    status: str  # a fleet status: "ok" for a run that succeeded
    active_ns: int = 0


def deployment_start_ns(record: dict[str, Any],
                        records: Iterable[dict[str, Any]] = ()) -> int:
    """When the group run that ``record`` belongs to began: the start of the first
    record of its ``--resume`` chain (``resumed_from`` links), so a run a host started
    in any earlier part of the chain still counts as this deployment's."""
    by_id = {r.get("id"): r for r in records}
    start = int(record.get("started_ns") or 0)
    seen = {record.get("id")}
    parent = by_id.get(record.get("resumed_from"))
    while parent is not None and parent.get("id") not in seen:
        seen.add(parent.get("id"))
        start = min(start, int(parent.get("started_ns") or start))
        parent = by_id.get(parent.get("resumed_from"))
    return start


def resume_actions(
    hosts: Sequence[Host],
    record: dict[str, Any] | None,
    latest_run: Callable[[Host], LatestRun | tuple[str, str] | None] | None = None,
    since_ns: int | None = None,
) -> dict[str, ResumeAction]:
    """Decide per host what ``--resume`` on a group does.

    With a fleet record of the previous group run: a host is skipped exactly when that
    run finished it ok; a host whose run started there and did not finish (including
    ``running``: deployer was killed) resumes that run; a host that never started
    starts. For a host the record has as ``pending`` (its run had not started, or the
    record update was lost) or does not know (added to the group since),
    ``latest_run(host)`` (the newest run of this runbook on it) counts only if that run
    started or resumed at or after ``since_ns`` (default: the record's start; see
    ``deployment_start_ns``): an older run, however successful, is not this
    deployment, so the host starts.

    Without a record, the newest run decides on its own: ok means skip, unfinished
    means resume, none means start.
    """
    actions: dict[str, ResumeAction] = {}
    entries = (record or {}).get("hosts", {})
    fleet_id = (record or {}).get("id")
    if record is not None and since_ns is None:
        since_ns = int(record.get("started_ns") or 0)
    for host in hosts:
        entry = entries.get(host.name)
        if entry is not None and entry.get("status") not in (None, "pending"):
            status, run_id = entry.get("status"), entry.get("run_id")
            if status in SUCCESS_STATUSES:
                actions[host.name] = ResumeAction(
                    "skip", run_id, f"finished ok in {fleet_id}"
                    + (f" (run {run_id})" if run_id else ""))
            elif status == NOT_STARTED or not run_id:
                actions[host.name] = ResumeAction(
                    "start", None, f"{status.replace('_', ' ')} in {fleet_id}")
            elif entry.get("rolled_back_for"):
                # Its run had finished; continuing it would redo only the undone steps
                # and skip those with nothing to undo (a restart, a check): deploy anew.
                actions[host.name] = ResumeAction(
                    "start", None, f"rolled back in {fleet_id} because "
                    f"{', '.join(entry['rolled_back_for'])} failed")
            elif status == "running":
                actions[host.name] = ResumeAction(
                    "resume", run_id, f"run {run_id} did not finish in {fleet_id}")
            else:
                actions[host.name] = ResumeAction(
                    "resume", run_id, f"{status.replace('_', ' ')} in run {run_id}")
            continue
        found = latest_run(host) if latest_run is not None else None
        if isinstance(found, tuple):
            found = LatestRun(*found)
        if found is not None and record is not None and found.active_ns < (since_ns or 0):
            actions[host.name] = ResumeAction(
                "start", None, f"not started in {fleet_id} (run {found.run_id} is older)")
        elif found is None:
            actions[host.name] = ResumeAction(
                "start", None, f"not started in {fleet_id}" if record is not None
                else "no earlier run")
        elif found.status == OK:
            actions[host.name] = ResumeAction("skip", found.run_id,
                                              f"run {found.run_id} finished ok")
        else:
            actions[host.name] = ResumeAction("resume", found.run_id,
                                              f"run {found.run_id} ended {found.status}")
    return actions


def skipped_outcome(host: Host, action: ResumeAction) -> HostOutcome:
    """The reported outcome of a host ``--resume`` does not run."""
    return HostOutcome(host=host.name, address=host.address, status=SKIPPED,
                       exit_code=EXIT_OK, run_id=action.run_id,
                       message=f"already done: {action.reason}")


__all__ = [
    "ERROR", "EXIT_SEVERITY", "FAILED", "INTERRUPTED", "LOCKED", "NOT_STARTED", "OK",
    "ROLLED_BACK", "SKIPPED", "STATUSES", "FleetEvent", "FleetOutcome", "FleetRecord",
    "FleetScheduler",
    "HostOutcome", "LatestRun", "ResumeAction", "batches_of", "deployment_start_ns",
    "fleet_width", "fleets_dir", "latest_fleet_record", "load_fleet_records", "outcome_from_error",
    "parse_max_fail", "resume_actions",
    "run_fleet", "skipped_outcome", "status_for_exit_code", "worst_exit_code",
]
