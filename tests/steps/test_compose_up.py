"""``compose up``'s record and built-in undo, run for real by bash on both flavours.

A small stand-in Docker engine (images as tag files holding an id, containers as
files holding service, running state, image id and image name) and a stand-in
Compose that recreates a service's container when the image its name points to
changed, as both Compose versions do. v1 (``docker-compose``) lists stopped
containers in ``ps -q``, v2 (``docker compose``) only running ones, so the scripts
are checked against the difference the undo has to live with. Real Docker runs the
same scripts in tests/e2e/test_compose_undo.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deployer.commands import RemoteCommand
from deployer.steps import compose
from tests.steps.conftest import FixtureContext, make_body, make_step

FAKE_DOCKER = r"""#!/bin/bash
echo "docker $*" >> "$FAKE/log"
key() { local n="$1"; case "${n##*/}" in *:*) ;; *) n="$n:latest" ;; esac
        printf '%s' "$n" | tr '/:' '__'; }
resolve() {  # an id or a name -> the id, or fail
  case "$1" in sha256:*) [ -f "$FAKE/ids/$1" ] && echo "$1" ;;
    *) [ -f "$FAKE/images/$(key "$1")" ] && cat "$FAKE/images/$(key "$1")" ;; esac; }
case "$1" in
  compose) shift; [ "$1" = version ] && exit 0; FLAVOUR=v2 exec docker-compose "$@" ;;
  image)
    if [ "$2" = inspect ] && [ "$3" = -f ]; then resolve "$5"; exit $?; fi
    if [ "$2" = inspect ]; then resolve "$3" >/dev/null; exit $?; fi ;;
  tag) id=$(resolve "$2") || exit 1; echo "$id" > "$FAKE/images/$(key "$3")"; exit 0 ;;
  inspect)
    read -r svc running image name < "$FAKE/containers/$4" || exit 1
    case "$3" in
      '{{.State.Running}} {{.Image}} {{.Config.Image}}') echo "$running $image $name" ;;
      '{{.State.Running}}') echo "$running" ;;
      '{{.Image}}') echo "$image" ;;
      '{{.Config.Image}}') echo "$name" ;;
      '{{.Name}}') echo "/$svc" ;;
      *) if [ "$running" = true ]; then echo "running none 0"; else echo "exited none 0"; fi ;;
    esac
    exit 0 ;;
