"""resume_plan: which steps a resume runs again, and why (pure, no host)."""

from __future__ import annotations

import pytest

from deployer.resume_plan import (
    AFTER,
    CHECK_FAILED,
    CHECK_PASSED,
    DONE,
    NEW,
    NOT_SELECTED,
    SECRET_CAPTURE,
    CheckOutcome,
    PastStep,
    checks_to_probe,
    forced_from,
    may_rerun_from,
    plan_resume,
)


def _reruns(plan) -> list[str]:
    return [d.id for d in plan.decisions if d.rerun]


def _reasons(plan) -> dict[str, str]:
    return {d.id: d.reason for d in plan.decisions}


def test_the_issue_case_seed_after_a_rolled_back_migrate_runs_again() -> None:
    """first-time failed at verify; the rollback undid migrate and build; seed_admin
    and check_image had nothing to undo and stayed ok."""
    steps = [PastStep("roles", "ok"), PastStep("build", "rolled_back"),
             PastStep("check_image", "ok"), PastStep("migrate", "rolled_back"),
             PastStep("seed_admin", "ok"), PastStep("up", "ok"),
             PastStep("verify", "failed")]
    plan = plan_resume(steps)
    assert _reruns(plan) == ["build", "check_image", "migrate", "seed_admin", "up", "verify"]
    assert _reasons(plan) == {"roles": DONE, "build": "rolled_back", "check_image": AFTER,
                              "migrate": "rolled_back", "seed_admin": AFTER, "up": AFTER,
                              "verify": "failed"}
    assert plan.first.id == "build"
    seed = next(d for d in plan.decisions if d.id == "seed_admin")
    assert seed.cause == "build" and seed.why() == "build runs before it"
    assert plan.lines() == [
        "done earlier in this run, not repeated: roles",
        "runs again: build (the rollback undid it)",
        "runs again: migrate (the rollback undid it)",
        "runs again: verify (it failed)",
        "runs again because build runs before them (what they did may depend on it): "
        "check_image, seed_admin, up",
    ]
    assert plan.again() == {"build": "the rollback undid it",
                            "check_image": "build runs before it",
                            "migrate": "the rollback undid it",
                            "seed_admin": "build runs before it",
                            "up": "build runs before it", "verify": "it failed"}


def test_a_plain_failure_keeps_what_was_done_before_it() -> None:
    steps = [PastStep("a", "ok"), PastStep("b", "skipped"), PastStep("c", "failed"),
             PastStep("d", "pending")]
    plan = plan_resume(steps)
    assert _reruns(plan) == ["c", "d"]
    assert plan.lines() == ["done earlier in this run, not repeated: a",
                            "runs again: c (it failed)"]
    assert plan.again() == {"c": "it failed"}  # d never ran: not "again"


@pytest.mark.parametrize("state, why", [
    ("interrupted", "it was interrupted"),
    ("running", "it was running when the run died"),
    ("rollback_failed", "undoing it failed part-way"),
    ("rolled_back", "the rollback undid it"),
])
def test_every_unfinished_state_reruns_and_forces_the_rest(state, why) -> None:
    steps = [PastStep("a", "ok"), PastStep("b", state), PastStep("c", "ok"),
             PastStep("d", "skipped")]
    plan = plan_resume(steps)
    assert _reruns(plan) == ["b", "c", "d"]  # a skipped step decides its when/skip_if again
    assert plan.lines()[1] == f"runs again: b ({why})"


def test_done_steps_after_a_continued_failure_run_again() -> None:
    """on_failure: continue let c and d run after b failed; b runs again, so do they."""
    steps = [PastStep("a", "ok"), PastStep("b", "failed"), PastStep("c", "ok"),
             PastStep("d", "failed")]
    assert _reasons(plan_resume(steps)) == {"a": DONE, "b": "failed", "c": AFTER,
                                            "d": "failed"}


