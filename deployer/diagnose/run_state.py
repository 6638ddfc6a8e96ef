"""Diagnoses of states of deployer's own making, each with the exact command that fixes
it: a lock left by a dead run, a resume refused because the inputs changed, and a
verification that fails after a resume whose --from/--only left out steps the rollback
had undone (resume_plan reruns undone steps, but not steps the operator left out).

The catalogue (``deployer-lock-held``, ``deployer-resume-refused``) recognises the
messages in any output; what a message cannot say is the *whole* command line the run
was started with. The run record can: ``rerun_command`` rebuilds it (inventory and
vars files from the record's input digests, ``--var`` names and the secrets file when
the caller passes the run's inputs; a ``--var`` value is never written out, it may be a
secret: ``NAME=<same value as run ...>``). ``record_diagnoses`` looks at a failed run's
record; ``lock_diagnosis`` and ``resume_refused_diagnosis`` complete the catalogue's
answer with the holder's / the refused run's own command.

Pure functions over records (``deployer.state.RunRecord`` or its dict form).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from deployer.diagnose.matcher import Diagnosis

VERIFY_KINDS = ("http", "wait")
UNDONE = ("rolled_back", "rollback_failed")
_LEFT_OUT_PREFIXES = ("before --from ", "not selected (--only ")


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _inputs_from_digests(digests: Mapping[str, str]) -> tuple[str | None, list[str]]:
    """The inventory and the vars files a run read (its input digests are keyed
    ``<what>:<path>``)."""
    inventory = None
    vars_files: list[str] = []
    for key in digests:
        what, _, path = key.partition(":")
        if what == "inventory" and path:
            inventory = path
        elif what == "vars" and path:
            vars_files.append(path)
    return inventory, vars_files


def rerun_command(record: Any, *, resume: bool = True, force: bool = False,
                  inputs: Mapping[str, Any] | None = None,
                  keep_selection: bool = False) -> str:
    """The ``deployer run`` command line that continues ``record``'s run with the inputs
    it was started with.

    ``inputs`` (what the CLI knows: ``inventory``, ``vars_files``, ``secrets_file``)
    wins over what the record's digests tell. The --var values are not repeated: a
    resume reuses the run's own.
    --from/--only are dropped unless ``keep_selection``: a resume without them is what
    lets every undone step run again.
    """
    inputs = inputs or {}
    inventory, vars_files = _inputs_from_digests(_get(record, "digests", {}) or {})
    inventory = inputs.get("inventory") or inventory
    vars_files = list(inputs.get("vars_files") or vars_files)
    words = ["deployer"]
    if inventory:
        words += ["-i", str(inventory)]
    words += ["run", str(_get(record, "runbook", "<runbook>")),
              "--host", str(_get(record, "host", "<host>"))]
    for path in vars_files:
        words += ["--vars-file", str(path)]
    # No --var: a resume (and a rollback) reuses the run's own --var values.
    if inputs.get("secrets_file"):
        words += ["--secrets-file", str(inputs["secrets_file"])]
    options = _get(record, "options", {}) or {}
    if keep_selection:
        if options.get("from_step"):
            words += ["--from", str(options["from_step"])]
        if options.get("only_step"):
            words += ["--only", str(options["only_step"])]
    if resume:
        words.append("--resume")
    if force:
        words.append("--force")
    return " ".join(_quote(w) for w in words)


def _quote(word: str) -> str:
    # `<same value as run X>` placeholders stay readable: they are for a person to fill in
    if "=<same value as run " in word:
        name, _, rest = word.partition("=")
        return f"{shlex.quote(name)}=<{rest[1:]}"
    return shlex.quote(word)


def _steps(record: Any) -> list[Any]:
    return list(_get(record, "steps", []) or [])


def _left_out(step: Any) -> bool:
    message = str(_get(step, "message", "") or "")
    return _get(step, "state") == "skipped" and message.startswith(_LEFT_OUT_PREFIXES)


def resume_left_undone(record: Any, failed_step: str | None = None) -> list[str]:
    """Ids of the steps before the failed verification that a rollback undid and this
    run did not run again (left out by --from/--only, or kept by a resume from an older
    deployer): what the verification may be missing. ``failed_step`` defaults to the
    record's (the executor knows it before the record says so)."""
    steps = _steps(record)
    failed = failed_step or _get(record, "failed_step")
    ids = [_get(s, "id") for s in steps]
    if failed not in ids:
        return []
    failed_rec = steps[ids.index(failed)]
    if _get(failed_rec, "kind") not in VERIFY_KINDS:
        return []
    before = steps[:ids.index(failed)]
    return [_get(s, "id") for s in before if _get(s, "state") in UNDONE or (
        _left_out(s) and _undone_earlier(record, _get(s, "id")))]


