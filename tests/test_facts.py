"""Host facts (deployer.facts): which facts a run needs, and resolving them through a
performer. The probe's transport is scripted here; the sshd and e2e tests run the real
probe against real hosts."""

from __future__ import annotations

from typing import Any

import pytest

from deployer import facts
from deployer.errors import TransportError
from deployer.lowering import RemoteScript
from deployer.models import Step, StepBody
from deployer.perform import Result
from deployer.steps.compose import detect_compose_command


def _step(kind: str, options: dict[str, Any], rollback: Any = None, **body: Any) -> Step:
    return Step(id="s", name="s", body=StepBody(kind=kind, options=options, **body),
                rollback=rollback)


def test_the_compose_kind_provides_the_compose_fact() -> None:
    fact = facts.get_fact("compose_command")
    assert fact.probe() == detect_compose_command()
    assert fact.parse(True, "noise\ndocker-compose\n") == "docker-compose"
    assert fact.parse(False, "docker compose\n") is None


@pytest.mark.parametrize("step, wanted", [
    (_step("compose", {"action": "up"}), ["compose_command"]),
    (_step("psql", {"sql": "SELECT 1"}), ["compose_command"]),  # compose exec postgres
    (_step("psql", {"sql": "SELECT 1", "client": "psql -h 127.0.0.1"}), []),
    (_step("run", {"command": "{{ compose_command | default('docker compose') }} ps"}),
     ["compose_command"]),
    (_step("run", {"command": "echo compose_command"}), []),  # text, not a template
    (_step("run", {"command": "docker version"}), []),
    (_step("run", {"command": "true"}, env={"CLI": "{{ compose_command }}"}),
     ["compose_command"]),
    (_step("run", {"command": "true"},
           rollback=StepBody(kind="compose", options={"action": "down"})),
     ["compose_command"]),
])
def test_needed(step: Step, wanted: list[str]) -> None:
    assert facts.needed([step]) == wanted
    assert facts.needed([step], {"compose_command": "docker compose"}) == []


class ScriptedPerformer:
    def __init__(self, result: Result) -> None:
        self.result = result
        self.calls: list[tuple[list[Any], float | None]] = []

    def perform_primitives(self, primitives: list[Any], timeout: float | None = None
                           ) -> Result:
        self.calls.append((primitives, timeout))
        return self.result


def test_resolve_probes_quietly_and_sets_the_variable() -> None:
    performer = ScriptedPerformer(Result(exit_code=0, stdout="docker-compose\n"))
    variables: dict[str, Any] = {}
    seen: list[str] = []
    notices = facts.resolve(performer, ["compose_command"], variables, "vps",
                            notice=seen.append)
    assert variables == {"compose_command": "docker-compose"}
    assert notices == seen == ["compose: using `docker-compose`"]
    ((primitives, timeout),) = performer.calls
    (script,) = primitives
    assert isinstance(script, RemoteScript) and not script.stream
    assert script.script == detect_compose_command().script
    assert script.what == "the compose detection" and timeout == 30


def test_resolve_leaves_a_pinned_fact_alone() -> None:
    performer = ScriptedPerformer(Result(exit_code=0, stdout="docker compose\n"))
    variables = {"compose_command": "/opt/bin/docker-compose"}
    assert facts.resolve(performer, ["compose_command"], variables, "vps") == []
    assert performer.calls == [] and variables["compose_command"] == "/opt/bin/docker-compose"


def test_resolve_fails_with_the_facts_hint_when_the_host_has_no_answer() -> None:
    performer = ScriptedPerformer(Result(exit_code=127, stdout=""))
    with pytest.raises(TransportError) as info:
        facts.resolve(performer, ["compose_command"], {}, "vps")
    assert "neither `docker compose` nor `docker-compose` works on vps" in str(info.value)
    assert "set var compose_command" in info.value.hint


def test_plan_notes_name_the_hosts_when_not_all() -> None:
    assert facts.plan_notes({"compose_command": []}, 2) == []
    (note,) = facts.plan_notes({"compose_command": ["stage"]}, 2)
    assert "(on stage)" in note and "compose_command" in note
    (note,) = facts.plan_notes({"compose_command": ["a", "b"]}, 2)
    assert "(on" not in note
