"""``HostState``: the host state directory of one app, read and written through a
transport (``run`` for writes and reads, ``post``/``collect`` for appends).

A write is one round trip whatever it carries (audit lines, a run record, a release).
An append (audit lines and one journal line of a running record) is posted: it costs
no round trip of its own, and the reads replay the journal over the record.

Reads parse what the scripts print; a record that is not valid JSON (a foreign file)
is skipped, never fatal, so one bad file cannot hide the history.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from deployer.errors import DeployerError, TransportError
from deployer.hoststate import scripts
from deployer.hoststate.records import AuditEvent, Release
from deployer.lock import unsafe_error
from deployer.models import Host
from deployer.state import RunRecord, apply_journal, is_run_id
from deployer.transport import RunResult, Transport

SEQ_KEY = "host_seq"  # the last journal line a host snapshot holds (hoststate.journal)


def _record(text: str, journal: str = "") -> RunRecord | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not (isinstance(data, dict) and is_run_id(str(data.get("id", "")))):
        return None
    apply_journal(data, journal.encode(), SEQ_KEY)
    try:
        return RunRecord.from_dict(data)
    except (TypeError, ValueError, KeyError):
        return None


class HostStateError(TransportError):
    """The host state directory could not be read or written."""


class HostState:
    """The state directory ``path`` (as configured: absolute or ``~/...``) on ``host``."""

    def __init__(self, transport: Transport, host: Host, path: str) -> None:
        self.transport = transport
        self.host = host
        self.path = path
        self._checked = ""  # the physical path a write of this object checked
        self._last_release: int | None = None  # the last release number a write saw

    def _run(self, script: str, stdin: str | None = None) -> tuple[str, str]:
        return self._run_answer(self.transport.run(script, stdin=stdin, check=False,
                                                   timeout=60))

    def _run_answer(self, result: RunResult) -> tuple[str, str]:
        """(first line, the rest) of a script's answer; raises on a failed one."""
        if result.exit_code != 0:
            tail = " ".join(result.tail[-3:]) if result.tail else ""
            raise HostStateError(f"host state {self.path} on {self.host.name}: exit "
                                 f"{result.exit_code}: {tail}".rstrip(": "))
        head, _, rest = result.stdout.partition("\n")
        if head.strip() == "UNSAFE":
            raise unsafe_error(self.host, rest.strip())
        return head.strip(), rest

    def _blob(self, events: Sequence[AuditEvent], record: RunRecord | None,
              release: Release | None, host_seq: int) -> tuple[int, int, int, str, str]:
        """(audit, record, release) byte counts, the run id and the stdin of a write."""
        audit = "".join(e.to_json() + "\n" for e in events).encode()
        run_id = record.id if record is not None else ""
        if record is not None and not is_run_id(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        rec = b""
        if record is not None:
            text = record.encode()
            rec = (f'{{"{SEQ_KEY}": {int(host_seq)}, ' + text[1:]).encode()
        rel = (release.to_json() + "\n").encode() if release else b""
        return len(audit), len(rec), len(rel), run_id, (audit + rec + rel).decode()

    def write(self, events: Sequence[AuditEvent] = (), record: RunRecord | None = None,
              release: Release | None = None, host_seq: int = 0) -> None:
        """Append ``events`` and ``release`` and replace the run record (which holds
        the journal lines up to ``host_seq``; its journal is removed), in one round
        trip. Raises ``HostStateError`` if the input did not arrive whole."""
        n_audit, n_rec, n_rel, run_id, data = self._blob(events, record, release, host_seq)
        if not (n_audit or n_rec or n_rel):
            return
        durable = record is not None and record.status != "running"
        state = "RECHECK"
        if self._checked:
            state, rest = self._run(scripts.write_script(
                self.path, n_audit, n_rec, n_rel, run_id, durable,
                checked=self._checked), stdin=data)
        if state == "RECHECK":
            state, rest = self._run(scripts.write_script(self.path, n_audit, n_rec, n_rel,
                                                         run_id, durable), stdin=data)
        self._written(state, rest)

    def _written(self, state: str, rest: str) -> None:
        word, _, where = state.partition(" ")
        if word != "WRITTEN":
            raise HostStateError(f"host state {self.path} on {self.host.name}: the write "
                                 f"did not arrive whole ({state or 'no answer'}); nothing "
                                 "was changed")
        self._checked = where
        try:
            last = json.loads(rest.strip() or "{}")
        except ValueError:
            last = None  # a foreign last line: next_release_number reads them all
        self._last_release = last.get("number", 0) if isinstance(last, dict) else None
        if not isinstance(self._last_release, int):
            self._last_release = None

    def post_write(self, events: Sequence[AuditEvent], record: RunRecord,
                   release: Release | None, host_seq: int,
                   on_done: Callable[[str], None]) -> bool:
        """``write``, posted (``Transport.post``): it rides in front of the next
        command and costs no round trip. ``on_done`` hears ``""`` once it was written,
        else why not (the caller writes again later). False, with nothing sent: the
        transport cannot post now; the caller uses ``write``."""
        n_audit, n_rec, n_rel, run_id, data = self._blob(events, record, release, host_seq)
        durable = record.status != "running"
        script = scripts.write_script(self.path, n_audit, n_rec, n_rel, run_id, durable,
                                      checked=self._checked)

        def done(result: RunResult | None) -> None:
            try:
                if result is None:
                    raise HostStateError(f"host state {self.path} on {self.host.name}: "
                                         "the connection was lost before the answer")
                head, _, rest = result.stdout.partition("\n")
                if result.exit_code != 0 or head.strip() == "UNSAFE":
                    self._run_answer(result)
                self._written(head.strip(), rest)
            except DeployerError as exc:
                self._checked = ""  # the next write checks the directory again
                on_done(str(exc))
                return
            on_done("")

        return self.transport.post(script, done, stdin=data, fork=True)

    def append(self, run_id: str, events: Sequence[AuditEvent], journal_line: str,
               on_done: Callable[[bool], None]) -> bool:
        """Post ``events`` and one journal line of run ``run_id`` (``Transport.post``:
        no round trip of its own); ``on_done(ok)`` hears whether they were written.
        False, with nothing sent: no write of this object checked the directory yet,
        the texts are over ``scripts.APPEND_LIMIT``, or the transport cannot post;
        the caller makes a full ``write`` instead."""
        audit = "".join(e.to_json() + "\n" for e in events)
        if (not self._checked or not is_run_id(run_id)
                or max(len(audit.encode()), len(journal_line.encode())) > scripts.APPEND_LIMIT):
            return False

        def done(result: RunResult | None) -> None:
            ok = result is not None and result.exit_code == 0 \
                and result.stdout.strip() == "APPENDED"
            if not ok:
                self._checked = ""  # the next write checks the directory again
            on_done(ok)

        script = scripts.append_script(self._checked, run_id, audit, journal_line)
        return self.transport.post(script, done)

    def settle(self) -> None:
        """Hear the answers of the appends posted so far (each ``on_done`` runs)."""
        self.transport.collect()

    def runs(self) -> list[RunRecord]:
        """Every run record on the host, oldest run id first."""
        state, rest = self._run(scripts.read_runs_script(self.path))
        if state == "EMPTY":
            return []
        out = []
        chunks = rest.split("\0")
        for text, journal in zip(chunks[0::2], chunks[1::2], strict=False):
            record = _record(text, journal)
            if record is not None:
                out.append(record)
        return sorted(out, key=lambda r: r.id)

    def run_record(self, run_id: str) -> RunRecord | None:
        if not is_run_id(run_id):
            return None
        state, rest = self._run(scripts.read_run_script(self.path, run_id))
        text, _, journal = rest.partition("\0")
        return _record(text, journal) if state == "RUN" and text.strip() else None

    def _lines(self, name: str, tail: int = 0) -> list[dict[str, Any]]:
        state, rest = self._run(scripts.read_lines_script(self.path, name, tail))
        out = []
        for line in rest.splitlines() if state == "LINES" else []:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                out.append(data)
        return out

    def audit(self, tail: int = 0) -> list[AuditEvent]:
        """The audit log, or its last ``tail`` lines."""
        return [AuditEvent.from_dict(d) for d in self._lines("audit.jsonl", tail)]

    def releases(self) -> list[Release]:
        """Every release, in the order recorded (numbers ascending)."""
        return [Release.from_dict(d) for d in self._lines("releases.jsonl")
                if isinstance(d.get("number"), int)]

    def next_release_number(self) -> int:
        """The number the next release gets. Called under the deploy lock, which is
        what keeps two deploys from taking the same number, so the number the run's
        earlier write saw still holds (no round trip of its own)."""
        if self._last_release is not None:
            return self._last_release + 1
        return max((r.number for r in self.releases()), default=0) + 1
