"""The rooms of a run built by hand over a ``FakeTransport``, for their unit tests.

``Rig`` loads a one-host project from a runbook text and wires what an executor
wires (output, connection, guard, performer, command runner, renderer) without the
step loop, so a test can drive one room and look at what it did: the fake's calls,
the journal's writes (``MemoryJournal``) and the events (``Recorder``).
"""

from __future__ import annotations

import copy
import textwrap
import threading
from pathlib import Path
from typing import Any

import yaml

from deployer.command_runner import CommandRunner
from deployer.connection import HostConnection
from deployer.faketransport import FakeTransport
from deployer.perform import Performer
from deployer.remote_guard import RemoteGuard
from deployer.run_output import RunOutput
from deployer.run_setup import RunSetup
from deployer.run_types import Events
from deployer.selection import Selection
from deployer.state import RunRecord, StateStore, StepRecord
from deployer.step_render import StepRenderer

SECRET = "hunter2-very-secret"


class MemoryJournal:
    """A ``Journal`` in memory: what was written, and the step states at each save."""

    def __init__(self) -> None:
        self.record: RunRecord | None = None
        self.events: list[str] = []
        self.outputs: list[tuple[str, str, str]] = []  # (step id, stream, line)
        self.saves: list[dict[str, str]] = []  # step id -> state, per save
        self.pending = False
        self.closed = False

    def begin(self, record: RunRecord, header: str, earlier: Any = ()) -> None:
        self.record = record
        self.events += [header, *earlier]

    def save(self) -> None:
        self.pending = False
        if self.record is not None:
            self.saves.append({s.id: s.state for s in self.record.steps})

    def step_ended(self) -> None:
        self.pending = True

    def flush(self) -> None:
        if self.pending:
            self.save()

    def event(self, text: str) -> None:
        self.events.append(text)

    def output(self, host: str, step_id: str, stream: str, line: str) -> None:
        self.outputs.append((step_id, stream, line))

    def catch_up(self) -> None:
        pass  # nothing is posted: every save is kept at once

    def close(self) -> None:
        self.closed = True

    def state_path(self, run_id: str) -> str:
        return f"mem:{run_id}.json"

    def log_path(self, run_id: str) -> str:
        return f"mem:{run_id}.log"


class Recorder(Events):
    """Events as lists; ``answer`` is what ``confirm`` says."""

    def __init__(self, answer: bool = False) -> None:
        self.answer = answer
        self.notices: list[tuple[str, str]] = []
        self.outputs: list[tuple[str, str]] = []  # (step id, line)
        self.started: list[tuple[str, int, list[str]]] = []
        self.finished: list[tuple[str, str]] = []
        self.questions: list[str] = []
        self.rollbacks: list[tuple[str, list[str]]] = []
        self.undos: list[tuple[str, str, str]] = []
        self.undo_commands: list[list[str]] = []

    def notice(self, host: str, text: str, level: str = "info") -> None:
        self.notices.append((text, level))

    def output(self, host: str, step_id: str, stream: str, line: str) -> None:
        self.outputs.append((step_id, line))

    def step_started(self, host: str, rec: StepRecord, attempt: int,
                     commands: list[str]) -> None:
        self.started.append((rec.id, attempt, commands))

    def step_finished(self, host: str, rec: StepRecord) -> None:
        self.finished.append((rec.id, rec.state))

    def confirm(self, host: str, step_id: str, question: str) -> bool:
        self.questions.append(question)
        return self.answer

    def rollback_started(self, host: str, reason: str, steps: list[str]) -> None:
        self.rollbacks.append((reason, steps))

    def undo_started(self, host: str, rec: StepRecord, commands: list[str]) -> None:
        self.undo_commands.append(commands)

    def undo_finished(self, host: str, rec: StepRecord, state: str, message: str) -> None:
        self.undos.append((rec.id, state, message))

    def notice_texts(self) -> list[str]:
        return [text for text, _ in self.notices]


