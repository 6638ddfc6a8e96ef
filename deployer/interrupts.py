"""The one place deployer installs its SIGINT and SIGTERM handlers.

A run stops the same way whichever of the two arrives (Ctrl-C at a terminal, SIGTERM
from a cancelled CI job or ``kill PID``): the caller's ``handler(cause)`` is told
which (``Ctrl-C`` or ``SIGTERM``, the name the run record uses). The single-host run
raises ``KeyboardInterrupt`` from its handler so the executor unwinds; the fleet
scheduler only counts, because an exception raised at an arbitrary point of its loop
would lose track of the hosts it started.

Handlers can only be installed from the main thread; elsewhere the block runs
without them (Python still raises ``KeyboardInterrupt`` for Ctrl-C in the main thread).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

CTRL_C = "Ctrl-C"
SIGTERM = "SIGTERM"

_CAUSES: dict[int, str] = {signal.SIGINT: CTRL_C, signal.SIGTERM: SIGTERM}


@contextlib.contextmanager
def interrupt_signals(handler: Callable[[str], None]) -> Iterator[bool]:
    """Call ``handler(cause)`` on SIGINT and SIGTERM while the block runs; put the
    previous handlers back after it. Yields whether the handlers could be installed."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return

    def on_signal(signum: int, _frame: object) -> None:
        handler(_CAUSES.get(signum, CTRL_C))

    previous = {signum: signal.signal(signum, on_signal) for signum in _CAUSES}
    try:
        yield True
    finally:
        for signum, old in previous.items():
            # None: a handler installed from C, which Python cannot put back.
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


__all__ = ["CTRL_C", "SIGTERM", "interrupt_signals"]
