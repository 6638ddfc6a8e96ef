"""Context collected when a compose/wait/http step fails (deployer.diagnose.context):
the probe command is built from the same compose invocation as the steps, and the run
summary shows a bounded part of it. The run against a real stack is in
test_context_e2e.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deployer.diagnose.context import shown_lines, stack_probe
from deployer.models import Step, StepBody


@dataclass
class Ctx:
    vars: dict[str, Any] = field(default_factory=dict)
    compose_cmd: str = "docker compose"
    project_dir: str = "."

    def render(self, value: Any, where: str = "") -> Any:
        return value

    def fact(self, name: str) -> str:
        assert name == "compose_command"
        return self.compose_cmd


def _step(kind: str, options: dict[str, Any] | None = None, **body: Any) -> Step:
    return Step(id="s", name="s", body=StepBody(kind=kind, options=options or {}, **body))


def test_compose_step_probe_uses_the_steps_project_and_sudo() -> None:
    ctx = Ctx(vars={"compose_project_dir": "/srv/app", "compose_project_name": "shop",
                    "compose_files": ["compose.yaml", "compose.prod.yaml"]})
    probe = stack_probe(_step("compose", {"action": "up", "wait": True}, sudo=True), ctx)
    assert probe is not None and probe.cwd == "/srv/app" and probe.sudo and not probe.check
    base = "docker compose -f compose.yaml -f compose.prod.yaml -p shop"
    assert f"{base} ps -a 2>&1" in probe.script
    assert f"{base} logs --no-color --tail 40 \"$svc\"" in probe.script
    assert "*exited*|*restarting*|*dead*|*unhealthy*" in probe.script
    assert f"for c in $({base} ps -q" in probe.script and ".State.Health.Log" in probe.script


def test_step_options_override_the_vars() -> None:
    probe = stack_probe(_step("compose", {"action": "up", "project_dir": "/opt/x",
                                          "project_name": "other"}),
                        Ctx(vars={"compose_project_dir": "/srv/app"}))
    assert probe is not None and probe.cwd == "/opt/x" and "-p other" in probe.script


def test_v1_gets_ps_and_logs_of_all_services() -> None:
    probe = stack_probe(_step("compose", {"action": "up"}),
                        Ctx(vars={"compose_project_dir": "/srv/app"},
                            compose_cmd="docker-compose"))
    assert probe is not None
    assert "docker-compose ps 2>&1" in probe.script and "ps -a --format" not in probe.script
    assert "docker-compose logs --no-color --tail 40 2>&1" in probe.script


def test_wait_and_http_steps_use_the_runbook_project_and_compose_sudo() -> None:
    ctx = Ctx(vars={"compose_project_dir": "/srv/app"})
    probe = stack_probe(_step("http", {"url": "http://127.0.0.1/health"}), ctx, sudo=True)
    assert probe is not None and probe.sudo and probe.cwd == "/srv/app"
    assert stack_probe(_step("wait", {"url": "http://x"}), Ctx()) is None  # no project


def test_other_kinds_and_bad_compose_commands_get_no_probe() -> None:
    ctx = Ctx(vars={"compose_project_dir": "/srv/app"})
    assert stack_probe(_step("run", {"command": "true"}), ctx) is None
    bad = Ctx(vars={"compose_project_dir": "/srv/app"}, compose_cmd="docker compose; rm -rf /")
    assert stack_probe(_step("compose", {"action": "up"}), bad) is None


def test_summary_shows_the_ps_table_and_the_end_of_each_failing_service_log() -> None:
    context = (["--- stack state after the failure: docker compose ps -a",
                "NAME  IMAGE  SERVICE  STATUS", "app-api-1  api  api  Exited (3)",
                "app-db-1  db  db  Up (healthy)"]
               + ["--- last 40 log lines of api (exited)"]
               + [f"api line {i}" for i in range(40)]
               + ["--- last 40 log lines of worker (restarting)"]
               + [f"worker line {i}" for i in range(40)])
    shown = shown_lines(context, limit=30)
    assert len(shown) <= 30
    assert shown[:4] == context[:4]
    assert "--- last 40 log lines of api (exited)" in shown and "api line 39" in shown
    assert "--- last 40 log lines of worker (restarting)" in shown
    assert shown[-1] == "worker line 39" and "api line 0" not in shown
    assert shown_lines(context[:6]) == context[:6]