class Rig:
    """One host ``t`` (a ``FakeTransport``) and runbook ``demo`` (from ``text``), with
    secret ``token`` set to ``SECRET``."""

    def __init__(self, root: Path, text: str, *, answer: bool = False,
                 cli_vars: tuple[str, ...] = ()) -> None:
        from deployer.session import load_session

        (root / "runbooks").mkdir(exist_ok=True)
        (root / "runbooks" / "demo.yml").write_text(textwrap.dedent(text))
        inventory = {"hosts": {"t": {"host": "127.0.0.1", "user": "deploy"}}}
        (root / "inventory.yml").write_text(yaml.safe_dump(inventory))
        self.root = root
        self.session = load_session("demo", project_dir=str(root), host="t",
                                    cli_vars=list(cli_vars),
                                    environ={"DEPLOYER_SECRET_TOKEN": SECRET})
        self.runbook = self.session.runbook
        self.host = self.session.hosts[0]
        # A copy of the same type: it keeps which names came from --var.
        self.variables: dict[str, Any] = copy.copy(self.session.vars_for(self.host))
        self.mask = self.session.redactor.mask
        self.fake = FakeTransport()
        self.journal = MemoryJournal()
        self.events = Recorder(answer)
        self.store = StateStore(str(root))
        self.output = RunOutput(self.host.name, self.journal, self.events, self.mask)
        self.link = HostConnection(self.host, self.fake.factory, accept_new_host_key=False,
                                   sudo_password=None)
        self.cancel = threading.Event()
        self.guard = RemoteGuard(self.host.name, self.journal, connect=self.link.transport,
                                 current=self.link.current_transport, drop=self.link.drop,
                                 notice=self.output.notice, step=lambda: self.output.current)
        self.link.on_process = self.guard.announce
        self.performer = Performer(self.link.transport, self.output.on_line, str(root),
                                   self.cancel)
        self.runner = CommandRunner(self.performer, self.guard, self.journal, self.cancel)
        self.renderer = StepRenderer(self.runbook, self.host, self.variables,
                                     dict(self.session.secrets), str(root))

    def setup(self, **options: Any) -> RunSetup:
        return RunSetup(self.runbook, self.host, self.store, options=options,
                        force=bool(options.get("force")), digests=self.session.digests,
                        variables=self.variables, notice=self.output.notice, mask=self.mask)

    def begin(self, **states: str) -> RunRecord:
        """A new record of every step (``states``: step id -> state), begun."""
        setup = self.setup()
        record = setup.new_record("run-1")
        record.steps = [setup.step_record(i, s, None, None, Selection())
                        for i, s in enumerate(self.runbook.steps)]
        for rec in record.steps:
            rec.state = states.get(rec.id, rec.state)
        self.journal.begin(record, "header")
        return record

    def step(self, step_id: str) -> Any:
        return self.renderer.step(step_id)

    def rec(self, step_id: str) -> StepRecord:
        record = self.journal.record
        assert record is not None
        found = record.find(step_id)
        assert found is not None
        return found

    def scripts(self, *words: str) -> list[str]:
        """Which of ``words`` each run call's script contains (first match), in order."""
        out = []
        for call in self.fake.runs():
            for word in words:
                if word in call.script:
                    out.append(word)
                    break
        return out


def executor(root: Path, text: str, fake: FakeTransport, events: Events | None = None,
             **options: Any) -> Any:
    """A whole ``Executor`` of runbook ``demo`` (from ``text``) on host ``t`` = ``fake``,
    preflight skipped, secret ``token`` = ``SECRET``."""
    from deployer.executor import Executor
    from deployer.run_types import RunOptions
    from deployer.session import load_session

    (root / "runbooks").mkdir(exist_ok=True)
    (root / "runbooks" / "demo.yml").write_text(textwrap.dedent(text))
    inventory = {"hosts": {"t": {"host": "127.0.0.1", "user": "deploy"}}}
    (root / "inventory.yml").write_text(yaml.safe_dump(inventory))
    session = load_session("demo", project_dir=str(root), host="t", cli_vars=[],
                           environ={"DEPLOYER_SECRET_TOKEN": SECRET})
    host = session.hosts[0]
    return Executor(session.runbook, host, variables=session.vars_for(host),
                    secrets=session.secrets, redactor=session.redactor,
                    digests=session.digests, options=RunOptions(skip_preflight=True,
                                                                 **options),
                    events=events, project_dir=str(root), transport_factory=fake.factory)
