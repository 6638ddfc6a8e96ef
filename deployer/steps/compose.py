"""`compose` step kind: Docker Compose actions, for Compose v2 and v1 alike.

The invocation is the host fact ``compose_command`` (``COMPOSE_COMMAND``, the one place
that knows how to detect it): ``docker compose`` (v2 plugin) or ``docker-compose``
(v1), pinned by the var of that name or detected on the host with
``detect_compose_command()``. The two differ in a few places, handled here:

- ``up --wait`` exists only in v2, and waits for the engine's next healthcheck (its
  ``interval``, often 5-30 s; ``start_interval`` needs Docker 25). So on both the step
  polls container state and health itself after ``up -d`` (``_wait``: fails when a
  container exits or turns unhealthy, succeeds when every container is running and
  healthy), from 0.1 s, and runs the healthcheck test of a container still
  ``starting`` itself with ``docker exec``: its first pass is what would make it
  healthy.
- ``ps`` lists only running containers in v2 unless ``-a``; v1 has no ``-a`` and
  lists all, so v2 gets ``-a``.

``-T`` (no TTY) is always passed to ``exec`` and ``run``: commands run over SSH
without a terminal. Compose files, project directory, project name and env file come
from the step or from the vars ``compose_files``, ``compose_project_dir``,
``compose_project_name`` and ``compose_env_file``. When the step sets no ``cwd``, the
command runs in the project directory, so relative ``-f`` files resolve there.

``build`` with ``image`` keeps the current image under a backup tag before building,
and its built-in rollback re-tags the backup and recreates the step's services if
they are running.

``up`` records, before it starts anything, which of its services had a running
container and on which image id (a small state file on the host, under
``${XDG_STATE_HOME:-~/.local/state}/deployer/compose-up/``, named after the step and the
compose project). Its built-in rollback reads that record: a service that did not run
before is stopped; one that ran on another image runs that image again (tagged back
under the name compose uses just long enough to recreate the container, so the image
tags stay as the later undos, a migration downgrade with the new image for one, expect
them); one that this step did not recreate, or recreated on the same image, is left
running. When the previous image is gone, the service is stopped and the undo fails.
So a rolled-back host serves its previous version or nothing, never the new containers
over an undone database. A record left by an ``up`` that failed part-way is kept, so a
retry or a resume still knows what ran before the first attempt.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import PurePosixPath

from deployer.commands import Command, RemoteCommand
from deployer.errors import InputError, Problem
from deployer.models import Step, StepBody
from deployer.steps._options import Options, exec_fields, var
from deployer.steps.base import Fact, FieldSpec, RenderContext, StepKind

ACTIONS = ("build", "up", "down", "stop", "restart", "exec", "run", "pull", "ps", "logs")
BACKUP_SUFFIX = "deployer-prev"
V1_WAIT_DEFAULT = 300.0

FIELDS: dict[str, FieldSpec] = {
    "action": FieldSpec(
        "choice", "What to do: `build`, `up` (detached), `down`, `stop`, `restart`, `exec` "
        "(in a running container), `run` (a one-off container, removed after), `pull`, "
        "`ps` or `logs`. `up` has a built-in rollback: the services it started are "
        "stopped, those it recreated on a new image run their previous image again.",
        required=True, choices=ACTIONS, template=False),
    "services": FieldSpec(
        "string|list[string]", "Services to act on (default: all). Not allowed for `down`, "
        "which always acts on the whole project: use `stop` for some services."),
    "service": FieldSpec(
        "string", "The service `exec` and `run` use (required for them). For the other "
        "actions it is added to `services`."),
    "command": FieldSpec(
        "string|list[string]", "For `exec`/`run`: the command in the container. A string "
        "is inserted as shell words (quote values with `| quote`); a list is passed as "
        "separate arguments, each quoted. Default: the image's command (`run` only)."),
    "no_cache": FieldSpec(
        "boolean", "`build`: do not use the layer cache (`--no-cache`). Use it on first "
        "deployments: stale cached layers can hide dependency changes.", default=False),
    "pull": FieldSpec(
        "boolean", "`build`: always try to pull newer base images (`--pull`).", default=False),
    "image": FieldSpec(
        "string", "`build`: the image the build produces (e.g. `shop-api:latest`). Before "
        "building, its current version is tagged `<repo>:<tag>-deployer-prev`; the "
        "built-in rollback re-tags that backup as the image and recreates the step's "
        "services if they are running. Without `image`, a build has no built-in rollback."),
    "detach": FieldSpec(
        "boolean", "`up`: start containers in the background (`-d`). With `false` the "
        "step runs in the foreground until the containers stop.", default=True),
    "build": FieldSpec("boolean", "`up`: build images before starting (`--build`).",
                       default=False),
    "force_recreate": FieldSpec(
        "boolean", "`up`: recreate containers even if their configuration and image did "
        "not change (`--force-recreate`).", default=False),
    "no_deps": FieldSpec(
        "boolean", "`up`/`run`: do not start linked services (`--no-deps`).", default=False),
    "wait": FieldSpec(
        "boolean", "`up`: wait until every container of the services (and of the services "
        "they depend on, unless `no_deps`) is running and healthy, or a one-shot that "
        "exited 0; fail if one exits otherwise or turns unhealthy. deployer polls "
        "`docker inspect` from 0.1 s up to every 0.5 s (bounded by the step `timeout`, or "
        "300 s), on v1 and v2 alike; a container whose health is still `starting` has its "
        "own healthcheck test run at once with `docker exec`, and one pass counts as "
        "healthy, as the engine's would at its next interval.", default=False),
    "remove_orphans": FieldSpec(
        "boolean", "`up`/`down`/`run`: remove containers of services no longer in the "
        "compose files (`--remove-orphans`).", default=False),
    "volumes": FieldSpec(
        "boolean", "`down`: also remove named volumes (`-v`). This deletes database "
        "data: mark the step `destructive`.", default=False),
    "user": FieldSpec("string", "`exec`/`run`: user inside the container (`-u`)."),
    "workdir": FieldSpec("string", "`exec`/`run`: working directory inside the container "
                         "(`-w`)."),
    "tail": FieldSpec("integer", "`logs`: number of lines per container (`--tail`); logs "
                      "are never followed.", default=200),
    "files": FieldSpec(
        "string|list[string]", "Compose files (`-f`, in order). Default: var "
        "`compose_files` if defined, else Compose's own default (`compose.yaml` / "
        "`docker-compose.yml` in the project directory)."),
    "extra_files": FieldSpec(
        "string|list[string]", "Compose files added after `files` (`-f`, in order; empty "
        "names are skipped): an override for this step only, e.g. the migration "
        "environment of `db_roles: split` (`{{ migrate_files }}`)."),
    "project_dir": FieldSpec(
        "string", "Directory holding the compose files. Default: var `compose_project_dir`. "
        "The command runs there unless the step sets `cwd` (then it is passed as "
        "`--project-directory`)."),
    "project_name": FieldSpec(
        "string", "Compose project name (`-p`). Default: var `compose_project_name`, else "
        "Compose's default (the project directory's name)."),
    "env_file": FieldSpec(
        "string", "Environment file used for variable substitution in the compose files "
        "(`--env-file`). Default: var `compose_env_file`, else Compose's `.env`."),
}

_COMPOSE_CMD_RE = re.compile(r"^[A-Za-z0-9_./@:+= -]+$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def is_v1(compose_cmd: str) -> bool:
    """True for the Python ``docker-compose`` (v1) invocation."""
    words = compose_cmd.split()
    return bool(words) and PurePosixPath(words[-1]).name == "docker-compose"


# Compose's warning for a `${X}` in a compose file that neither the environment nor the
# env file sets, one line per occurrence and per invocation (60 on a stack that is
# fine when the variable is meant to be blank):
#   v1:            The X variable is not set. Defaulting to a blank string.
#                  (with "WARNING: " in front on a terminal)
#   v2, terminal:  WARN[0000] The "X" variable is not set. Defaulting to a blank string.
#   v2, no tty:    time="..." level=warning msg="The \"X\" variable is not set. Defaulting..."
_UNSET_VARIABLE_RE = re.compile(
    r'^(?:WARNING:\s*|WARN\[\d+\]\s*|time="[^"]*" level=warning msg=")?The \\?"?'
    r'([A-Za-z_][A-Za-z0-9_]*)\\?"? variable is not set\. Defaulting to a blank string\.')


def unset_variable_warning(line: str) -> str | None:
    """The variable a Compose "variable is not set" warning line names, else None."""
    match = _UNSET_VARIABLE_RE.match(line.strip())
    return match.group(1) if match else None


def unset_variables_summary(names: list[str]) -> str:
    """One line for the unset-variable warnings of one step (names in order, repeats
    counted): ``compose: 60 warnings 'variable is not set' for X, Y (blank strings used)``."""
    distinct = list(dict.fromkeys(names))
    count = len(names)
    return (f"compose: {count} warning{'s' if count != 1 else ''} 'variable is not set' "
            f"for {', '.join(distinct)} (blank strings used)")


def detect_compose_command() -> RemoteCommand:
    """A probe the executor runs once per host when var ``compose_command`` is unset.

    Prints ``docker compose`` or ``docker-compose``; exits 127 with a message naming
    both when neither is installed. ``docker compose version`` does not contact the
    daemon, so the probe works without docker group membership.
    """
    script = (
        "if docker compose version >/dev/null 2>&1; then\n"
        "  echo 'docker compose'\n"
        "elif command -v docker-compose >/dev/null 2>&1; then\n"
        "  echo 'docker-compose'\n"
        "else\n"
        "  echo \"deployer: neither 'docker compose' (Compose v2 plugin) nor "
        "'docker-compose' (v1) is installed on this host; install the docker compose "
        "plugin or set var compose_command\" >&2\n"
        "  exit 127\n"
        "fi"
    )
    return RemoteCommand(script=script, check=False, label="detect compose command")


def detected_flavour(ok: bool, stdout: str) -> str | None:
    """The compose command ``detect_compose_command()`` printed, or None."""
    lines = stdout.strip().splitlines() if ok else []
    return lines[-1].strip() if lines else None


COMPOSE_COMMAND = Fact(
    name="compose_command",
    doc="The compose invocation on the host: `docker compose` (v2) or `docker-compose` "
        "(v1).",
    probe=detect_compose_command,
    parse=detected_flavour,
    stand_in="docker compose",
    missing="neither `docker compose` nor `docker-compose` works on {host}",
    hint="install Docker with the compose plugin on the host, or set var compose_command",
    note=("compose command detected on the host at run time{where}: `docker compose` (v2) "
          "or `docker-compose` (v1); this plan shows `docker compose`. Set var "
          "compose_command to pin it."),
    found="compose: using `{value}`",
    what="the compose detection",
)


def compose_command(ctx: RenderContext) -> str:
    """The compose invocation for this host (the ``compose_command`` fact)."""
    return (ctx.fact(COMPOSE_COMMAND.name) or COMPOSE_COMMAND.stand_in).strip()



def compose_base(ctx: RenderContext, opts: Options | None = None,
                 cwd: str | None = None) -> tuple[str, str | None]:
    """The compose invocation with its global flags, and the directory to run it in.

    ``opts`` may be None (psql's default client): then only the vars are used.
    Returns ``(prefix, cwd)`` where ``cwd`` is the step's own cwd if it set one, else
    the project directory (or None).
    """
    compose_cmd = compose_command(ctx)
    if not _COMPOSE_CMD_RE.match(compose_cmd):
        raise InputError(Problem(f"compose command {compose_cmd!r} contains characters that "
                                 "are not allowed", path="vars.compose_command",
                                 hint="set compose_command to 'docker compose' or "
                                 "'docker-compose' (or a path to one of them)"))

    def pick(option: str, var_name: str):
        if opts is not None and opts.given(option):
            return opts.list(option) if option == "files" else opts.str(option)
        value = var(ctx, var_name)
        if value is None or value == "" or value == []:
            return None
        if option == "files":
            if isinstance(value, str):
                return [value]
            if not isinstance(value, (list, tuple)):
                raise InputError(Problem(f"var {var_name} must be a list of file names",
                                         path=f"vars.{var_name}"))
            return [str(v) for v in value]
        return str(value)

    files = pick("files", "compose_files") or []
    if opts is not None and opts.given("extra_files"):
        files = [*files, *(f for f in opts.list("extra_files") if f.strip())]
    project_dir = pick("project_dir", "compose_project_dir")
    project_name = pick("project_name", "compose_project_name")
    env_file = pick("env_file", "compose_env_file")

    parts = [compose_cmd]
    for name in files:
        parts += ["-f", shlex.quote(name)]
    if project_dir and cwd:
        parts += ["--project-directory", shlex.quote(project_dir)]
    if project_name:
        parts += ["-p", shlex.quote(project_name)]
    if env_file:
        parts += ["--env-file", shlex.quote(env_file)]
    return " ".join(parts), (cwd or project_dir or None)


def split_image(image: str) -> tuple[str, str]:
    """``registry:5000/app:1.2`` -> (``registry:5000/app``, ``1.2``); no tag -> latest."""
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag
    return image, "latest"


def backup_tag(image: str) -> str:
    """Where ``build`` keeps the previous image: ``<repo>:<tag>-deployer-prev``."""
    repo, tag = split_image(image)
    return f"{repo}:{tag}-{BACKUP_SUFFIX}"


def _image(opts: Options) -> str | None:
    image = opts.str("image")
    if not image:
        return None
    image = image.strip()
    if "@" in image or any(c.isspace() for c in image) or not image:
        raise opts.error("image", f"`image` must be a name like repo:tag, got {image!r}",
                         hint="digests (@sha256:...) cannot be re-tagged")
    repo, tag = split_image(image)
    backup = f"{tag}-{BACKUP_SUFFIX}"
    if not repo or not _TAG_RE.match(backup):
        raise opts.error("image", f"cannot derive a backup tag from image {image!r}",
                         hint="use a tag of at most 114 characters [A-Za-z0-9_.-]")
    return image


def _words(opts: Options, name: str) -> str:
    value = opts.rendered(name)
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(shlex.quote(str(v)) for v in value)
    return str(value).strip()


def _services(opts: Options, action: str) -> list[str]:
    services = opts.list("services")
    if action not in ("exec", "run") and opts.given("service"):
        services.append(opts.str("service") or "")
    for name in services:
        if not name.strip():
            raise opts.error("services", "empty service name")
    return services


# The services `up` started besides the ones named: their `depends_on`, transitively,
# read from `compose config` (v2 writes a mapping per dependency, v1 a list or a
# mapping). Compose v2's own `--wait` waits for those too, unless `--no-deps`.
_DEPS_AWK = r"""
function unq(v) { gsub(/^["']|["']$/, "", v); return v }
function add(d) { d = unq(d); dep[cur] = dep[cur] " " d }
/^[^ #]/ { top = $0; next }
top != "services:" { next }
/^  [^ ]/ { cur = $0; sub(/^  /, "", cur); sub(/:[ \t]*$/, "", cur); cur = unq(cur)
           deps = 0; next }
deps && /^ +- / { d = $0; sub(/^ +- +/, "", d); add(d); next }
/^    [^ ]/ { deps = ($0 ~ /^    depends_on:/); next }
deps && /^      [^ -]/ { d = $0; sub(/^ +/, "", d); sub(/:.*$/, "", d); add(d); next }
END {
  n = split(want, q, " ")
  for (i = 1; i <= n; i++) if (!(q[i] in seen)) { seen[q[i]] = 1; queue[++t] = q[i] }
  for (h = 1; h <= t; h++) {
    m = split(dep[queue[h]], ds, " ")
    for (j = 1; j <= m; j++) if (!(ds[j] in seen)) { seen[ds[j]] = 1; queue[++t] = ds[j] }
  }
  for (h = 1; h <= t; h++) print queue[h]
}
"""

# Run a container's own healthcheck test now (docker exec, as the engine runs it: the
# container's user, environment and working directory). The engine runs it only every
# `interval` (5-30 s; Docker 25's `start_interval` is not on older engines), and one
# pass is what turns "starting" into "healthy": running it at once turns a deploy's
# wait from an interval into the time the service takes to come up.
_PROBE = r"""probe() {
  local a args=()
  local test='{{range .Config.Healthcheck.Test}}{{.}}{{"\x00"}}{{end}}'
  while IFS= read -r -d '' a; do args+=("$a"); done \
    < <(docker inspect -f "{{if .Config.Healthcheck}}$test{{end}}" "$1")
  case "${args[0]:-}" in
    CMD) timeout 30 docker exec "$1" "${args[@]:1}" </dev/null >/dev/null 2>&1 ;;
    CMD-SHELL) timeout 30 docker exec "$1" /bin/sh -c "${args[1]:-}" </dev/null >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}"""


def _wait(base: str, v1: bool, quoted_services: str, deps: bool, limit: float) -> str:
    """Wait until the containers of the services are up, for v1 and v2 alike: running
    and healthy (or running without a healthcheck, or a one-shot that exited 0) is
    done; starting/created/restarting is pending; any other state fails at once with
    the container's name. A container whose health is still "starting" has its
    healthcheck test run by ``probe`` at each poll, and counts as healthy when it
    passes. Polls from 0.1 s, doubling up to 0.5 s (a probe costs one ``docker exec``),
    until ``limit`` seconds (counted by ``SECONDS``, which callers reset) and fails then,
    naming what was not ready."""
    fmt = ("{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}"
           "{{else}}none{{end}} {{.State.ExitCode}}")
    ps = f"{base} ps -q" + ("" if v1 else " -a")  # v2 lists running ones only without -a
    named = quoted_services.strip()
    lines = [_PROBE]
    if deps and named:
        lines += [
            f"svcs=$({base} config </dev/null | awk -v want={shlex.quote(named)} "
            f"{shlex.quote(_DEPS_AWK)}) || svcs={shlex.quote(named)}",
            f'ids=$(for s in $svcs; do {ps} "$s"; done)']
    else:
        lines.append(f"ids=$({ps}{quoted_services})")
    name = "$(docker inspect -f '{{.Name}}' \"$id\")"
    return "\n".join(lines + [
        "if [ -z \"$ids\" ]; then echo 'deployer: no containers to wait for' >&2; exit 1; fi",
        # stop just before the step's own timeout would kill us, so the failure says
        # what was not healthy
        f"deadline={int(limit)}",
        "nap=0.1",
        "while :; do",
        "  pending=",
        "  for id in $ids; do",
        f"    state=$(docker inspect -f '{fmt}' \"$id\")",
        "    case \"$state\" in",
        "      'running healthy '*|'running none '*|'exited '*' 0') ;;",
        "      'running starting '*)",
        "        if probe \"$id\"; then",
        f"          echo \"deployer: {name} passes its healthcheck\"",
        "        else",
        "          pending=\"$pending $id\"",
        "        fi ;;",
        "      'created '*|'restarting '*) pending=\"$pending $id\" ;;",
        f"      *) echo \"deployer: container {name} is $state\" >&2; exit 1 ;;",
        "    esac",
        "  done",
        "  if [ -z \"$pending\" ]; then break; fi",
        "  ids=${pending# }",
        "  if [ \"$SECONDS\" -ge \"$deadline\" ]; then",
        "    echo \"deployer: containers not healthy after ${SECONDS}s:$(for id in $ids; do "
        "docker inspect -f ' {{.Name}} ({{.State.Status}}{{if .State.Health}} "
        "{{.State.Health.Status}}{{end}})' \"$id\"; done)\" >&2",
        "    exit 1",
        "  fi",
        "  sleep \"$nap\"",
        "  case \"$nap\" in 0.1) nap=0.2 ;; 0.2) nap=0.4 ;; *) nap=0.5 ;; esac",
        "done",
    ])


def wait_note(deps: bool) -> str:
    """How the display of ``up`` with ``wait`` describes the wait (``_wait``)."""
    which = "these services and their dependencies" if deps else "these services"
    return (f"# then waits until {which} run healthy, polling from 0.1 s (a healthcheck "
            "still starting is run at once with docker exec)")


UP_STATE_DIR = "${XDG_STATE_HOME:-$HOME/.local/state}/deployer/compose-up"
_INSPECT_BEFORE = "{{.State.Running}} {{.Image}} {{.Config.Image}}"


def up_state_path(base: str, compose_cmd: str, cwd: str | None, services: list[str],
                  step: Step | None) -> str:
    """Where ``up`` records what ran before it, as a shell word (``$HOME`` expands).

    Named after the step and everything that selects the compose project (files,
    directory, name, env file, services) but not the compose invocation, so a host that
    moves from v1 to v2 between a run and its rollback still finds the record.
    """
    step_id = step.id if step is not None else ""
    project = base[len(compose_cmd):]
    digest = hashlib.sha256(json.dumps([step_id, project, cwd, services]).encode())
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", step_id)[:60] or "up"
    return f"\"{UP_STATE_DIR}/{name}-{digest.hexdigest()[:16]}\""


def _service_list(base: str, services: list[str]) -> str:
    if services:
        return " ".join(shlex.quote(s) for s in services)
    return f"$({base} config --services)"


def _up_record(base: str, state: str, services: list[str]) -> list[str]:
    # Only running containers count: v2's `ps -q` lists those, v1's lists stopped ones
    # too, so each is asked. Kept when an earlier attempt left it pending.
    return [
        f"record={state}",
        "if [ ! -e \"$record.pending\" ]; then",
        "  (umask 077 && mkdir -p \"${record%/*}\")",
        f"  for svc in {_service_list(base, services)}; do",
        "    run=none image=none name=none",
        f"    for id in $({base} ps -q \"$svc\"); do",
        f"      set -- $(docker inspect -f '{_INSPECT_BEFORE}' \"$id\")",
        "      if [ \"$1\" = true ]; then run=$id image=$2 name=$3; fi",
        "    done",
        "    echo \"$svc $run $image $name\"",
        "  done >\"$record.partial\"",
        "  mv \"$record.partial\" \"$record.pending\"",
        "fi",
    ]


def _restore(base: str, source: str, v1: bool, wait: bool, limit: float) -> list[str]:
    """Shell lines putting back each service recorded in file ``source``; they set
    ``failed=1`` when one cannot be put back (its previous image is gone, it does not
    start)."""
    # --force-recreate: the service's container runs another image than the previous
    # one, whatever Compose's own change detection (older v2 releases) makes of a re-tag
    up = f"{base} up -d --no-build --no-deps --force-recreate"
    started = f"{up} \"$svc\""
    if wait:
        # the wait's deadline counts from its own start, not from the script's
        poll = _indent("SECONDS=0\n" + _wait(base, v1, ' "$svc"', False, limit), 6)
        started += f" && (\n{poll}\n    )"
    return [
        "while read -r svc before image name <&3; do",
        "  now=",
        f"  for id in $({base} ps -q \"$svc\"); do",
        "    if [ \"$(docker inspect -f '{{.State.Running}}' \"$id\")\" = true ]; then now=$id; fi",
        "  done",
        "  if [ \"$before\" = none ]; then",
        "    if [ -n \"$now\" ]; then",
        f"      {base} stop \"$svc\"",
        "      echo \"stopped $svc: it was not running before\"",
        "    else",
        "      echo \"$svc is not running, as before\"",
        "    fi",
        "    continue",
        "  fi",
        "  if [ -n \"$now\" ]; then",
        "    if [ \"$now\" = \"$before\" ] || "
        "[ \"$(docker inspect -f '{{.Image}}' \"$now\")\" = \"$image\" ]; then",
        "      echo \"$svc runs its previous image $image\"",
        "      continue",
        "    fi",
        "    name=$(docker inspect -f '{{.Config.Image}}' \"$now\")",
        "  fi",
        "  if ! docker image inspect \"$image\" >/dev/null 2>&1; then",
        f"    if [ -n \"$now\" ]; then {base} stop \"$svc\"; fi",
        "    echo \"the previous image of $svc ($image) no longer exists: $svc is stopped\" >&2",
        "    failed=1",
        "    continue",
        "  fi",
        # compose starts what the service's image name points to: point it at the
        # previous image for the recreate, then back, so tags stay as found
        "  new=$(docker image inspect -f '{{.Id}}' \"$name\" 2>/dev/null || true)",
        "  docker tag \"$image\" \"$name\"",
        f"  if {started}; then",
        "    restored=1",
        "  else",
        "    restored=0",
        "  fi",
        "  if [ -n \"$new\" ] && [ \"$new\" != \"$image\" ]; then",
        "    docker tag \"$new\" \"$name\"",
        "  fi",
        "  if [ \"$restored\" = 1 ]; then",
        "    echo \"$svc runs its previous image $image again\"",
        "  else",
        f"    {base} stop \"$svc\" || true",
        "    echo \"$svc did not start on its previous image $image: $svc is stopped\" >&2",
        "    failed=1",
        "  fi",
        f"done 3<{source}",
    ]


def _up_undo(base: str, state: str, services: list[str], step_id: str, v1: bool,
             wait: bool, limit: float) -> str:
    svc = "".join(" " + shlex.quote(s) for s in services)
    what = f"step {step_id}" if step_id else "this step"
    return "\n".join([
        f"record={state}",
        "if [ ! -e \"$record\" ]; then",
        f"  echo {shlex.quote(f'deployer: no record of what ran before {what} ')}\"($record)\""
        f"{shlex.quote(': stopping its services, so that nothing it started serves')} >&2",
        f"  {base} stop{svc}",
        "  exit 0",
        "fi",
        "failed=0",
        *_restore(base, "\"$record\"", v1, wait, limit),
        "exit \"$failed\"",
    ])


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def _wait_limit(timeout: float | None) -> float:
    return max(timeout - 5, 1) if timeout else V1_WAIT_DEFAULT


def build(body: StepBody, ctx: RenderContext, step: Step | None = None) -> list[Command]:
    opts = Options("compose", FIELDS, body, ctx)
    action = opts.str("action", required=True) or ""
    if action not in ACTIONS:
        raise opts.error("action", f"unknown compose action {action!r}",
                         hint="one of: " + ", ".join(ACTIONS))
    fields = exec_fields(body, ctx)
    base, cwd = compose_base(ctx, opts, fields["cwd"])
    fields["cwd"] = cwd
    v1 = is_v1(compose_command(ctx))
    services = _services(opts, action)
    svc = "".join(" " + shlex.quote(s) for s in services)
    pre: list[str] = []
    post: list[str] = []
    record = ""  # `up`: where it records what ran before it

    if action == "build":
        flags = (" --no-cache" if opts.bool("no_cache") else "") + (
            " --pull" if opts.bool("pull") else "")
        image = _image(opts)
        if image:
            qi, qb = shlex.quote(image), shlex.quote(backup_tag(image))
            pre = [
                f"if docker image inspect {qi} >/dev/null 2>&1; then",
                f"  docker tag {qi} {qb}",
                "else",
                f"  docker image rm {qb} >/dev/null 2>&1 || true",
                "fi",
            ]
        main = f"{base} build{flags}{svc}"
    elif action == "up":
        flags = " -d" if opts.bool("detach") else ""
        for name, flag in (("build", "--build"), ("force_recreate", "--force-recreate"),
                           ("no_deps", "--no-deps"), ("remove_orphans", "--remove-orphans")):
            if opts.bool(name):
                flags += " " + flag
        if opts.bool("wait"):
            if not opts.bool("detach"):
                raise opts.error("wait", "`wait` needs `detach: true`")
            # not v2's `--wait`: it waits for the engine's next healthcheck (``_wait``).
            # The script runs in a subshell of deployer's long-lived remote shell,
            # whose SECONDS counts from the connection: count from this step.
            pre = ["SECONDS=0"]
            post = [_wait(base, v1, svc, not opts.bool("no_deps"),
                          _wait_limit(fields["timeout"]))]
        if opts.bool("detach"):  # a foreground `up` stops its containers itself
            record = up_state_path(base, compose_command(ctx), cwd, services, step)
            pre += _up_record(base, record, services)
            post.append("mv \"$record.pending\" \"$record\"")
        main = f"{base} up{flags}{svc}"
    elif action == "down":
        if services:
            raise opts.error("services", "`down` acts on the whole project and takes no "
                             "services", hint="use action `stop` for some services")
        flags = (" --remove-orphans" if opts.bool("remove_orphans") else "") + (
            " -v" if opts.bool("volumes") else "")
        main = f"{base} down{flags}"
    elif action in ("exec", "run"):
        service = opts.str("service")
        if not service or not service.strip():
            raise opts.error("service", f"`service` is required for compose {action}")
        command = _words(opts, "command")
        if action == "exec" and not command:
            raise opts.error("command", "`command` is required for compose exec")
        flags = " --rm -T" if action == "run" else " -T"
        if action == "run":
            for name, flag in (("no_deps", "--no-deps"), ("remove_orphans",
                                                          "--remove-orphans")):
                if opts.bool(name):
                    flags += " " + flag
        user, workdir = opts.str("user"), opts.str("workdir")
        if user:
            flags += " -u " + shlex.quote(user)
        if workdir:
            flags += " -w " + shlex.quote(workdir)
        main = f"{base} {action}{flags} {shlex.quote(service)}" + (
            f" {command}" if command else "")
    elif action == "logs":
        tail = opts.int("tail")
        flags = " --no-color" + (f" --tail {tail}" if tail is not None else "")
        main = f"{base} logs{flags}{svc}"
    elif action == "ps":
        main = f"{base} ps{'' if v1 else ' -a'}{svc}"
    else:  # stop, restart, pull
        main = f"{base} {action}{svc}"

    script = "\n".join(pre + [main] + post)
    shown = None
    if record:
        # A failed `up` is not undone by the rollback (no failed step is): it puts back
        # what ran before it itself, so a failed attempt never leaves new containers
        # serving; the record stays pending for a retry or a resume.
        waiting = post[:-1]
        attempt = main + (" && (\n" + _indent("\n".join(waiting), 2) + "\n)" if waiting else "")
        script = "\n".join(pre + [
            f"if ! {{ {attempt}; }}; then",
            "  echo 'deployer: compose up failed: putting back what ran before it' >&2",
            "  failed=0",
            *_indent("\n".join(_restore(base, "\"$record.pending\"", v1, opts.bool("wait"),
                                        _wait_limit(fields["timeout"]))), 2).splitlines(),
            "  exit 1",
            "fi",
            post[-1]])
        note = [wait_note(not opts.bool("no_deps"))] if waiting else []
        shown = "\n".join([main, *note,
            f"# first records which of {_named(services)} run, on which image id, in "
            f"{record} (for the rollback; a record left by an attempt that did not "
            "finish is kept); if `up` fails, it puts them back as its rollback does"])
    return [RemoteCommand(script=script, label=f"compose {action}", display_script=shown,
                          **fields)]


def auto_rollback(body: StepBody, ctx: RenderContext, step: Step) -> list[Command]:
    """``build`` with ``image``: put the kept image back and recreate running services.
    ``up``: put back the services' containers as they were before (module docstring)."""
    opts = Options("compose", FIELDS, body, ctx)
    action = opts.str("action")
    if action == "up":
        return _up_rollback(opts, body, ctx, step)
    if action != "build":
        return []
    image = _image(opts)
    if not image:
        return []
    fields = exec_fields(body, ctx)
    base, cwd = compose_base(ctx, opts, fields["cwd"])
    fields["cwd"] = cwd
    fields["timeout"] = None  # the build's timeout is sized for a build, not a re-tag
    svc = "".join(" " + shlex.quote(s) for s in _services(opts, "build"))
    qi, qb = shlex.quote(image), shlex.quote(backup_tag(image))
    script = "\n".join([
        f"if docker image inspect {qb} >/dev/null 2>&1; then",
        f"  docker tag {qb} {qi}",
        f"  echo {shlex.quote(f'restored {image} from {backup_tag(image)}')}",
        # v1's `ps -q` lists stopped containers too: only running ones are recreated
        f"  if [ -n \"$({_running_ids(base, svc)})\" ]; then",
        f"    {base} up -d --no-build --no-deps{svc}",
        "  fi",
        "else",
        f"  echo {shlex.quote(f'no previous {image} was kept (first build): nothing to restore')}"
        " >&2",
        "fi",
    ])
    return [RemoteCommand(script=script, label="compose restore image", **fields)]


def _running_ids(base: str, quoted_services: str) -> str:
    return (f"for id in $({base} ps -q{quoted_services}); do "
            "if [ \"$(docker inspect -f '{{.State.Running}}' \"$id\")\" = true ]; then "
            "echo \"$id\"; fi; done")


def _up_rollback(opts: Options, body: StepBody, ctx: RenderContext,
                 step: Step) -> list[Command]:
    if not opts.bool("detach"):
        return []  # a foreground `up` has stopped its containers when it ended
    fields = exec_fields(body, ctx)
    base, cwd = compose_base(ctx, opts, fields["cwd"])
    fields["cwd"] = cwd
    services = _services(opts, "up")
    state = up_state_path(base, compose_command(ctx), cwd, services, step)
    v1, wait = is_v1(compose_command(ctx)), opts.bool("wait")
    script = _up_undo(base, state, services, step.id, v1, wait, _wait_limit(fields["timeout"]))
    up = f"{base} up -d --no-build --no-deps --force-recreate"
    then_wait = " (then waits until it is up, as the step does)" if wait else ""
    shown = "\n".join([
        f"# for each of {_named(services)} as recorded before step {step.id} in {state}:",
        f"#   not running then: {base} stop SERVICE",
        f"#   ran another image: docker tag PREVIOUS_ID IMAGE && {up} SERVICE{then_wait}, "
        "then IMAGE names the id it had again (image tags are the build step's to undo)",
        f"#   previous image gone: {base} stop SERVICE, and this undo fails",
        "#   not recreated, or on the same image: left running",
        f"# no record: {base} stop{''.join(' ' + shlex.quote(s) for s in services)}",
    ])
    return [RemoteCommand(script=script, label="compose restore containers",
                          display_script=shown, **fields)]


def _named(services: list[str]) -> str:
    return ", ".join(services) if services else "the services"


def validate(body: StepBody, step: Step) -> list[tuple[str, str]]:
    warnings: list[tuple[str, str]] = []
    options = body.options
    action = options.get("action")
    # The first-time `no_cache` warning needs the runbook being validated, not the file
    # that defines the step (an included part): validate.py gives it.
    if action == "down" and options.get("volumes") and not step.destructive:
        warnings.append(("compose down with `volumes: true` deletes named volumes "
                         "(database data) but the step is not marked destructive",
                         "add `destructive: true` and `confirm: true`"))
    return warnings


KIND = StepKind(
    name="compose",
    doc="Docker Compose actions (`build`, `up`, `down`, `stop`, `restart`, `exec`, `run`, "
        "`pull`, `ps`, `logs`) with Compose v2 (`docker compose`) or v1 "
        "(`docker-compose`).",
    fields=FIELDS,
    build=build,
    auto_rollback=auto_rollback,
    validate=validate,
    needs=lambda body: (COMPOSE_COMMAND.name,),
    provides=(COMPOSE_COMMAND,),
)


_SINCE_RE = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$|^\d{4}-\d\d-\d\d([T ][0-9:.]+"
                       r"(Z|[+-]\d\d:?\d\d)?)?$|^\d+$")


def logs_command(ctx: RenderContext, services: list[str], *, follow: bool = False,
                 since: str | None = None, tail: int | None = None,
                 proxy_dir: str | None = None, slot_service: str = "") -> RemoteCommand:
    """``compose logs`` for ``deployer logs``: the same invocation (files, project,
    flavour) as the runbook's compose steps, so it reads the containers they started.

    ``since`` is Compose's own format: a duration (``10m``, ``1h30m``), a date or RFC
    3339 time, or a Unix timestamp; anything else is refused before it reaches the host.
    With ``proxy_dir`` (a stack behind the zero-downtime proxy), ``slot_service`` is read
    from the slot the proxy serves when one does (``<project>-blue`` / ``-green``, with
    the slot's override file), the other services from the main project, side by side.
    """
    if since is not None and not _SINCE_RE.match(since):
        raise InputError(Problem(f"--since {since!r} is not a duration or a time",
                                 hint="use a duration like 10m or 2h, a date like "
                                 "2026-12-03, or a time like 2026-12-03T10:00:00Z"))
    if tail is not None and tail < 0:
        raise InputError(Problem(f"--tail {tail} is negative",
                                 hint="give a number of lines, e.g. --tail 100"))
    base, cwd = compose_base(ctx)
    flags = " --no-color"
    if follow:
        flags += " --follow"
    if since:
        flags += " --since " + shlex.quote(since)
    if tail is not None:
        flags += f" --tail {tail}"
    svc = "".join(" " + shlex.quote(s) for s in services)
    script = f"{base} logs{flags}{svc}"
    project = str(var(ctx, "compose_project_name") or "")
    if proxy_dir and slot_service and project and (not services or slot_service in services):
        script = _slot_logs(ctx, base, flags, services, proxy_dir, slot_service, project)
    if services:
        # v2 prints nothing and exits 0 for a service the project does not have (v1
        # fails): check the names against the project's, so a typo is never an empty log
        script = "\n".join([
            f"known=$({base} config --services)",
            f"for s in{svc}; do",
            '  if ! printf \'%s\\n\' "$known" | grep -qxF -- "$s"; then',
            '    echo "deployer: no service $s in this compose project (services:' +
            ' $(echo $known))" >&2',
            "    exit 1",
            "  fi",
            "done",
            script,
        ])
    return RemoteCommand(script=script, cwd=cwd, check=False, label="compose logs")


# One JSON object per container, from `docker inspect` rather than `compose ps`: the
# format of `ps --format json` changed within v2 (an array, then JSON lines) and v1 has
# none, while inspect's fields are the engine's and the same under both flavours.
_INSPECT_FORMAT = (
    '{"service":{{json (index .Config.Labels "com.docker.compose.service")}},'
    '"project":{{json (index .Config.Labels "com.docker.compose.project")}},'
    '"name":{{json .Name}},"state":{{json .State.Status}},'
    '"health":{{if .State.Health}}{{json .State.Health.Status}}{{else}}null{{end}},'
    '"image":{{json .Config.Image}},"image_id":{{json .Image}},'
    '"started":{{json .State.StartedAt}},"restarts":{{.RestartCount}},'
    '"exit_code":{{.State.ExitCode}},"restart_policy":{{json .HostConfig.RestartPolicy.Name}}}'
)


def _slot_logs(ctx: RenderContext, base: str, flags: str, services: list[str],
               proxy_dir: str, slot_service: str, project: str) -> str:
    """The logs script when a slot may serve ``slot_service``: decided on the host (the
    live marker), both ``compose logs`` running at once so ``--follow`` follows both."""
    pd = proxy_dir.rstrip("/")
    # The slots' invocation (zero-downtime.yml's slot_compose): the same files plus the
    # slot's override, under the slot's project name.
    named = f"-p {shlex.quote(project)}"
    slot_base = base.replace(named, f"-f {shlex.quote(pd)}/slot-\"$live\".yml "
                             f"-p {shlex.quote(project)}-\"$live\"", 1)
    others = [s for s in services if s != slot_service]
    main = f"{base} logs{flags}" + "".join(" " + shlex.quote(s) for s in others)
    live = shlex.quote(pd + "/live")
    return "\n".join([
        f"if [ -e {live}/blue ]; then live=blue; elif [ -e {live}/green ]; then live=green; "
        "else live=none; fi",
        'if [ "$live" = none ]; then',
        f"  exec {base} logs{flags}" + "".join(" " + shlex.quote(s) for s in services),
        "fi",
        f"{slot_base} logs{flags} {shlex.quote(slot_service)} & slot=$!",
        *([f"{main} & main=$!", 'wait "$main"; rc=$?'] if others or not services
          else ["rc=0"]),
        'wait "$slot" || rc=$?',
        'exit "$rc"',
    ])


def containers_command(ctx: RenderContext, proxy_dir: str | None = None) -> RemoteCommand:
    """Every container of the project, running or not, as JSON lines (``deployer status``;
    parsed by ``deployer.status.parse_containers``). With ``proxy_dir`` (a stack behind
    the zero-downtime proxy) also the slots' projects (``<project>-blue`` / ``-green``)
    and an ``@@live`` line naming the slot the proxy serves (``parse_live_slot``)."""
    base, cwd = compose_base(ctx)
    listing = f"{base} ps -q" if is_v1(compose_command(ctx)) else f"{base} ps -a -q"
    lines = [f"ids=$({listing})"]
    project = str(var(ctx, "compose_project_name") or "")
    if proxy_dir and project:
        live = shlex.quote(proxy_dir.rstrip("/") + "/live")
        lines += [
            f"if [ -e {live}/blue ]; then echo '@@live blue'; "
            f"elif [ -e {live}/green ]; then echo '@@live green'; else echo '@@live none'; fi",
            "for s in blue green; do",
            f"  ids=\"$ids $(docker ps -a -q --filter label=com.docker.compose.project="
            f"{shlex.quote(project)}-\"$s\")\"",
            "done",
        ]
    lines += [
        "set -- $ids",
        'if [ "$#" -gt 0 ]; then',
        f"  docker inspect --format {shlex.quote(_INSPECT_FORMAT)} \"$@\"",
        "fi",
    ]
    script = "\n".join(lines)
    return RemoteCommand(script=script, cwd=cwd, check=False, label="compose containers")
