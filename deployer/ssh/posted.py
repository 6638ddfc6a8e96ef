"""Scripts posted to the agent ahead of their answer (``Transport.post``).

A posted script is framed like a step and sent at once; its answer is read only when
the transport next reads from the agent. ``SSHTransport.run`` sends the next step's
frame first and reads the posted answers after, so the host runs both back to back and
the posted script adds no round trip. Posted scripts are short builtins (host state
appends): their answer is read without a kill channel, and a Ctrl-C that arrives while
it is read is held and handed to the step that follows (it stops that step), so the
agent never falls out of step with its frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from deployer.ssh.channel import Agent, LostAgent, pump
from deployer.ssh.framing import DONE, Stream, end_fields
from deployer.transport import DoneCallback, RunResult

ANSWER_TIMEOUT = 60.0  # seconds a posted answer may take before the agent is given up


@dataclass
class Posted:
    """One posted script: the agent it went to and who hears its answer."""

    agent: Agent
    on_done: DoneCallback
    sent: float = field(default_factory=time.monotonic)


class Answers:
    """Reads posted answers off an agent's streams, oldest first."""

    def __init__(self, wake_fd: int) -> None:
        self.wake_fd = wake_fd
        self.held_interrupt = False  # a Ctrl-C came while answers were read

    def read(self, posted: Posted) -> RunResult:
        """The answer of ``posted``. Raises ``LostAgent`` when the channel ended (or
        the answer never came) first; the caller drops the agent then."""
        agent = posted.agent
        lines: list[str] = []
        out = Stream("stdout", agent.token, lambda s, line: lines.append(line), True,
                     agent.leftover_out)
        err = Stream("stderr", agent.token, lambda s, line: lines.append(line), False,
                     agent.leftover_err)
        out.feed(b"")  # the leftover may hold the whole answer already
        err.feed(b"")
        deadline = posted.sent + ANSWER_TIMEOUT
        while not (out.phase == DONE and err.phase == DONE):
            left = deadline - time.monotonic()
            if left <= 0:
                raise LostAgent(None, "no answer to a posted host state write")
            try:
                pump(agent.chan, out, err, min(left, 1.0), self.wake_fd)
            except KeyboardInterrupt:
                self.held_interrupt = True  # the answer is a moment away: finish it
        agent.leftover_out, agent.leftover_err = bytes(out.buf), bytes(err.buf)
        code, on_host = end_fields(out.value)
        stdout = bytes(out.capture or b"").decode("utf-8", "replace")
        return RunResult(exit_code=code, stdout=stdout, tail=lines[-200:],
                         duration=time.monotonic() - posted.sent, host_seconds=on_host)


def notify(posted: Posted, result: RunResult | None) -> None:
    """Hand ``result`` to the poster; its errors never break the transport."""
    try:
        posted.on_done(result)
    except Exception:
        pass
