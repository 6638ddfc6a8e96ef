"""Context collected when a step of a Compose stack fails: what the stack looks like.

A failed ``compose`` step (an ``up --wait`` that timed out, a ``run`` of the
migrations), ``wait`` or ``http`` verification rarely explains itself: "container is
unhealthy" or a 502 says nothing about *why*. ``stack_probe`` builds one read-only
command that prints ``compose ps -a`` and then the last log lines of every service
that exited, is restarting, is dead or unhealthy. The executor runs it after such a
failure, writes its output to the run log, and hands it to the matcher and the summary,
so "target failed to become healthy" always comes with the logs that say why.

This module only builds the command (a pure function of the step and the render
context); the executor runs it.
"""

from __future__ import annotations

from typing import Any

from deployer.commands import RemoteCommand

CONTEXT_KINDS = ("compose", "wait", "http")
LOG_LINES = 40  # last log lines shown per service that exited/restarts/is unhealthy
PROBE_TIMEOUT = 60.0
HEADER = "--- stack state after the failure"


def shown_lines(context: list[str], limit: int = 30) -> list[str]:
    """What a run summary shows of the collected context: the ps table and, per failing
    service, its last log lines, cut to ``limit`` lines (the run log has everything)."""
    if len(context) <= limit:
        return list(context)
    sections: list[list[str]] = [[]]
    for line in context:
        if line.startswith("--- ") and sections[-1]:
            sections.append([])
        sections[-1].append(line)
    per = max(3, (limit - len(sections[0])) // max(1, len(sections) - 1))
    out = list(sections[0][:limit // 2])
    for section in sections[1:]:
        out.append(section[0])
        out.extend(section[1:][-(per - 1):])
    return out[-limit:] if len(out) > limit else out


def stack_probe(step: Any, ctx: Any, sudo: bool | None = None) -> RemoteCommand | None:
    """The command that shows the stack's state after ``step`` failed, or None when
    the step is not about a Compose stack or the stack cannot be located.

    ``ctx`` is the step's render context (its ``compose_command`` fact and the ``compose_*``
    vars); the command runs where the step's compose commands run, with its sudo
    (``sudo`` overrides it: for a wait/http step, what the runbook's compose steps use).
    """
    from deployer.steps.compose import compose_base, is_v1

    if step.kind not in CONTEXT_KINDS:
        return None
    opts = None
    cwd = None
    if step.kind == "compose":
        from deployer.steps._options import Options
        from deployer.steps.compose import FIELDS

        opts = Options("compose", FIELDS, step.body, ctx)
    try:
        if step.kind == "compose" and step.body.cwd:
            cwd = str(ctx.render(step.body.cwd, "cwd"))
        base, where = compose_base(ctx, opts, cwd)
    except Exception:  # noqa: BLE001 - a bad compose_command is the step's own error
        return None
    if step.kind != "compose" and not where and not ctx.vars.get("compose_files"):
        return None  # a wait/http step in a runbook that names no compose project
    if is_v1(base.split(" -f ")[0].split(" -p ")[0]):
        # docker-compose v1 has no --format: its ps shows state and health in columns.
        script = (f"echo '{HEADER}: {base} ps'\n{base} ps 2>&1 || true\n"
                  f"echo '--- last {LOG_LINES} log lines of each service'\n"
                  f"{base} logs --no-color --tail {LOG_LINES} 2>&1 || true")
    else:
        script = (
            f"echo '{HEADER}: {base} ps -a'\n"
            f"{base} ps -a 2>&1 || true\n"
            f"{base} ps -a --format '{{{{.Service}}}} {{{{.State}}}} {{{{.Health}}}}' "
            "2>/dev/null | sort -u | while read -r svc state health; do\n"
            '  case "$state $health" in\n'
            "    *exited*|*restarting*|*dead*|*unhealthy*)\n"
            f"      echo \"--- last {LOG_LINES} log lines of $svc "
            "($state${health:+, $health})\"\n"
            f"      {base} logs --no-color --tail {LOG_LINES} \"$svc\" 2>&1 </dev/null "
            "|| true ;;\n"
            "  esac\n"
            "done || true")
    # Health checks write to the engine, not to the container's log: show their output
    # for containers that are unhealthy (or still starting when the step gave up).
    script += (
        f"\nfor c in $({base} ps -q 2>/dev/null); do\n"
        "  h=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "
        '"$c" 2>/dev/null) || continue\n'
        '  case "$h" in unhealthy|starting)\n'
        "    echo \"--- health check log of $(docker inspect --format '{{.Name}}' \"$c\") ($h)\"\n"
        "    docker inspect --format '{{range .State.Health.Log}}exit {{.ExitCode}}: "
        "{{.Output}}{{println}}{{end}}' \"$c\" | tail -n 5 || true ;;\n"
        "  esac\n"
        "done")
    return RemoteCommand(script=script, cwd=where,
                         sudo=bool(step.body.sudo) if sudo is None else sudo,
                         timeout=PROBE_TIMEOUT, check=False, label="stack state")
