"""deployer/status.py: the containers parsed from `docker inspect` JSON lines (noise
skipped), each container's problem in words, the host verdict and the exit code."""

from __future__ import annotations

import json

import pytest

from deployer.status import (
    DEGRADED,
    DOWN,
    HEALTHY,
    UNKNOWN,
    Container,
    HostStatus,
    exit_code,
    parse_containers,
    parse_live_slot,
)


def _line(**over) -> str:
    d = {"service": "api", "name": "/shop_api_1", "state": "running", "health": "healthy",
         "image": "shop-api:latest", "image_id": "sha256:ab12", "started":
         "2026-12-03T19:03:35.165567039Z", "restarts": 0, "exit_code": 0}
    d.update(over)
    return json.dumps(d)


def test_parse_skips_noise_and_sorts_by_service() -> None:
    out = "\n".join(["Welcome to the host!", _line(service="worker", health=None),
                     "WARN[0000] The \"X\" variable is not set.", "{not json",
                     _line(service="api")])
    got = parse_containers(out)
    assert [c.service for c in got] == ["api", "worker"]
    assert got[0].name == "shop_api_1"  # the engine's leading slash is not part of it
    assert got[1].health is None and got[1].ok


@pytest.mark.parametrize("over, problem", [
    ({}, None),
    ({"health": None}, None),
    ({"health": "unhealthy"}, "unhealthy"),
    ({"health": "starting"}, "starting"),
    ({"state": "exited", "health": None, "exit_code": 137}, "exited with code 137"),
    ({"state": "restarting", "restarts": 4}, "restarting (restarted 4 times)"),
    ({"state": "created", "health": None}, "created"),
])
def test_problem_in_words(over, problem) -> None:
    (c,) = parse_containers(_line(**over))
    assert c.problem == problem
    assert c.ok is (problem is None)


def _status(*containers: Container, error: str | None = None) -> HostStatus:
    return HostStatus("vps", "127.0.0.1", containers=list(containers), error=error)


def test_verdicts_and_exit_codes() -> None:
    up = parse_containers(_line())[0]
    sick = parse_containers(_line(service="worker", health="unhealthy"))[0]
    gone = parse_containers(_line(service="worker", state="exited", health=None))[0]
    assert _status(up).verdict == HEALTHY
    assert _status(up, sick).verdict == DEGRADED
    assert _status(up, gone).verdict == DEGRADED
    assert _status(gone).verdict == DOWN
    assert _status().verdict == DOWN
    assert _status(up, error="connection refused").verdict == UNKNOWN
    assert exit_code([_status(up), _status(up)]) == 0
    assert exit_code([_status(up), _status(up, sick)]) == 1
    assert exit_code([_status(up, sick), _status(error="no route")]) == 3


def test_to_dict_carries_the_verdict_and_each_problem() -> None:
    data = _status(parse_containers(_line(state="exited", exit_code=1))[0]).to_dict()
    assert data["verdict"] == DOWN
    assert data["containers"][0]["problem"] == "exited with code 1"
    assert data["containers"][0]["ok"] is False
    json.dumps(data)  # serialisable as is


def test_drift_names_services_running_another_image_than_the_release() -> None:
    api = parse_containers(_line())[0]
    worker = parse_containers(_line(service="worker", image_id="sha256:ffff"))[0]
    status = _status(api, worker)
    assert status.drift == []  # no release recorded: nothing to compare with
    status.release = {"number": 3, "images": {"api": "sha256:ab12@shop-api@sha256:99",
                                              "worker": "sha256:0000", "db": "sha256:1"}}
    assert status.drift == ["worker"]
    assert status.to_dict()["drift"] == ["worker"]


def _slotted(live: str, **blue) -> HostStatus:
    probe = "\n".join([
        f"@@live {live}",
        _line(service="postgres", name="/shop-postgres-1", project="shop"),
        _line(name="/shop-api-1", project="shop", state="exited", health=None,
              exit_code=137),
        _line(name="/shop-blue-api-1", project="shop-blue", **blue),
        _line(name="/shop-green-api-1", project="shop-green", state="exited", health=None),
    ])
    return HostStatus("vps", "127.0.0.1", containers=parse_containers(probe),
                      live_slot=parse_live_slot(probe))


def test_behind_the_proxy_the_live_slot_decides_and_the_others_are_named() -> None:
    st = _slotted("blue")
    assert st.live_slot == "blue" and st.verdict == HEALTHY
    roles = {c.name: st.role(c) for c in st.containers}
    assert roles == {"shop-postgres-1": "", "shop-api-1": "replaced",
                     "shop-blue-api-1": "live", "shop-green-api-1": "idle"}
    data = st.to_dict()
    assert {c["name"]: (c["slot"], c["role"]) for c in data["containers"]}[
        "shop-green-api-1"] == ("green", "idle")
    assert _slotted("blue", health="unhealthy").verdict == DEGRADED
    assert _slotted("blue", state="exited", health=None).verdict == DEGRADED  # postgres runs


def test_before_the_first_switch_the_main_project_serves() -> None:
    st = _slotted("none")
    assert st.live_slot == "none"
    main_api = next(c for c in st.containers if c.name == "shop-api-1")
    assert st.role(main_api) == ""  # the main api counts: it exited
    assert st.verdict == DEGRADED


def test_without_a_proxy_nothing_is_a_slot() -> None:
    probe = _line(project="shop-blue-team")  # a project that merely ends in a word
    assert parse_live_slot(probe) is None
    (c,) = parse_containers(probe)
    assert c.slot == "" and HostStatus("vps", "h", containers=[c]).verdict == HEALTHY


def test_a_one_shot_job_that_ended_well_is_not_a_problem() -> None:
    probe = "\n".join([
        _line(name="/shop-api-1", restart_policy="unless-stopped"),
        _line(service="prestart", name="/shop-prestart-1", state="exited", health=None,
              exit_code=0, restart_policy="no"),
        _line(service="seed", name="/shop-seed-1", state="exited", health=None,
              exit_code=0, restart_policy=""),  # Compose v2: no `restart:` is ""
    ])
    st = HostStatus("vps", "h", containers=parse_containers(probe))
    assert st.verdict == HEALTHY and all(c.problem is None for c in st.containers)
    # ...but a failed one, or a service meant to run that stopped, is.
    for over in ({"exit_code": 1, "restart_policy": "no"},
                 {"exit_code": 0, "restart_policy": "unless-stopped"}):
        job = _line(service="prestart", name="/shop-prestart-1", state="exited",
                    health=None, **over)
        st = HostStatus("vps", "h", containers=parse_containers(_line() + "\n" + job))
        assert st.verdict == DEGRADED, over
    # The api stopped cleanly (docker stop: exit 0) is never "done".
    stopped = _line(name="/shop-api-1", state="exited", health=None, restart_policy="no")
    db = _line(service="db", name="/shop-db-1")
    st = HostStatus("vps", "h", containers=parse_containers(stopped + "\n" + db,
                                                            must_run={"api"}))
    assert st.verdict == DEGRADED and st.containers[0].problem == "exited with code 0"
