"""A run's one voice: notices, command output and step endings, masked, to the journal
and the ``Events``.

Every room of a run reports through one ``RunOutput``. It masks before anything is
kept, keeps the last output lines in memory (a failed step's tail and the input of its
diagnosis) and knows which step the output belongs to. Probes (``skip_if``, a resume's
checks, the stack's state after a failure) run ``quiet``: logged, not shown.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from deployer.journal import Journal
from deployer.outcomes import StepStatus
from deployer.run_types import Events
from deployer.state import TAIL_LINES, StepRecord

DIAGNOSE_LINES = 200  # output lines kept in memory for failure diagnosis


class RunOutput:
    """What one run on one host says, and the output it keeps in memory."""

    def __init__(self, host: str, journal: Journal, events: Events,
                 mask: Callable[[str], str]) -> None:
        self.host = host
        self.journal = journal
        self.events = events
        self.mask = mask
        self.current = ""  # the step id output lines belong to
        self.notices: list[str] = []  # every notice, for the outcome
        self.tail: deque[str] = deque(maxlen=DIAGNOSE_LINES)
        self._quiet = False

    def notice(self, text: str, level: str = "info") -> None:
        text = self.mask(text)
        self.notices.append(text)
        self.journal.event(text)
        self.events.notice(self.host, text, level)

    def on_line(self, stream: str, line: str) -> None:
        """One line of a command's output (unmasked, from the performer)."""
        masked = self.mask(line)
        self.tail.append(masked)
        self.journal.output(self.host, self.current, stream, masked)
        if not self._quiet:
            self.events.output(self.host, self.current, stream, masked)

    def start(self, step_id: str) -> None:
        """Output from now on belongs to ``step_id`` (a step, ``ID:check``, ``ID:rollback``)."""
        self.current = step_id
        self.tail.clear()

    def last_lines(self) -> list[str]:
        """The tail a step record keeps."""
        return list(self.tail)[-TAIL_LINES:]

    def last_line(self) -> str:
        """The last line with something on it, stripped, or ""."""
        return next((line.strip() for line in reversed(self.tail) if line.strip()), "")

    def step_done(self, rec: StepRecord) -> None:
        """Tell the log and the events a step reached its final state. The write itself
        goes out with the next transition (``Journal.step_ended``)."""
        detail = f" (exit {rec.exit_code})" if rec.state == StepStatus.FAILED else ""
        self.journal.event(f"step {rec.id} {rec.state}{detail}"
                           + (f": {rec.message}" if rec.message else ""))
        self.journal.step_ended()
        self.events.step_finished(self.host, rec)

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """Output of the block goes to the log only."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    @contextmanager
    def aside(self) -> Iterator[list[str]]:
        """A quiet block whose output does not replace the tail kept so far: yields the
        list its lines are put in once it ends (a failed step's stack state)."""
        saved = list(self.tail)
        collected: list[str] = []
        self.tail.clear()
        try:
            with self.quiet():
                yield collected
        finally:
            collected.extend(self.tail)
            self.tail.clear()
            self.tail.extend(saved)


__all__ = ["DIAGNOSE_LINES", "RunOutput"]
