"""The fleet scheduler: hosts started in order, at most ``width`` at once, batch after
batch, until the failure budget or an interrupt stops new starts; then, with
``fleet_rollback: all``, the hosts that finished ok rolled back. The rules are in the
package docstring (``deployer.fleet``).

One thread per running host calls ``run_one``; the scheduling thread alone changes the
scheduler's state and emits events. SIGINT/SIGTERM (``deployer.interrupts``) are only
counted by the handler and acted on by the loop.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from deployer.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
from deployer.interrupts import CTRL_C, interrupt_signals
from deployer.models import Host

from .options import batches_of, check_positive, fleet_width, parse_max_fail
from .record import FleetRecord
from .results import (
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    OK,
    SKIPPED,
    EventSink,
    FleetEvent,
    FleetOutcome,
    HostOutcome,
    outcome_from_error,
    worst_exit_code,
)


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
        check_positive("--parallel", parallel)
        check_positive("--batch-size", batch_size)
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


__all__ = ["FleetScheduler", "run_fleet"]
