"""Run records: ``.deployer/runs/<run-id>.json`` (checkpoint) and ``<run-id>.log``.

The executor owns one ``RunRecord`` per host run and asks a ``StateStore`` to write it
at every step transition; the write is atomic, so a deployer killed with SIGKILL
leaves either the previous or the next valid JSON, never a torn file. Nothing here
sees secrets: callers pass text already masked by the redactor (the executor masks
output tails, captured values and messages before they reach a record).

This package's rooms, one concern each (every name stays importable from here):

- ``records``: ``StepRecord``, ``RunRecord``, their JSON form and cached encoding;
- ``store``: ``StateStore``, snapshots and journaling, history queries;
- ``journal_lines``: the journal line format and its replay;
- ``atomic``: ``atomic_write``;
- ``digests``: masked values, keyed variable digests, the project's digest key;
- ``runlog``: ``RunLog``;
- ``identity``: operator, timestamps, run ids;
- ``liveness``: whether a pid is a live deployer.
"""

from deployer.outcomes import RunStatus, StepStatus
from deployer.state.atomic import atomic_write
from deployer.state.digests import key_id, plain_value, variable_digests
from deployer.state.identity import is_run_id, new_run_id, now_iso, operator
from deployer.state.journal_lines import apply_journal, journal_line
from deployer.state.liveness import deployer_alive, pid_alive
from deployer.state.records import (
    FORMAT_VERSION,
    TAIL_LINES,
    RunRecord,
    StepRecord,
    steps_by_state,
)
from deployer.state.runlog import RunLog
from deployer.state.store import JOURNAL_THRESHOLD, StateStore

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

__all__ = [
    "FAILED", "FORMAT_VERSION", "INTERRUPTED", "JOURNAL_THRESHOLD", "OK", "PENDING",
    "ROLLBACK_FAILED", "ROLLED_BACK", "RUNNING", "RUN_FAILED", "RUN_INTERRUPTED",
    "RUN_ROLLBACK_INCOMPLETE", "RUN_ROLLED_BACK", "RUN_RUNNING", "RUN_STATUSES",
    "RUN_STOPPED", "RUN_SUCCEEDED", "SKIPPED", "STEP_STATES", "TAIL_LINES", "RunLog",
    "RunRecord", "StateStore", "StepRecord", "apply_journal", "atomic_write",
    "deployer_alive", "is_run_id", "journal_line", "key_id", "new_run_id", "now_iso",
    "operator", "pid_alive", "plain_value", "steps_by_state", "variable_digests",
]
