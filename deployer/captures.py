"""Captured values a run can use without running the steps that capture them.

A run's captured values come from its own steps. Two cases need them from elsewhere:
a resumed run (or ``deployer rollback``) reads the values its record holds in clear
(``known_captures``; a value that held a secret was masked, never stored); and with
``--from``/``--only`` the steps left out do not run, so ``backfill`` takes each value
a selected step needs from the latest earlier run of this runbook on this host that
recorded it, or refuses (``UsageError``) naming the ``--var`` that would stand in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from deployer.errors import UsageError
from deployer.models import Step, StepBody
from deployer.outcomes import StepStatus
from deployer.state import RunRecord, StepRecord


def known_captures(record: RunRecord) -> dict[str, str]:
    """Captured values a record holds in clear (masked ones are not usable)."""
    usable = (StepStatus.OK, StepStatus.SKIPPED, StepStatus.ROLLED_BACK,
              StepStatus.ROLLBACK_FAILED)
    out: dict[str, str] = {}
    for rec in record.steps:
        if rec.state in usable:
            for name, value in rec.captured.items():
                if name not in rec.captured_masked:
                    out[name] = value
    return out


def _template_texts(step: Step, env: Any) -> list[str]:
    import jinja2

    from deployer.templating import strings_in

    texts: list[str] = []
    bodies = [step.body] + ([step.rollback] if isinstance(step.rollback, StepBody) else [])
    for body in bodies:
        texts += strings_in(body.options) + strings_in(body.env) + strings_in(body.cwd)
        for key in ("template", "file", "src"):
            name = body.options.get(key)
            if isinstance(name, str) and "{{" not in name and env.loader is not None:
                try:
                    texts.append(env.loader.get_source(env, name)[0])
                except (jinja2.TemplateNotFound, OSError):
                    pass
    if step.when is not None and not isinstance(step.when, bool):
        text = str(step.when).strip()
        texts.append(text if "{{" in text else "{{ " + text + " }}")
    return texts + strings_in(step.skip_if) + strings_in(step.check) + strings_in(step.confirm)


def referenced_names(step: Step, project_dir: str) -> set[str]:
    """Template names a step (with its rollback, when, skip_if, check, confirm, and
    any template file it names) refers to: which captures the step needs."""
    import jinja2
    import jinja2.meta

    from deployer.templating import environment

    env = environment(project_dir)
    names: set[str] = set()
    for text in _template_texts(step, env):
        try:
            names |= jinja2.meta.find_undeclared_variables(env.parse(text))
        except jinja2.TemplateSyntaxError:
            continue
    return names


def _missing(steps: Sequence[Step], recs: Sequence[StepRecord], first: int,
             known: Callable[[str], bool]) -> list[int]:
    return [i for i, step in enumerate(steps[:first])
            if step.capture and not known(step.capture) and recs[i].state != StepStatus.OK]


def backfill(steps: Sequence[Step], recs: Sequence[StepRecord], first: int,
             selected: Callable[[int], bool], known: Callable[[str], bool],
             history: Callable[[], Iterable[RunRecord]], project_dir: str,
             notice: Callable[[str], None]) -> dict[str, str]:
    """Captures of steps before ``first`` that will not run and that a selected step
    needs: from ``history`` (newest first), or ``UsageError``. ``known`` says whether
    a name already has a value (captured, or given as a variable). Sets each value
    found on the step's record (``recs``) and says where it came from (``notice``)."""
    out: dict[str, str] = {}
    missing = _missing(steps, recs, first, known)
    if not missing:
        return out
    used: set[str] = set()
    for i, step in enumerate(steps):
        if selected(i) and recs[i].state not in (StepStatus.OK, StepStatus.SKIPPED):
            used |= referenced_names(step, project_dir)
    missing = [i for i in missing if steps[i].capture in used]
    if not missing:
        return out
    past_runs = list(history())
    unresolved = []
    for i in missing:
        step, name = steps[i], str(steps[i].capture)
        found = next((past for past in past_runs if _recorded(past, step.id, name)), None)
        if found is None:
            unresolved.append(step)
            continue
        old = found.find(step.id)
        assert old is not None
        out[name] = old.captured[name]
        recs[i].captured = {name: old.captured[name]}
        notice(f"{name} (captured by {step.id}) taken from run {found.id}")
    if unresolved:
        names = ", ".join(f"{s.capture} (step {s.id})" for s in unresolved)
        raise UsageError(
            f"steps before the starting step capture values no earlier run recorded: "
            f"{names}", hint="start earlier, or give them with "
            + " ".join(f"--var {s.capture}=VALUE" for s in unresolved))
    return out


def _recorded(run: RunRecord, step_id: str, name: str) -> bool:
    old = run.find(step_id)
    return (old is not None and old.state in (StepStatus.OK, StepStatus.ROLLED_BACK)
            and name in old.captured and name not in old.captured_masked)