def _undone_earlier(record: Any, step_id: str) -> bool:
    """Whether an earlier rollback of this run undid ``step_id`` (the record's last
    rollback summary lists what it undid)."""
    rollback = _get(record, "rollback", {}) or {}
    return step_id in (rollback.get("undone") or ())


def record_diagnoses(record: Any, inputs: Mapping[str, Any] | None = None,
                     failed_step: str | None = None) -> list[Diagnosis]:
    """Diagnoses a failed run's own record gives (empty when it gives none)."""
    found: list[Diagnosis] = []
    undone = resume_left_undone(record, failed_step)
    if undone and _get(record, "resumes"):
        options = _get(record, "options", {}) or {}
        how = ("--from " + str(options["from_step"]) if options.get("from_step") else
               "--only " + str(options["only_step"]) if options.get("only_step") else
               "an older resume")
        failed = failed_step or _get(record, "failed_step")
        found.append(Diagnosis(
            id="deployer-resume-left-undone",
            title="A verification failed after a resume that left undone steps out",
            area="deployer",
            cause=(f"Step {failed} checks the result of steps {', '.join(undone)}, which the "
                   f"rollback of this run undid; the resume ({how}) did not run them again, "
                   "so the host lacks what they did (a migration, an uploaded file, a "
                   "started service) and the check fails for that reason, not because the "
                   "release is broken."),
            fix=("Resume without --from/--only, so that every undone step and everything "
                 "after it runs again (`deployer plan` shows which):\n  "
                 + rerun_command(record, inputs=inputs)),
            matched_line=f"undone and not run again: {', '.join(undone)}",
            score=80))
    return found


def lock_diagnosis(holder: Any, holder_record: Any | None = None,
                   inputs: Mapping[str, Any] | None = None) -> Diagnosis:
    """The lock held by ``holder`` (a ``LockInfo``), with the commands that check it,
    remove it if its run is dead, and continue that run with its own inputs."""
    host = _get(holder, "host", "<host>")
    pid = _get(holder, "pid", "?")
    who = _get(holder, "who", "?")
    run_id = _get(holder, "run_id", "")
    runbook = _get(holder, "runbook", "<runbook>")
    record = holder_record if holder_record is not None else {
        "id": run_id, "runbook": runbook, "host": host}
    machine = str(who).split("@", 1)[-1]
    return Diagnosis(
        id="deployer-lock-held",
        title="The host's deploy lock is held (possibly by a run that died)",
        area="deployer",
        cause=(f"Run {run_id} of runbook {runbook} (pid {pid} on {who}) holds the lock of "
               f"host {host}. If that process is gone, the lock is stale and stays until "
               "it is removed."),
        fix=(f"On {machine}: ps -p {pid}   (a live deployer: wait for it to finish)\n"
             f"If it is dead: deployer unlock --host {shlex.quote(str(host))}\n"
             f"then continue that run: {rerun_command(record, inputs=inputs)}"),
        matched_line=f"host {host} is locked by {who} (pid {pid})",
        score=90)


def resume_refused_diagnosis(record: Any, changes: Sequence[str] | Iterable[str],
                             inputs: Mapping[str, Any] | None = None) -> Diagnosis:
    """A resume of ``record`` refused because its inputs changed (``changes`` as the
    refusal lists them), with the exact commands for each way out."""
    changes = list(changes)
    run_id = _get(record, "id", "")
    same = rerun_command(record, inputs=inputs, keep_selection=True)
    fresh = rerun_command(record, resume=False, inputs=inputs)
    forced = rerun_command(record, force=True, inputs=inputs, keep_selection=True)
    plan = fresh.replace(" run ", " plan ", 1)
    return Diagnosis(
        id="deployer-resume-refused",
        title="deployer refused to resume a run whose inputs changed",
        area="deployer",
        cause=(f"Run {run_id} was planned from other inputs than the ones given now "
               f"({'; '.join(changes) or 'see the refusal'}); resuming would mix steps done "
               "with the old inputs and steps run with the new ones."),
        fix=(f"See what changed: deployer show {run_id}; {plan}\n"
             f"Same inputs intended (a file edited by mistake, a --var missing): restore "
             f"them, then: {same}\n"
             f"New inputs intended: start a new run: {fresh}\n"
             f"or resume with them deliberately: {forced}"),
        matched_line=f"refusing to resume run {run_id}: its inputs changed since",
        score=90)