def test_a_failing_check_reruns_its_step_and_everything_after() -> None:
    steps = [PastStep("build", "ok", has_check=True), PastStep("migrate", "ok", has_check=True),
             PastStep("seed", "ok", has_check=True), PastStep("up", "ok"),
             PastStep("verify", "failed")]
    assert checks_to_probe(steps) == ["build", "migrate", "seed"]
    plan = plan_resume(steps, {"build": CheckOutcome(True),
                               "migrate": CheckOutcome(False, "exit 1: not at head")})
    assert _reasons(plan) == {"build": CHECK_PASSED, "migrate": CHECK_FAILED, "seed": AFTER,
                              "up": AFTER, "verify": "failed"}
    assert plan.lines() == [
        "done earlier in this run, not repeated: build (check passed)",
        "runs again: migrate (its check failed: exit 1: not at head)",
        "runs again: verify (it failed)",
        "runs again because migrate runs before them (what they did may depend on it): "
        "seed, up",
    ]


def test_passing_checks_keep_their_steps() -> None:
    steps = [PastStep("a", "ok", has_check=True), PastStep("b", "ok"),
             PastStep("c", "interrupted")]
    plan = plan_resume(steps, {"a": CheckOutcome(True)})
    assert _reruns(plan) == ["c"]
    assert _reasons(plan)["a"] == CHECK_PASSED


def test_checks_after_the_first_rerun_are_not_probed() -> None:
    steps = [PastStep("a", "ok", has_check=True), PastStep("b", "rolled_back"),
             PastStep("c", "ok", has_check=True)]
    assert checks_to_probe(steps) == ["a"]
    # c's check is moot: b runs again before it
    plan = plan_resume(steps, {"a": CheckOutcome(True)})
    assert _reasons(plan) == {"a": CHECK_PASSED, "b": "rolled_back", "c": AFTER}


def test_a_missing_check_outcome_is_never_taken_as_passed() -> None:
    with pytest.raises(ValueError, match="step a"):
        plan_resume([PastStep("a", "ok", has_check=True), PastStep("b", "failed")])


def test_a_skipped_step_needs_no_check() -> None:
    steps = [PastStep("a", "skipped", has_check=True), PastStep("b", "failed")]
    assert checks_to_probe(steps) == []
    assert _reruns(plan_resume(steps)) == ["b"]


def test_a_secret_capture_reruns_and_forces_the_rest() -> None:
    steps = [PastStep("a", "ok"), PastStep("token", "ok", secret_capture=True),
             PastStep("use", "ok"), PastStep("last", "failed")]
    plan = plan_resume(steps)
    assert _reasons(plan) == {"a": DONE, "token": SECRET_CAPTURE, "use": AFTER,
                              "last": "failed"}
    assert "runs again: token (the value it captured holds a secret and was not stored)" \
        in plan.lines()


def test_steps_left_out_by_from_or_only_stay_out() -> None:
    steps = [PastStep("a", "skipped", not_selected=True), PastStep("b", "rolled_back"),
             PastStep("c", "skipped", not_selected=True), PastStep("d", "ok")]
    plan = plan_resume(steps)
    assert _reasons(plan) == {"a": NOT_SELECTED, "b": "rolled_back", "c": NOT_SELECTED,
                              "d": AFTER}


def test_a_step_added_to_the_runbook_forces_what_follows() -> None:
    steps = [PastStep("a", "ok"), PastStep("new", NEW), PastStep("b", "ok")]
    plan = plan_resume(steps)
    assert _reasons(plan) == {"a": DONE, "new": NEW, "b": AFTER}
    assert plan.lines() == [
        "done earlier in this run, not repeated: a",
        "runs again because new runs before them (what they did may depend on it): b"]
    assert plan.again() == {"b": "new runs before it"}


def test_where_reruns_may_start_before_checks_run() -> None:
    """The executor asks this before connecting (confirm questions it cannot ask)."""
    steps = [PastStep("a", "ok"), PastStep("b", "ok", has_check=True), PastStep("c", "ok"),
             PastStep("d", "failed")]
    assert may_rerun_from(steps) == 1
    assert forced_from(steps) == 3
    assert may_rerun_from([PastStep("a", "ok"), PastStep("b", "skipped")]) is None
    assert forced_from([PastStep("a", "ok", has_check=True)]) is None