esac
exit 2
"""

FAKE_COMPOSE = r"""#!/bin/bash
echo "compose $*" >> "$FAKE/log"
while :; do case "$1" in -f|-p|--project-directory|--env-file) shift 2 ;; *) break ;; esac; done
cmd=$1; shift
flags=(); svcs=()
for a in "$@"; do case "$a" in -*) flags+=("$a") ;; *) svcs+=("$a") ;; esac; done
[ ${#svcs[@]} -gt 0 ] || mapfile -t svcs < "$FAKE/services"
containers() {  # ids of the containers of service $1
  for f in "$FAKE"/containers/*; do
    [ -e "$f" ] || continue; read -r s r _ < "$f"; [ "$s" = "$1" ] || continue
    if [ "$FLAVOUR" = v2 ] && [ "$r" != true ]; then continue; fi
    basename "$f"
  done; }
case "$cmd" in
  config) cat "$FAKE/services" ;;
  ps) for s in "${svcs[@]}"; do containers "$s"; done ;;
  stop) for s in "${svcs[@]}"; do for f in "$FAKE"/containers/*; do
          [ -e "$f" ] || continue; read -r c r i n < "$f"
          [ "$c" = "$s" ] && echo "$c false $i $n" > "$f"; done; done ;;
  up)
    for s in "${svcs[@]}"; do
      name=$(cat "$FAKE/image_of/$s"); id=$(docker image inspect -f '{{.Id}}' "$name") || exit 1
      current=$(FLAVOUR=v1; containers "$s" | head -n 1)
      if [ -n "$current" ]; then
        read -r c r i n < "$FAKE/containers/$current"
        if [ "$i" = "$id" ]; then
          echo "$s true $i $name" > "$FAKE/containers/$current"; continue
        fi
        rm "$FAKE/containers/$current"
      fi
      echo "$s true $id $name" > "$FAKE/containers/c$RANDOM$RANDOM"
    done
    # the image named in fail_up starts, then is not healthy in time (as `--wait` fails)
    if [ -e "$FAKE/fail_up" ] && [ "$(cat "$FAKE/fail_up")" = "$id" ]; then
      echo "up failed" >&2; exit 1
    fi ;;
esac
exit 0
"""

COMMANDS = {"v1": "docker-compose", "v2": "docker compose"}


class Engine:
    def __init__(self, root: Path, flavour: str) -> None:
        self.root, self.flavour = root, flavour
        for name in ("bin", "images", "ids", "containers", "image_of", "home"):
            (root / name).mkdir()
        for name, text in (("docker", FAKE_DOCKER), ("docker-compose", FAKE_COMPOSE)):
            (root / "bin" / name).write_text(text)
            (root / "bin" / name).chmod(0o755)
        (root / "services").write_text("postgres\napi\n")
        (root / "image_of" / "api").write_text("shop-api:latest\n")
        (root / "image_of" / "postgres").write_text("postgres:15\n")
        self.image("postgres:15", "sha256:pg")

    def image(self, name: str, image_id: str) -> None:
        (self.root / "ids" / image_id).write_text("")
        key = name.replace("/", "_").replace(":", "_")
        (self.root / "images" / key).write_text(image_id + "\n")

    def tag(self, name: str) -> str:
        return (self.root / "images" / name.replace(":", "_")).read_text().strip()

    def container(self, service: str, running: bool, image_id: str, name: str) -> str:
        cid = f"{service}-{image_id[7:]}-{len(list((self.root / 'containers').iterdir()))}"
        (self.root / "containers" / cid).write_text(
            f"{service} {'true' if running else 'false'} {image_id} {name}\n")
        return cid

    def running(self, service: str) -> list[str]:
        """Image ids of the service's running containers."""
        found = []
        for path in (self.root / "containers").iterdir():
            svc, running, image_id, _ = path.read_text().split()
            if svc == service and running == "true":
                found.append(image_id)
        return found

    def log(self) -> str:
        path = self.root / "log"
        return path.read_text() if path.exists() else ""

    def run(self, command: RemoteCommand) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.root / 'bin'}:/usr/bin:/bin", "FAKE": str(self.root),
               "HOME": str(self.root / "home")}
        return subprocess.run(["/bin/bash", "-e", "-o", "pipefail", "-c", command.script],
                              env=env, cwd=self.root, capture_output=True, text=True,
                              timeout=60)


@pytest.fixture(params=["v1", "v2"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    return Engine(tmp_path, request.param)


def up_step(engine: Engine, **options) -> tuple[RemoteCommand, RemoteCommand]:
    raw = {"compose": {"action": "up", "services": ["api"], **options}}
    ctx = FixtureContext({"compose_project_name": "shop"},
                         compose_cmd=COMMANDS[engine.flavour])
    body, step = make_body(raw), make_step(raw)
    (do,) = compose.build(body, ctx, step)
    (undo,) = compose.auto_rollback(body, ctx, step)
    return do, undo


def test_a_service_started_by_up_is_stopped_by_its_undo(engine: Engine) -> None:
    engine.image("shop-api:latest", "sha256:new")
    do, undo = up_step(engine)
    assert engine.run(do).returncode == 0
    assert engine.running("api") == ["sha256:new"]

    result = engine.run(undo)
    assert result.returncode == 0, result.stderr
    assert engine.running("api") == []
    assert "stopped api: it was not running before" in result.stdout


def test_a_service_stopped_before_is_stopped_again(engine: Engine) -> None:
    engine.image("shop-api:latest", "sha256:new")
    engine.container("api", False, "sha256:new", "shop-api:latest")
    do, undo = up_step(engine)
    assert engine.run(do).returncode == 0
    assert engine.running("api") == ["sha256:new"]
    assert engine.run(undo).returncode == 0
    assert engine.running("api") == []


def test_a_recreated_service_runs_its_previous_image_and_tags_stay(engine: Engine) -> None:
    engine.image("shop-api:latest", "sha256:old")
    engine.container("api", True, "sha256:old", "shop-api:latest")
    do, undo = up_step(engine, wait=True)
    engine.image("shop-api:latest", "sha256:new")  # what a build step did
    assert engine.run(do).returncode == 0
    assert engine.running("api") == ["sha256:new"]

    result = engine.run(undo)
    assert result.returncode == 0, result.stderr
    assert engine.running("api") == ["sha256:old"]
    # the tag is the build's business (its own undo): a migration downgrade run after
    # this undo still gets the new image under the name
    assert engine.tag("shop-api:latest") == "sha256:new"
    assert "up -d --no-build --no-deps --force-recreate" in engine.log()
    assert "api runs its previous image sha256:old again" in result.stdout


def test_a_service_up_did_not_recreate_is_left_alone(engine: Engine) -> None:
    engine.image("shop-api:latest", "sha256:old")
    engine.container("api", True, "sha256:old", "shop-api:latest")
    do, undo = up_step(engine)
    assert engine.run(do).returncode == 0
    before_undo = len(engine.log().splitlines())
    result = engine.run(undo)
    assert result.returncode == 0, result.stderr
    assert engine.running("api") == ["sha256:old"]
    after = engine.log().splitlines()[before_undo:]
    assert not [line for line in after if " stop" in line or " up " in line], after


def test_previous_image_gone_stops_the_service_and_fails(engine: Engine) -> None:
    engine.image("shop-api:latest", "sha256:old")
    engine.container("api", True, "sha256:old", "shop-api:latest")
    do, undo = up_step(engine)
    engine.image("shop-api:latest", "sha256:new")
    assert engine.run(do).returncode == 0
    (engine.root / "ids" / "sha256:old").unlink()  # pruned

    result = engine.run(undo)
    assert result.returncode == 1
    assert engine.running("api") == []
    assert "previous image of api (sha256:old) no longer exists" in result.stderr


def test_a_failed_up_puts_back_what_ran_before_and_a_retry_still_knows_it(
        engine: Engine) -> None:
    engine.image("shop-api:latest", "sha256:old")
    engine.container("api", True, "sha256:old", "shop-api:latest")
    do, undo = up_step(engine, wait=True)
    engine.image("shop-api:latest", "sha256:new")
    (engine.root / "fail_up").write_text("sha256:new")
    result = engine.run(do)
    assert result.returncode == 1
    assert "compose up failed: putting back what ran before it" in result.stderr
    assert engine.running("api") == ["sha256:old"]
    assert engine.tag("shop-api:latest") == "sha256:new"

    # the record stays pending: a retry records nothing new, what ran before the first
    # attempt is what counts
    (pending,) = (engine.root / "home").glob(".local/state/deployer/compose-up/*.pending")
    assert pending.read_text().split()[2] == "sha256:old"
    (engine.root / "fail_up").unlink()
    assert engine.run(do).returncode == 0
    assert engine.running("api") == ["sha256:new"]
    assert engine.run(undo).returncode == 0
    assert engine.running("api") == ["sha256:old"]


def test_a_retry_uses_the_pending_record(engine: Engine) -> None:
    engine.image("shop-api:latest", "sha256:new")
    engine.container("api", True, "sha256:new", "shop-api:latest")
    do, undo = up_step(engine)
    # an earlier attempt, before which the api did not run, left its record pending
    state = engine.root / "home" / ".local" / "state" / "deployer" / "compose-up"
    state.mkdir(parents=True)
    record = do.script.split('compose-up/', 1)[1].split('"', 1)[0]
    (state / f"{record}.pending").write_text("api none none none\n")
    assert engine.run(do).returncode == 0
    assert not (state / f"{record}.pending").exists()
    assert engine.run(undo).returncode == 0
    assert engine.running("api") == []


def test_a_failed_first_up_stops_what_it_started(engine: Engine) -> None:
    engine.image("shop-api:latest", "sha256:new")
    do, _undo = up_step(engine)
    (engine.root / "fail_up").write_text("sha256:new")
    assert engine.run(do).returncode == 1
    assert engine.running("api") == []


def test_a_later_run_records_afresh(engine: Engine) -> None:
    engine.image("shop-api:latest", "sha256:v1")
    do, undo = up_step(engine)
    assert engine.run(do).returncode == 0  # first deploy: nothing ran before
    engine.image("shop-api:latest", "sha256:v2")
    assert engine.run(do).returncode == 0  # the next release recreates on v2
    assert engine.run(undo).returncode == 0
    assert engine.running("api") == ["sha256:v1"]


def test_all_services_when_none_are_named(engine: Engine) -> None:
    engine.container("postgres", True, "sha256:pg", "postgres:15")
    engine.image("shop-api:latest", "sha256:new")
    raw = {"compose": {"action": "up"}}
    ctx = FixtureContext(compose_cmd=COMMANDS[engine.flavour])
    body, step = make_body(raw), make_step(raw)
    assert engine.run(compose.build(body, ctx, step)[0]).returncode == 0
    assert engine.running("api") == ["sha256:new"]
    result = engine.run(compose.auto_rollback(body, ctx, step)[0])
    assert result.returncode == 0, result.stderr
    assert engine.running("api") == []
    assert engine.running("postgres") == ["sha256:pg"]


def test_no_record_stops_the_services(engine: Engine) -> None:
    engine.image("shop-api:latest", "sha256:new")
    engine.container("api", True, "sha256:new", "shop-api:latest")
    _do, undo = up_step(engine)
    result = engine.run(undo)
    assert result.returncode == 0
    assert engine.running("api") == []
    assert "no record of what ran before step" in result.stderr


def test_build_undo_does_not_start_a_stopped_service(engine: Engine) -> None:
    # after `up`'s undo stopped the api, the build's undo (v1 lists the stopped
    # container in `ps -q`) must not start it again
    engine.image("shop-api:latest", "sha256:new")
    engine.image("shop-api:latest-deployer-prev", "sha256:old")
    engine.container("api", False, "sha256:new", "shop-api:latest")
    raw = {"compose": {"action": "build", "services": ["api"], "image": "shop-api"}}
    ctx = FixtureContext(compose_cmd=COMMANDS[engine.flavour])
    (undo,) = compose.auto_rollback(make_body(raw), ctx, make_step(raw))
    assert engine.run(undo).returncode == 0
    assert engine.tag("shop-api:latest") == "sha256:old"
    assert engine.running("api") == []
    assert " up " not in engine.log()
