"""Run records: ``.deployer/runs/<run-id>.json`` (checkpoint) and ``<run-id>.log``.

The executor owns one ``RunRecord`` per host run and asks a ``StateStore`` to write it
at every step transition. The write is atomic (temp file in the same directory, fsync,
rename, fsync of the directory) so a deployer killed with SIGKILL leaves either the
previous or the next valid JSON, never a torn file. Each step's JSON fragment is
encoded once and cached until that step changes, so a transition re-encodes only the
step that moved.

Rewriting the whole record costs bytes in proportion to the steps: fine for the
runbooks people write (a 200-step record is ~55 KB), quadratic for a 2,000-step one
(~0.5 MB per transition, ~2 GB written over the run). So once a record's JSON is
larger than ``JOURNAL_THRESHOLD``, a transition appends one line to
``<run-id>.journal`` instead (the steps that changed, and the header if it changed;
written and fdatasync'ed), and the ``.json`` is rewritten atomically only when the
journal has grown as large as it, and when the run ends. The cost of a transition then
stays constant (amortised) whatever the number of steps. The ``.json`` is always
complete, valid JSON; while a large run is in progress it may lag behind its journal,
which ``StateStore.load`` (and so ``history``, ``show`` and ``--resume``) applies. A
line torn by a power loss ends the journal. Lines are numbered and the ``.json`` names
the last one it holds (``journal_seq``), so lines left behind by a crash between a
rewrite and the removal of the journal are never replayed over the newer ``.json``.

Nothing here sees secrets: callers pass text already masked by the redactor (the
executor masks output tails, captured values and messages before they reach a record).

History queries (``list_runs``, ``latest``) read the JSON files of the runs directory.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import secrets as _random
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deployer.errors import UsageError
from deployer.outcomes import RunStatus, StepStatus

FORMAT_VERSION = 1

# Step states and run statuses (architecture contract): the vocabularies of
# ``outcomes``, under the names the rest of the code has always imported.
PENDING = StepStatus.PENDING
RUNNING = StepStatus.RUNNING
OK = StepStatus.OK
FAILED = StepStatus.FAILED
SKIPPED = StepStatus.SKIPPED
ROLLED_BACK = StepStatus.ROLLED_BACK
ROLLBACK_FAILED = StepStatus.ROLLBACK_FAILED
INTERRUPTED = StepStatus.INTERRUPTED
STEP_STATES = tuple(StepStatus)

RUN_RUNNING = RunStatus.RUNNING
RUN_SUCCEEDED = RunStatus.SUCCEEDED
RUN_FAILED = RunStatus.FAILED
RUN_ROLLED_BACK = RunStatus.ROLLED_BACK
RUN_ROLLBACK_INCOMPLETE = RunStatus.ROLLBACK_INCOMPLETE
RUN_INTERRUPTED = RunStatus.INTERRUPTED
RUN_STOPPED = RunStatus.STOPPED
RUN_STATUSES = tuple(RunStatus)

TAIL_LINES = 20  # output lines kept per step in the record
JOURNAL_THRESHOLD = 64 * 1024  # bytes of record JSON above which transitions are journaled

_RUN_ID_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9]{3}[0-9a-f]{4}$")


def now_iso() -> str:
    """UTC timestamp, second precision, ISO 8601 with a Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def operator() -> str:
    """``user@machine`` of whoever runs deployer."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def new_run_id() -> str:
    """Sortable by start time (UTC, to the millisecond), unique across operators:
    ``20240131-142501-0734f9c2`` = date, time, milliseconds, 4 random hex digits."""
    now = datetime.now(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}{_random.token_hex(2)}"


def is_run_id(text: str) -> bool:
    return bool(_RUN_ID_RE.match(text))


@dataclass
class StepRecord:
    """The checkpoint of one step. ``captured`` values and ``tail`` are masked."""

    id: str
    name: str
    index: int
    kind: str = ""
    state: str = PENDING
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
            state=str(data.get("state", PENDING)), exit_code=data.get("exit_code"),
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
    status: str = RUN_RUNNING
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
    # Journal lines numbered up to this one are already in the .json (see StateStore).
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
            if rec.state in (OK, SKIPPED, FAILED):
                out.update(rec.captured)
        return out

    @property
    def finished_ok(self) -> bool:
        return self.status == RUN_SUCCEEDED

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


def plain_value(value: Any, mask: Callable[[str], str]) -> Any:
    """``value`` as JSON data with every string passed through ``mask``."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): plain_value(v, mask) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(v, mask) for v in value]
    return mask(str(value))


