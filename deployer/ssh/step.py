"""One remote step on the agent, as an object with explicit phases:

1. ``send``: the frame goes to the agent's stdin.
2. ``wait``: until both end markers arrived, ticking: note the process group from the
   start marker, announce it after ``announce_after`` seconds, decide to stop
   (a failing callback, ``interrupt()``, the timeout) and then start the kill
   script on a second channel, give up after a hard deadline. Ctrl-C in this
   thread stops the step too; a second one (or a second ``interrupt()``) while it
   is being stopped stops waiting.
3. ``settle``: whether the group is known to be gone, and whether the agent stays in
   sync for the next step.
4. ``outcome``: the ``RunResult``, or the exception to raise (connection lost,
   ``StepInterrupted``, the callback's error).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Protocol

from deployer.ssh.channel import Agent, KillChannel, LostAgent, drain, pump
from deployer.ssh.framing import DONE, IN, PRE, Stream, end_fields
from deployer.transport import (
    ConnectionLost,
    LineCallback,
    ProcessCallback,
    RemoteProcess,
    RunResult,
    StepInterrupted,
)

TAIL_LINES = 200  # lines of combined output kept in RunResult.tail
TAIL_LINE_CHARS = 4096  # a tail entry is cut to this many characters
_HARD_MARGIN = 15.0  # seconds beyond the kill grace before the agent is given up


class Interrupts:
    """``interrupt()`` requests for the running step, safe from any thread: an event,
    a count (a second request abandons the stop) and a pipe waking the ``select``."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.count = 0
        self._r, self._w = -1, -1

    @property
    def wake_fd(self) -> int:
        return self._r

    def request(self) -> None:
        self.count += 1
        self.event.set()
        if self._w >= 0:
            try:
                os.write(self._w, b"x")
            except OSError:
                pass

    def reset(self) -> None:
        """Before a step: nothing requested yet."""
        self.event.clear()
        self.count = 0
        if self._r < 0:
            self._r, self._w = os.pipe()
            os.set_blocking(self._r, False)
        drain(self._r)

    def close(self) -> None:
        for fd in (self._r, self._w):
            if fd >= 0:
                os.close(fd)
        self._r = self._w = -1


class StepHost(Protocol):
    """What a step needs of the transport running it."""

    kill_grace: float
    announce_after: float
    on_process: ProcessCallback | None
    current_process: RemoteProcess | None
    interrupts: Interrupts

    def open_kill(self, pgid: int, sudo: bool) -> KillChannel | None: ...

    def lost(self, what: str, cause: BaseException) -> ConnectionLost: ...

    def forget_agent(self, agent: Agent) -> None: ...


