"""Console rendering of step output (deployer/cli/progress.py)."""

from __future__ import annotations

import io

from deployer.cli.progress import ConsoleEvents
from deployer.state import FAILED, OK, StepRecord

V2_WARNING = ('time="2026-12-03T19:04:48Z" level=warning msg="The \\"{}\\" variable is not '
              'set. Defaulting to a blank string."')
V1_WARNING = "The {} variable is not set. Defaulting to a blank string."


def events() -> tuple[ConsoleEvents, io.StringIO]:
    out = io.StringIO()
    return ConsoleEvents(stream=out, color=False, interactive=False), out


def test_unset_variable_warnings_become_one_line_at_the_end_of_the_step() -> None:
    ev, out = events()
    rec = StepRecord(id="up", name="up", index=1, state=OK)
    for i in range(30):
        ev.output("vps", "up", "stderr", V2_WARNING.format("SMTP_HOST" if i % 2 else "DB_URL"))
        if i == 10:
            ev.output("vps", "up", "stderr", "Container app-api-1  Started")
    ev.output("vps", "build", "stderr", V1_WARNING.format("OTHER"))
    ev.step_finished("vps", rec)
    lines = out.getvalue().splitlines()
    assert lines[0] == "vps up ! Container app-api-1  Started"
    assert lines[1] == ("vps up ! compose: 30 warnings 'variable is not set' for DB_URL, "
                        "SMTP_HOST (blank strings used)")
    assert lines[2].startswith("✓ vps up ok")
    assert len(lines) == 3  # the other step's warning waits for that step
    ev.step_finished("vps", StepRecord(id="build", name="build", index=2, state=FAILED))
    assert out.getvalue().splitlines()[3] == (
        "vps build ! compose: 1 warning 'variable is not set' for OTHER (blank strings used)")


def test_a_step_without_such_warnings_shows_no_summary() -> None:
    ev, out = events()
    ev.output("vps", "up", "stdout", "done")
    ev.step_finished("vps", StepRecord(id="up", name="up", index=1, state=OK))
    assert "variable is not set" not in out.getvalue()
    assert out.getvalue().splitlines()[0] == "vps up | done"
