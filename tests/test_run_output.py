"""RunOutput: what a run says is masked, logged, shown unless quiet, and its tail kept."""

from __future__ import annotations

from deployer.run_output import DIAGNOSE_LINES, RunOutput
from deployer.state import TAIL_LINES, StepRecord
from tests.rooms import MemoryJournal, Recorder

SECRET = "s3cr3t-value-xyz"


def _output() -> tuple[RunOutput, MemoryJournal, Recorder]:
    journal, events = MemoryJournal(), Recorder()
    return RunOutput("web1", journal, events, lambda t: t.replace(SECRET, "***")), journal, events


def test_a_notice_is_masked_before_it_is_kept_logged_or_shown() -> None:
    out, journal, events = _output()
    out.notice(f"token is {SECRET}", "warning")
    assert out.notices == ["token is ***"]
    assert journal.events == ["token is ***"]
    assert events.notices == [("token is ***", "warning")]


def test_output_lines_belong_to_the_current_step_and_are_masked() -> None:
    out, journal, events = _output()
    out.start("migrate")
    out.on_line("stdout", f"pw={SECRET}")
    assert journal.outputs == [("migrate", "stdout", "pw=***")]
    assert events.outputs == [("migrate", "pw=***")]
    assert list(out.tail) == ["pw=***"]
    out.start("next")
    assert list(out.tail) == []  # a new step starts its own tail


def test_quiet_output_is_logged_but_not_shown() -> None:
    out, journal, events = _output()
    out.start("a:check")
    with out.quiet():
        out.on_line("stdout", "probe says hi")
    out.on_line("stdout", "shown")
    assert [line for _, _, line in journal.outputs] == ["probe says hi", "shown"]
    assert events.outputs == [("a:check", "shown")]


def test_aside_collects_its_own_lines_and_gives_the_step_its_tail_back() -> None:
    out, _, events = _output()
    out.start("up")
    out.on_line("stderr", "container unhealthy")
    with out.aside() as lines:
        out.on_line("stdout", "NAME STATUS")
        assert lines == []  # filled when the block ends
    assert lines == ["NAME STATUS"]
    assert list(out.tail) == ["container unhealthy"]
    assert events.outputs == [("up", "container unhealthy")]  # the aside was quiet


def test_the_tail_is_bounded_and_a_record_keeps_its_last_lines() -> None:
    out, _, _ = _output()
    for i in range(DIAGNOSE_LINES + 5):
        out.on_line("stdout", f"line {i}")
    out.on_line("stdout", "   ")
    assert len(out.tail) == DIAGNOSE_LINES
    assert out.last_lines()[-2] == f"line {DIAGNOSE_LINES + 4}"
    assert len(out.last_lines()) == TAIL_LINES
    assert out.last_line() == f"line {DIAGNOSE_LINES + 4}"  # blank lines are passed over


def test_step_done_logs_the_state_and_defers_the_write() -> None:
    out, journal, events = _output()
    rec = StepRecord(id="a", name="a", index=1, kind="run", state="failed", exit_code=3,
                     message="boom")
    out.step_done(rec)
    assert journal.events == ["step a failed (exit 3): boom"]
    assert journal.pending and journal.saves == []
    assert events.finished == [("a", "failed")]