class StepRun:
    """Runs one framed step on ``agent`` for ``host`` (see the module docstring)."""

    def __init__(self, host: StepHost, agent: Agent, frame: bytes, sudo: bool,
                 timeout: float | None, on_line: LineCallback | None, what: str) -> None:
        self.host, self.agent, self.frame, self.sudo = host, agent, frame, sudo
        self.on_line, self.what = on_line, what
        self.started = time.monotonic()
        self.deadline = self.started + timeout if timeout is not None else None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.callback_error: list[BaseException] = []
        self.out = Stream("stdout", agent.token, self._emit, True, agent.leftover_out)
        self.err = Stream("stderr", agent.token, self._emit, False, agent.leftover_err)
        self.stop: str | None = None  # "timeout" | "interrupt" | "callback" once stopping
        self.kill: KillChannel | None = None
        self.keyboard: KeyboardInterrupt | None = None
        self.second = False  # a second Ctrl-C / interrupt() while stopping: stop waiting
        self.lost: LostAgent | None = None
        self.hard_deadline: float | None = None
        self.proc: RemoteProcess | None = None
        self.announce_at: float | None = None
        self.stopped: bool | None = None

    def run(self, sent: bool = False) -> RunResult:
        """The four phases; ``sent``: the frame already went out (``send``)."""
        if not sent:
            self.send()
        self.wait()
        self.settle()
        return self.outcome()

    # -- 1. send ---------------------------------------------------------------------

    def send(self) -> None:
        try:
            self.agent.chan.sendall(self.frame)
            if not self.agent.persistent:
                self.agent.chan.shutdown_write()
        except Exception as e:
            self.host.forget_agent(self.agent)
            raise self.host.lost(self.what, e) from e

    def restart_streams(self) -> None:
        """Read from where the agent is now: posted answers were read off it after
        this step was sent (``deployer.ssh.posted``)."""
        self.out = Stream("stdout", self.agent.token, self._emit, True,
                          self.agent.leftover_out)
        self.err = Stream("stderr", self.agent.token, self._emit, False,
                          self.agent.leftover_err)

    def hold_keyboard(self) -> None:
        """A Ctrl-C came before this step's wait began: it stops the step."""
        self.keyboard = KeyboardInterrupt()
        self.host.interrupts.event.set()

    def _emit(self, stream: str, line: str) -> None:
        self.tail.append(line[:TAIL_LINE_CHARS])
        if self.on_line is not None and not self.callback_error:
            try:
                self.on_line(stream, line)
            except Exception as e:  # stop the step, re-raise after
                self.callback_error.append(e)

    # -- 2. wait ---------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self.out.phase == DONE and self.err.phase == DONE

    def wait(self) -> None:
        # The leftover of what was read before may already hold this step's markers.
        self.out.feed(b"")
        self.err.feed(b"")
        while True:
            try:
                if not self._tick():
                    return
            except KeyboardInterrupt as e:
                if self.keyboard is not None or self.stop is not None:
                    self.second = True  # Ctrl-C while the command is being stopped
                    self.keyboard = self.keyboard or e
                    return
                self.keyboard = e
                self.host.interrupts.event.set()
            except LostAgent as e:
                self.lost = e
                return

    def _tick(self) -> bool:
        """One round of the wait; False once it is over."""
        done = self.complete
        if done and (self.kill is None or self.kill.finished()):
            return False
        now = time.monotonic()
        self._note_process(now)
        self._announce(now, done)
        if self.stop is None:
            self._decide_stop(now)
        elif self.host.interrupts.count >= 2 and not self.second:
            self.second = True  # interrupt() again while the group is being stopped
            return False
        if self.stop is not None and self.kill is None and self.out.phase == IN and self.proc:
            self.kill = self.host.open_kill(self.proc.pgid, self.sudo)
        if self.hard_deadline is not None and now >= self.hard_deadline:
            return False  # the group would not die or never reported: drop the agent
        wait = self._wait_limit(now)
        if done:
            # The leader ended; the kill script reports when the whole group has.
            assert self.kill is not None
            self.kill.wait(0.05 if wait is None else min(wait, 0.05))
        else:
            pump(self.agent.chan, self.out, self.err, wait, self.host.interrupts.wake_fd)
        return True

    def _note_process(self, now: float) -> None:
        if self.proc is None and self.out.phase != PRE:
            self.proc = RemoteProcess.parse(self.out.start_value, self.sudo)
            self.host.current_process = self.proc
            self.announce_at = now + self.host.announce_after

    def _announce(self, now: float, done: bool) -> None:
        if self.announce_at is None or now < self.announce_at or done or self.stop:
            return
        self.announce_at = None
        if self.proc is not None and self.host.on_process is not None:
            try:
                self.host.on_process(self.proc)
            except Exception as e:  # e.g. the record cannot be written
                self.callback_error.append(e)

    def _decide_stop(self, now: float) -> None:
        if self.callback_error:
            self.stop = "callback"
        elif self.host.interrupts.event.is_set():
            self.stop = "interrupt"
        elif self.deadline is not None and now >= self.deadline:
            self.stop = "timeout"
        if self.stop is not None:
            self.hard_deadline = now + self.host.kill_grace + _HARD_MARGIN

    def _wait_limit(self, now: float) -> float | None:
        limit = self.hard_deadline if self.stop is not None else self.deadline
        if self.announce_at is not None:
            limit = self.announce_at if limit is None else min(limit, self.announce_at)
        return None if limit is None else max(0.0, limit - now)

    # -- 3. settle -------------------------------------------------------------------

    def settle(self) -> None:
        if self.kill is not None:
            self.stopped = self.kill.finished() and self.kill.gone()
            self.kill.close()
        elif self.stop is not None:
            self.stopped = False
        if (self.complete and self.stop is None) or self.stopped:
            self.host.current_process = None  # known to have ended
        agent = self.agent
        if self.complete and agent.persistent:
            agent.leftover_out, agent.leftover_err = bytes(self.out.buf), bytes(self.err.buf)
        else:
            # Out of sync (or one-shot): the next step starts a fresh remote shell.
            self.host.forget_agent(agent)
            _close(agent)

    # -- 4. outcome ------------------------------------------------------------------

    def outcome(self) -> RunResult:
        timed_out = self.stop == "timeout"
        interrupted = self.stop == "interrupt" or self.keyboard is not None
        if self.lost is not None and not (timed_out or interrupted):
            self.out.finish_partial()
            self.err.finish_partial()
            raise self.host.lost(self.what, self.lost)
        code, on_host = end_fields(self.out.value) if self.complete else (-1, None)
        result = RunResult(
            exit_code=code,
            stdout=bytes(self.out.capture or b"").decode("utf-8", "replace"),
            stdout_truncated=self.out.truncated,
            tail=list(self.tail),
            timed_out=timed_out,
            interrupted=interrupted,
            duration=time.monotonic() - self.started,
            stopped=self.stopped,
            host_seconds=on_host,
        )
        if self.keyboard is not None:
            raise StepInterrupted(result, self.second) from self.keyboard
        if self.callback_error:
            raise self.callback_error[0]
        return result


def _close(agent: Agent) -> None:
    try:
        agent.chan.close()
    except Exception:
        pass
