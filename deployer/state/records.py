"""The run record as data: ``StepRecord`` (one step's checkpoint) and ``RunRecord``
(everything known about one run on one host), their JSON form, and queries over them.

Each step's JSON is encoded once and cached until that step changes, so a transition
re-encodes only the step that moved; a journaling store learns which steps changed
through ``_sink`` instead of scanning them all. Nothing here sees secrets: callers
pass text already masked by the redactor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from deployer.outcomes import RunStatus, StepStatus
from deployer.state.identity import now_iso, operator

FORMAT_VERSION = 1
TAIL_LINES = 20  # output lines kept per step in the record

@dataclass
class StepRecord:
    """The checkpoint of one step. ``captured`` values and ``tail`` are masked."""

    id: str
    name: str
    index: int
    kind: str = ""
    state: str = StepStatus.PENDING
    exit_code: int | None = None
    attempts: int = 0
    started: str | None = None
    finished: str | None = None
    duration: float | None = None
    message: str = ""  # why it failed / was skipped, one line
    captured: dict[str, str] = field(default_factory=dict)
    captured_masked: list[str] = field(default_factory=list)  # names stored as "***"
    tail: list[str] = field(default_factory=list)
    irreversible: bool = False
    rollback: dict[str, Any] = field(default_factory=dict)  # state/exit_code/tail/message
    digest: str = ""  # Step.definition_digest() when the step was last prepared
    _json: str | None = field(default=None, repr=False, compare=False)
    # Where a journaling StateStore learns that this step changed (no scan of all steps).
    _sink: list[StepRecord] | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        # Any assignment invalidates the cached encoding; in-place mutation of a list
        # or dict field must be followed by ``touch()``.
        object.__setattr__(self, name, value)
        if name not in ("_json", "_sink"):
            self.touch()

    def touch(self) -> None:
        if self.__dict__.get("_json") is not None:  # clean -> changed
            object.__setattr__(self, "_json", None)
            sink = self.__dict__.get("_sink")
            if sink is not None:
                sink.append(self)

    def encoded(self) -> str:
        encoded = self._json
        if encoded is None:
            encoded = json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)
            object.__setattr__(self, "_json", encoded)
        return encoded

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "name": self.name, "index": self.index, "kind": self.kind,
            "state": self.state, "exit_code": self.exit_code, "attempts": self.attempts,
            "started": self.started, "finished": self.finished, "duration": self.duration,
            "message": self.message, "captured": self.captured, "tail": self.tail,
            "irreversible": self.irreversible,
        }
        if self.captured_masked:
            out["captured_masked"] = self.captured_masked
        if self.rollback:
            out["rollback"] = self.rollback
        if self.digest:
            out["digest"] = self.digest
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepRecord:
        return cls(
            id=str(data["id"]), name=str(data.get("name", data["id"])),
            index=int(data.get("index", 0)), kind=str(data.get("kind", "")),
            state=str(data.get("state", StepStatus.PENDING)), exit_code=data.get("exit_code"),
            attempts=int(data.get("attempts", 0)), started=data.get("started"),
            finished=data.get("finished"), duration=data.get("duration"),
            message=str(data.get("message", "")), captured=dict(data.get("captured") or {}),
            captured_masked=list(data.get("captured_masked") or []),
            tail=list(data.get("tail") or []), irreversible=bool(data.get("irreversible")),
            rollback=dict(data.get("rollback") or {}),
            digest=str(data.get("digest") or ""),
        )


_HEADER_FIELDS = ("version", "id", "runbook", "runbook_path", "host", "address", "operator",
                  "pid", "status", "started", "finished", "duration", "digests", "options",
                  "message", "failed_step", "rollback", "resumes", "exit_code",
                  "journal_seq", "variables", "variables_key", "values", "cli_vars",
                  "remote_process")


@dataclass
class RunRecord:
    """Everything known about one run of one runbook on one host."""

    id: str
    runbook: str
    host: str
    runbook_path: str = ""
    address: str = ""
    operator: str = field(default_factory=operator)
    pid: int = field(default_factory=os.getpid)
    status: str = RunStatus.RUNNING
    started: str = field(default_factory=now_iso)
    finished: str | None = None
    duration: float | None = None
    digests: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    failed_step: str | None = None
    rollback: dict[str, Any] = field(default_factory=dict)  # summary of the last rollback
    resumes: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    steps: list[StepRecord] = field(default_factory=list)
    version: int = FORMAT_VERSION
    # Journal lines numbered up to this one are already in the .json (see ``store.py``).
    journal_seq: int = 0
    # name -> keyed digest of the variable's value (``variable_digests``): tells a
    # resume whether --var and the other variables changed, never what they hold.
    variables: dict[str, str] = field(default_factory=dict)
    variables_key: str = ""  # which key made them (``key_id``): another key cannot compare
    # name -> the variable's value as given (JSON), secrets masked as ***: what `show`
    # displays, and what a resume or rollback from any checkout compares and reuses.
    values: dict[str, Any] = field(default_factory=dict)
    cli_vars: list[str] = field(default_factory=list)  # the names given with --var
    # The remote process group of the command a step is (or may still be) running:
    # pgid, leader start time, boot id, sudo, step. None once it is known to be gone.
    remote_process: dict[str, Any] | None = None

    def step(self, step_id: str) -> StepRecord:
        for rec in self.steps:
            if rec.id == step_id:
                return rec
        raise KeyError(step_id)

    def find(self, step_id: str) -> StepRecord | None:
        try:
            return self.step(step_id)
        except KeyError:
            return None

    def captured(self) -> dict[str, str]:
        """Captured values of steps that finished ok, in step order (masked ones too)."""
        out: dict[str, str] = {}
        for rec in self.steps:
            if rec.state in (StepStatus.OK, StepStatus.SKIPPED, StepStatus.FAILED):
                out.update(rec.captured)
        return out

    @property
    def finished_ok(self) -> bool:
        return self.status == RunStatus.SUCCEEDED

    def header(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _HEADER_FIELDS}

    def header_json(self) -> str:
        """The header (everything but the steps) as one line of JSON."""
        return json.dumps(self.header(), ensure_ascii=False, sort_keys=True)

    def encode(self) -> str:
        """The record as JSON text; unchanged steps come from the cache."""
        parts = [rec.encoded() for rec in self.steps]
        # Without `indent` json uses its C encoder: this runs at every step transition.
        head = json.dumps(self.header(), ensure_ascii=False, sort_keys=True)
        # Splice the steps array, one step per line, into the header object.
        return head[:-1] + ',\n "steps": [\n  ' + ",\n  ".join(parts) + "\n ]\n}\n"

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.encode())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        kwargs = {name: data[name] for name in _HEADER_FIELDS if name in data}
        rec = cls(**kwargs)
        rec.steps = [StepRecord.from_dict(s) for s in data.get("steps") or []]
        return rec

    def summary(self) -> dict[str, Any]:
        """The history row of this run."""
        return {"id": self.id, "runbook": self.runbook, "host": self.host,
                "status": self.status, "started": self.started, "finished": self.finished,
                "duration": self.duration, "operator": self.operator,
                "failed_step": self.failed_step, "exit_code": self.exit_code,
                "vars": {k: self.values.get(k) for k in self.cli_vars}}


def steps_by_state(record: RunRecord, states: Iterable[str]) -> list[StepRecord]:
    """The steps of ``record`` in one of ``states``, in step order."""
    wanted = set(states)
    return [s for s in record.steps if s.state in wanted]