def variable_digests(variables: dict[str, Any], key: bytes) -> dict[str, str]:
    """name -> HMAC-SHA256 of the value under ``key`` (the project's ``digest_key``),
    truncated: equal values give equal digests, and a record alone cannot be used to
    guess a value (not even a short one such as a release tag)."""
    import hashlib
    import hmac

    out: dict[str, str] = {}
    for name, value in variables.items():
        text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
        out[str(name)] = hmac.new(key, f"{name}\0{text}".encode(), hashlib.sha256
                                  ).hexdigest()[:32]
    return out


def key_id(key: bytes) -> str:
    """A short public name of a digest key (to tell whether two records used one)."""
    import hashlib

    return hashlib.sha256(b"deployer-key-id\0" + key).hexdigest()[:12]


def atomic_write(path: Path, text: str, sync_dir: bool = True, durable: bool = True) -> None:
    """Replace ``path`` with ``text``: temp file in the same dir, fsync, rename, fsync dir.

    ``sync_dir`` false skips the directory fsync: after a power loss the file is then
    the previous complete version rather than the newest; never a torn one.
    ``durable`` false skips both fsyncs: readers and a killed deployer still only ever
    see a whole file, but a power loss may lose the update."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if sync_dir and durable:
        _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _apply_journal(data: dict[str, Any], path: Path) -> None:
    """Bring a record read from its ``.json`` up to date with its journal, if any."""
    try:
        raw = path.read_bytes()
    except OSError:
        return
    apply_journal(data, raw)


def journal_line(seq: int, head: str | None, steps: dict[int, str]) -> str:
    """Journal line number ``seq``: the header's JSON if it changed (``head``) and the
    encoded steps that changed, by index; what ``apply_journal`` replays."""
    parts = [f'"seq": {seq}']
    if head is not None:
        parts.append(f'"head": {head}')
    body = ", ".join(f'"{i}": {text}' for i, text in sorted(steps.items()))
    parts.append(f'"steps": {{{body}}}')
    return "{" + ", ".join(parts) + "}\n"


def apply_journal(data: dict[str, Any], raw: bytes, seq_key: str = "journal_seq") -> None:
    """Replay journal lines ``raw`` over the record ``data`` (parsed JSON): lines
    numbered above ``data[seq_key]`` (the last line the snapshot holds) update the
    header and the steps they name; a torn or invalid line ends the journal, and so
    does a gap in the numbering (a line lost on its way must not let a later one
    apply over it). The host state keeps its own journal with its own numbering
    (``seq_key="host_seq"``)."""
    steps = data.get("steps")
    if not isinstance(steps, list):
        return
    folded = data.get(seq_key) or 0
    for line in raw.split(b"\n")[:-1]:  # the last piece is empty or a torn line
        try:
            entry = json.loads(line)
        except ValueError:
            break
        if not isinstance(entry, dict):
            break
        seq = entry.get("seq")
        if not isinstance(seq, int) or seq <= folded:
            continue  # already in the .json
        if seq != folded + 1:
            break
        head = entry.get("head")
        if isinstance(head, dict):
            data.update({k: v for k, v in head.items() if k not in ("steps", seq_key)})
        data[seq_key] = folded = seq
        for key, value in (entry.get("steps") or {}).items():
            index = int(key) if str(key).isdigit() else -1
            if 0 <= index < len(steps) and isinstance(value, dict):
                steps[index] = value


@dataclass
class _Written:
    """What a ``StateStore`` last wrote for one record (to tell snapshot from journal)."""

    steps: list[StepRecord]  # the list in the snapshot: a new list needs a snapshot
    steps_len: int
    head: str  # header_json() last written
    snapshot_len: int
    journal_len: int = 0
    journal_fd: int | None = None
    seq: int = 0  # number of the last journal line (the snapshot's journal_seq before any)
    changed: list[StepRecord] = field(default_factory=list)  # steps' _sink
    position: dict[int, int] = field(default_factory=dict)  # id(step) -> index


class StateStore:
    """The ``.deployer/runs`` directory of a project."""

    def __init__(self, project_dir: str | os.PathLike[str] = ".",
                 journal_threshold: int = JOURNAL_THRESHOLD) -> None:
        self.root = Path(project_dir) / ".deployer" / "runs"
        self.journal_threshold = journal_threshold
        self._written: dict[str, _Written] = {}

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def json_path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.json"

    def log_path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.log"

    def journal_path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.journal"

    def digest_key(self) -> bytes:
        """The project's random key for ``variable_digests`` (``.deployer/runs/.key``,
        mode 0600, created on first use); it never goes into a record."""
        path = self.root / ".key"
        try:
            data = path.read_bytes()
            if len(data) >= 32:
                return data
        except FileNotFoundError:
            pass
        self.ensure()
        key = _random.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another deployer created it first: use theirs
            for _ in range(50):
                data = path.read_bytes()
                if len(data) >= 32:
                    return data
                time.sleep(0.01)
            raise UsageError(f"{path} is not a valid key file",
                             hint="remove it; deployer creates a new one") from None
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key

    def save(self, record: RunRecord) -> None:
        """Record the current state of ``record`` durably (see the module docstring):
        an atomic rewrite of the ``.json``, or for a large running record one journal
        line. After a SIGKILL the state read back is the last one saved; after a power
        loss, the last one or, for a small running record, possibly an earlier one (the
        directory is fsynced when the file is new and when the run ends, not at every
        transition), never an invalid one."""
        w = self._written.get(record.id)
        running = record.status == RUN_RUNNING
        if (w is None or not running or w.snapshot_len <= self.journal_threshold
                or w.steps is not record.steps or w.steps_len != len(record.steps)
                or w.journal_len >= w.snapshot_len):
            self._snapshot(record, w, running)
        else:
            self._append(record, w)

    def _snapshot(self, record: RunRecord, w: _Written | None, running: bool) -> None:
        self.ensure()
        # Journal lines up to here are folded into this snapshot; a line left behind
        # (a crash before the journal is removed) must not be replayed over it.
        seq = w.seq if w is not None else record.journal_seq
        record.journal_seq = seq
        text = record.encode()
        journaled = w is None or w.journal_len > 0
        # The rename must be on disk before the journal it replaces is dropped.
        sync_dir = w is None or not running or journaled
        atomic_write(self.json_path(record.id), text, sync_dir=sync_dir)
        if journaled:
            if w is not None and w.journal_fd is not None:
                os.close(w.journal_fd)
            try:
                os.unlink(self.journal_path(record.id))
            except FileNotFoundError:
                pass
        if running:
            w = _Written(record.steps, len(record.steps), record.header_json(), len(text),
                         seq=seq)
            if len(text) > self.journal_threshold:
                for i, rec in enumerate(record.steps):  # all encoded (clean) by now
                    rec._sink = w.changed
                    w.position[id(rec)] = i
            self._written[record.id] = w
        else:
            self._written.pop(record.id, None)

    def _append(self, record: RunRecord, w: _Written) -> None:
        changed = {w.position[id(rec)]: rec for rec in w.changed if id(rec) in w.position}
        w.changed.clear()
        head = record.header_json()
        if not changed and head == w.head:
            return
        w.seq += 1
        line = journal_line(w.seq, head if head != w.head else None,
                            {i: rec.encoded() for i, rec in changed.items()}).encode("utf-8")
        if w.journal_fd is None:
            w.journal_fd = os.open(self.journal_path(record.id),
                                   os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            _fsync_dir(self.root)  # the new journal's name must survive a power loss
        view = memoryview(line)
        while view:
            view = view[os.write(w.journal_fd, view):]
        os.fdatasync(w.journal_fd)
        w.journal_len += len(line)
        w.head = head

    def load(self, run_id: str) -> RunRecord:
        path = self.json_path(run_id)
        if not path.exists():
            matches = sorted(self.root.glob(f"{run_id}*.json")) if run_id else []
            if len(matches) == 1:
                path = matches[0]
            else:
                hint = "list runs with `deployer history`"
                if len(matches) > 1:
                    raise UsageError(f"run id prefix {run_id!r} is ambiguous "
                                     f"({len(matches)} runs match)", hint=hint)
                raise UsageError(f"no run {run_id!r} in {self.root}", hint=hint)
        return self._read(path)

    def _read(self, path: Path) -> RunRecord:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read run record {path}: {exc}") from exc
        _apply_journal(data, path.with_suffix(".journal"))
        return RunRecord.from_dict(data)

    def _paths(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("*.json") if not p.name.startswith("."))

    def iter_runs(self) -> Iterator[RunRecord]:
        """Every readable record, oldest first (run ids sort by start time)."""
        for path in self._paths():
            try:
                yield self._read(path)
            except UsageError:
                continue

    def list_runs(self, host: str | None = None, runbook: str | None = None,
                  limit: int | None = None) -> list[RunRecord]:
        """Runs matching the filters, newest first."""
        runs = [r for r in self.iter_runs()
                if (host is None or r.host == host) and (runbook is None or r.runbook == runbook)]
        runs.sort(key=lambda r: (r.started, r.id), reverse=True)
        return runs[:limit] if limit else runs

    def latest(self, runbook: str, host: str) -> RunRecord | None:
        runs = self.list_runs(host=host, runbook=runbook, limit=1)
        return runs[0] if runs else None


class RunLog:
    """The append-only redacted log of a run. Lines arrive already masked.

    Buffered (a step may print millions of lines), but no line waits long: the buffer
    is flushed at every event (step transitions) and within ``FLUSH_EVERY`` seconds of
    a line by a helper thread, so ``tail -f`` follows a running step and a deployer
    killed with SIGKILL leaves the output of its last step in the log, where ``show``
    and ``explain`` find it."""

    FLUSH_EVERY = 0.2

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self.path = path
        self._lock = threading.Lock()
        self._unflushed = False
        self._flusher = False
        self._second = -1
        self._stamp = ""

    def _now(self) -> str:
        second = int(time.time())
        if second != self._second:  # strftime per line would cost more than the write
            self._second, self._stamp = second, time.strftime("%H:%M:%S",
                                                              time.localtime(second))
        return self._stamp

    def write(self, host: str, step: str, stream: str, line: str) -> None:
        mark = "!" if stream == "stderr" else " "
        with self._lock:
            if self._f.closed:
                return
            self._f.write(f"{self._now()} {host} {step}{mark}| {line}\n")
            self._unflushed = True
            if self._flusher:
                return
            self._flusher = True
        threading.Thread(target=self._flush_soon, name="deployer-log-flush",
                         daemon=True).start()

    def _flush_soon(self) -> None:
        while True:
            time.sleep(self.FLUSH_EVERY)
            with self._lock:
                if not self._unflushed or self._f.closed:
                    self._flusher = False
                    return
                self._f.flush()
                self._unflushed = False

    def event(self, text: str) -> None:
        with self._lock:
            if self._f.closed:
                return
            self._f.write(f"{self._now()} ==> {text}\n")
            self._f.flush()
            self._unflushed = False

    def flush(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.flush()
                self._unflushed = False

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.close()


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def deployer_alive(pid: int) -> bool:
    """True if ``pid`` is a live deployer process on this machine (not a zombie, not a
    recycled pid now used by something else)."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return True  # no /proc: trust the pid
    return b"deployer" in cmdline


def steps_by_state(record: RunRecord, states: Iterable[str]) -> list[StepRecord]:
    wanted = set(states)
    return [s for s in record.steps if s.state in wanted]
