"""``deployer run``, ``apply``, ``rollback``, ``unlock``, ``history`` and ``show``.

These commands load their inputs through ``deployer.session.load_session`` (the same
loader as ``plan``), hand them to the application layer (``deployer.app``: one host,
a group, a rollback, a lock) and render its events with ``deployer.cli.progress``.
The process exit code is the run's: 0 success; 1 a step failed and rollback completed;
2 usage or validation error; 3 failed and rollback incomplete or not run (or a
confirmation was declined); 4 lock held by another run; 130 interrupted.

When ``--host`` names several hosts (or with ``--parallel``, ``--batch-size``,
``--max-fail``, ``--format json``), ``run`` hands over to ``deployer.cli.fleet_run``:
each host gets its own executor, connection, lock, record and rollback, scheduled by
``deployer.fleet`` (default one at a time, the first failure stops the rest).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from deployer.cli.common import (
    inventory_option,
    load_session_from_cli,
    report_format,
    session_options,
)
from deployer.cli.main import get_options
from deployer.errors import EXIT_OK, EXIT_USAGE, UsageError

RUN_EPILOG = """\b
Examples:
  deployer run first-time --host vps
  deployer run deploy --host vps --var release=v1.4.2 --yes
  deployer run deploy --host vps --dry-run          # exactly `deployer plan`
  deployer run deploy --host vps --resume           # continue the last unfinished run
  deployer run deploy --host vps --from migrate     # start at a step
\b
Exit codes: 0 ok; 1 failed, rolled back; 2 usage/validation; 3 failed, not (fully)
rolled back; 4 host locked by another run; 130 interrupted.
"""


def _run_options(func: Any) -> Any:
    options = [
        click.option("--yes", "-y", is_flag=True,
                     help="Answer yes to every `confirm` step (review the plan first)."),
        click.option("--no-rollback", is_flag=True,
                     help="On failure, leave completed steps applied (resume later)."),
        click.option("--accept-new-host-key", is_flag=True,
                     help="Trust and record the key of a host seen for the first time."),
        click.option("--skip-preflight", is_flag=True,
                     help="Skip the quick host checks made before the first step."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _fleet_options(func: Any) -> Any:
    """Scheduling options shared by `run` and `apply` (several hosts)."""
    for option in reversed([
        click.option("--parallel", "-p", type=int, default=None, metavar="N",
                     help="Run on N hosts at once (default 1; with --batch-size: the "
                     "batch size)."),
        click.option("--batch-size", type=int, default=None, metavar="K",
                     help="Rolling: K hosts at a time; a batch starts when the previous "
                     "succeeded."),
        click.option("--max-fail", default=None, metavar="N|P%",
                     help="Stop starting hosts once more than N hosts (or P% of them) "
                     "failed (default 0)."),
        click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]),
                     default="text", show_default=True,
                     help="json: per-host results on stdout, progress on stderr. With "
                     "--dry-run: the plan as a table (text), json or markdown."),
    ]):
        func = option(func)
    return func


def _execute(ctx: click.Context, session: Any, options: Any, target: str | None,
             parallel: int | None, batch_size: int | None, max_fail: str | None,
             fmt: str) -> None:
    """One host with text output: the plain executor; otherwise the fleet scheduler."""
    if fmt == "markdown":
        raise UsageError("--format markdown is a plan format: use it with --dry-run or "
                         "`deployer plan`", hint="for a run use --format text or json")
    if options.resume:
        from deployer.app import prepare_resume
        from deployer.cli.progress import ConsoleEvents

        prepare_resume(session, ConsoleEvents(inputs=session.inputs),
                       options.accept_new_host_key)
    # Render every step of every host first, as `plan` does: an undefined variable or a
    # missing template is bad input (exit 2) before anything runs, not a failure of
    # step k after steps 1..k-1 changed the host.
    session.plan()
    if len(session.hosts) > 1 or fmt == "json" or parallel or batch_size or max_fail:
        from deployer.cli.fleet_run import run_group

        ctx.exit(run_group(session, options, target=target, parallel=parallel,
                           batch_size=batch_size, max_fail=max_fail, fmt=fmt))
    from deployer.app import deploy_host
    from deployer.cli.progress import ConsoleEvents

    ctx.exit(deploy_host(session, options, ConsoleEvents(inputs=session.inputs)).exit_code)


@click.command(epilog=RUN_EPILOG)
@click.argument("runbook")
@session_options
@_run_options
@click.option("--dry-run", is_flag=True, help="Print the plan (`deployer plan`) and stop.")
@click.option("--resume", is_flag=True,
              help="Continue the latest unfinished run of RUNBOOK on the host.")
@click.option("--force", is_flag=True,
              help="With --resume: go on even though inputs changed since that run.")
@click.option("--from", "from_step", metavar="STEP", default=None,
              help="Start at STEP (id or 1-based number); earlier steps count as done.")
@click.option("--only", "only_steps", metavar="STEP", multiple=True,
              help="Run only STEP (id or 1-based number); repeat it (or a,b) for several.")
@_fleet_options
@click.pass_context
def run(ctx: click.Context, runbook: str, host: str | None, cli_vars: tuple[str, ...],
        vars_files: tuple[str, ...], secrets_file: str | None, yes: bool, no_rollback: bool,
        accept_new_host_key: bool, skip_preflight: bool, dry_run: bool, resume: bool,
        force: bool, from_step: str | None, only_steps: tuple[str, ...],
        parallel: int | None,
        batch_size: int | None, max_fail: str | None, fmt: str) -> None:
    """Run RUNBOOK on a host: live output, checkpoints, rollback on failure.

    Every step transition is saved to .deployer/runs/<run-id>.json and all output
    (secrets masked) to .deployer/runs/<run-id>.log. A failed step rolls back the
    completed ones in reverse order (unless --no-rollback or on_failure: stop); an
    interrupted or killed run continues with --resume. The host is locked for the
    duration of the run.
    """
    from deployer.executor import RunOptions

    only_step = ",".join(only_steps) or None
    if dry_run:
        from deployer.cli.plan import plan as plan_command

        if resume or from_step or only_step:
            raise UsageError("--dry-run shows the whole plan; it cannot be combined with "
                             "--resume, --from or --only")
        ctx.invoke(plan_command, runbook=runbook, host=host, cli_vars=cli_vars,
                   vars_files=vars_files, secrets_file=secrets_file,
                   fmt="table" if fmt == "text" else fmt, out=None,
                   placeholder_secrets=False)
        return
    if force and not resume:
        raise UsageError("--force only applies to --resume")
    session = load_session_from_cli(ctx, runbook, host, vars_files, cli_vars, secrets_file)
    options = RunOptions(yes=yes, resume=resume, force=force, from_step=from_step,
                         only_step=only_step, no_rollback=no_rollback,
                         accept_new_host_key=accept_new_host_key,
                         skip_preflight=skip_preflight)
    _execute(ctx, session, options, host, parallel, batch_size, max_fail, fmt)


@click.command()
@click.argument("plan_file", metavar="PLAN.json", type=click.Path(dir_okay=False))
@click.option("--approve", default=None, metavar="DIGEST",
              help="The plan digest a reviewer approved (printed by `plan --out`; 12+ hex "
              "digits). Needed without a terminal.")
@click.option("--approvals", "approvals_file", default=None, metavar="FILE",
              type=click.Path(dir_okay=False),
              help="A file of approved plan digests, one per line (# comments).")
@click.option("--approved-by", default="", metavar="WHO",
              help="Who approved it, for the host's audit log (e.g. the PR's reviewer).")
@click.option("--secrets-file", default=None, metavar="FILE",
              help="Dotenv file with secrets, instead of the one the plan was made with.")
@_run_options
@_fleet_options
@click.pass_context
def apply(ctx: click.Context, plan_file: str, approve: str | None, approvals_file: str | None,
          approved_by: str, secrets_file: str | None, yes: bool, no_rollback: bool,
          accept_new_host_key: bool, skip_preflight: bool, parallel: int | None,
          batch_size: int | None, max_fail: str | None, fmt: str) -> None:
    """Run a plan saved with `deployer plan --out PLAN.json`.

    The plan's inputs (runbook, host, vars, vars files, inventory, secrets file) are
    loaded again and their digests compared with those saved in the plan: if any file
    changed since, the plan is refused as stale. Secrets are fetched again (a saved
    plan never holds them). A plan for several hosts runs like `deployer run` on a
    group: --parallel, --batch-size, --max-fail and --format json apply.
    """
    import sys

    from deployer.app.saved_plan import check_approval, load_saved_plan, plan_digest
    from deployer.executor import RunOptions
    from deployer.planner import load_plan

    load_plan(plan_file)  # a missing or foreign file: its own message first
    digest = plan_digest(plan_file)
    approved, by = check_approval(digest, approve, approvals_file, sys.stdin.isatty(),
                                  approved_by)
    session, inputs = load_saved_plan(plan_file, get_options(ctx).project_dir, secrets_file)
    if not approved:
        click.echo(f"plan {plan_file}: digest {digest}", err=True)
        if not yes and not click.confirm("Apply this plan?", default=False, err=True):
            click.echo("not applied", err=True)
            ctx.exit(EXIT_OK)
    options = RunOptions(yes=yes, no_rollback=no_rollback,
                         accept_new_host_key=accept_new_host_key,
                         skip_preflight=skip_preflight, plan_digest=digest,
                         approved=bool(approved), approved_by=by)
    _execute(ctx, session, options, inputs.get("host"), parallel, batch_size, max_fail, fmt)


@click.command(name="rollback")
@click.argument("runbook", required=False)
@session_options
@click.option("--run", "run_id", default=None, metavar="RUN_ID",
              help="The run to roll back (default: the latest run of RUNBOOK on the host).")
@click.option("--to", "to", default=None, metavar="N|previous",
              help="Go back to release N (or the previous one): every later release is "
              "rolled back, newest first (see `deployer releases`).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before rolling back.")
@click.option("--force", is_flag=True, help="Go on even though inputs changed since the run.")
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust and record the key of a host seen for the first time.")
@click.pass_context
def rollback(ctx: click.Context, runbook: str | None, host: str | None,
             cli_vars: tuple[str, ...], vars_files: tuple[str, ...], secrets_file: str | None,
             run_id: str | None, to: str | None, yes: bool, force: bool,
             accept_new_host_key: bool) -> None:
    """Roll back the completed steps of a finished or failed run, newest first; or, with
    --to, every release after release N.

    Undo actions are the steps' `rollback` bodies (or their kind's built-in undo),
    rendered with the values the run captured. An irreversible step stops the
    rollback. The run record is updated (steps rolled_back / rollback_failed).
    """
    from deployer.app import roll_back_host, run_to_roll_back, steps_to_undo
    from deployer.cli.progress import ConsoleEvents

    if to is not None:
        _roll_back_to(ctx, runbook, host, cli_vars, vars_files, secrets_file, run_id, to, yes,
                      force, accept_new_host_key)
        return
    if runbook is None:
        raise UsageError("name the runbook whose run to roll back, or give --to N",
                         hint="deployer rollback restart --host vps, or deployer rollback "
                              "--host vps --to previous")
    session = load_session_from_cli(ctx, runbook, host, vars_files, cli_vars, secrets_file)
    events = ConsoleEvents(inputs=session.inputs)
    record = run_to_roll_back(session, run_id, events, accept_new_host_key)
    todo = steps_to_undo(record)
    if todo and not yes:
        if not events.can_confirm():
            raise UsageError("rollback changes the host; confirm with --yes when there is "
                             "no terminal")
        click.echo(f"run {record.id} ({record.status}): will undo, newest first: "
                   f"{', '.join(todo)}", err=True)
        if not click.confirm("Roll back?", default=False, err=True):
            click.echo("not rolled back", err=True)
            ctx.exit(EXIT_OK)
    ctx.exit(roll_back_host(session, record, events, force=force,
                            accept_new_host_key=accept_new_host_key).exit_code)


def _roll_back_to(ctx: click.Context, runbook: str | None, host: str | None,
                  cli_vars: tuple[str, ...], vars_files: tuple[str, ...],
                  secrets_file: str | None, run_id: str | None, to: str, yes: bool,
                  force: bool, accept_new_host_key: bool) -> None:
    """``rollback --to N``: the runs of the later releases rolled back, newest first,
    each with its own runbook and recorded values; the first that fails stops it."""
    from deployer.app import roll_back_host
    from deployer.app.hoststate import releases_to_undo
    from deployer.cli.logs import default_runbook
    from deployer.cli.progress import ConsoleEvents
    from deployer.state import StateStore

    if run_id:
        raise UsageError("--run and --to cannot be combined")
    opts = get_options(ctx)
    first = load_session_from_cli(ctx, runbook or default_runbook(opts.project_dir), host,
                                  vars_files, cli_vars, secrets_file, placeholder=True)
    if len(first.hosts) != 1:
        raise UsageError("rollback --to works on one host at a time",
                         hint="name a single host with --host")
    todo = releases_to_undo(first, to, accept_new_host_key)
    listing = ", ".join(f"#{r.number} ({r.runbook} {r.run_id})" for r in todo)
    events = ConsoleEvents(inputs=first.inputs)
    if not yes:
        if not events.can_confirm():
            raise UsageError("rollback changes the host; confirm with --yes when there is "
                             "no terminal")
        click.echo(f"will roll back, newest first: {listing}", err=True)
        if not click.confirm("Roll back?", default=False, err=True):
            click.echo("not rolled back", err=True)
            ctx.exit(EXIT_OK)
    store = StateStore(opts.project_dir)
    for release in todo:
        session = load_session_from_cli(ctx, release.runbook, host, vars_files, cli_vars,
                                        secrets_file)
        click.echo(f"release #{release.number}: rolling back run {release.run_id}")
        outcome = roll_back_host(session, store.load(release.run_id), events, force=force,
                                 accept_new_host_key=accept_new_host_key)
        if outcome.exit_code != EXIT_OK:
            click.echo(f"rollback --to stopped at release #{release.number}: the later "
                       "ones are rolled back, this one and the older ones are not", err=True)
            ctx.exit(outcome.exit_code)
    click.echo("rolled back releases " + ", ".join(f"#{r.number}" for r in todo))


@click.command()
@inventory_option
@click.option("--host", "-H", "host", required=True, metavar="HOST",
              help="Host (or group) from the inventory.")
@click.option("--lock-dir", default=None, metavar="PATH",
              help="Lock directory, if the runbook sets var lock_dir.")
@click.option("--yes", "-y", is_flag=True, help="Remove without asking.")
@click.option("--force", is_flag=True,
              help="Remove it even if its holder is a deployer still running here.")
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust and record the key of a host seen for the first time.")
@click.pass_context
def unlock(ctx: click.Context, host: str, lock_dir: str | None, yes: bool, force: bool,
           accept_new_host_key: bool) -> None:
    """Show who holds the deploy lock of a host, then remove it.

    For a lock left by a run that died (machine rebooted, process killed). A run
    resumed with --resume takes over its own lock without this. A lock whose holder
    is a deployer process still running on this machine is not stale: it is kept
    unless --force (that run then warns, at its end, that its lock was removed).
    """
    from deployer.app import open_lock
    from deployer.inventory import load_inventory

    opts = get_options(ctx)
    inventory = load_inventory(opts.inventory, opts.project_dir)
    for target in inventory.resolve(host):
        with open_lock(target, lock_dir, accept_new_host_key) as lock:
            if not lock.held:
                click.echo(f"{target.name}: not locked ({lock.path})")
                continue
            click.echo(f"{target.name}: locked by {lock.holder_text}")
            click.echo(f"  lock: {lock.path}")
            overridden = lock.refuse_if_live(force)
            if overridden is not None:
                click.echo(f"  warning: pid {overridden.pid} is a deployer still running on "
                           "this machine; removing its lock anyway (--force): another run "
                           "can now start beside it", err=True)
            if not yes:
                if not sys.stdin.isatty():
                    raise UsageError("refusing to remove a lock without confirmation",
                                     hint="add --yes")
                if not click.confirm(f"Remove the lock of {target.name}?", default=False,
                                     err=True):
                    click.echo("  kept")
                    continue
            lock.remove()
            click.echo(f"{target.name}: lock removed")
            _show_leftover(lock.stop_leftover(opts.project_dir))


def _show_leftover(stop: Any) -> None:
    """What became of the command the lock's dead holder left running (a
    ``deployer.app.LeftoverStop``, or None when there was nothing to look at)."""
    from deployer.app import unlock as u

    if stop is None or stop.result in (u.NONE_LEFT, u.GONE):
        return
    if stop.result == u.NOT_RECORDED:
        click.echo(f"  warning: run {stop.run_id} is not recorded on this machine: a command "
                   "it left running on the host (if any) was not checked", err=True)
    elif stop.result == u.MAY_STILL_RUN:
        click.echo(f"  warning: the command run {stop.run_id} left running (step {stop.step}) "
                   f"may still run: {stop.reason}", err=True)
    elif stop.result == u.STOPPED:
        click.echo(f"  stopped the command run {stop.run_id} left running (step {stop.step}, "
                   f"process group {stop.pgid})")


def _read_hosts(ctx: click.Context, host: str, accept_new_host_key: bool) -> None:
    """The host's records into this checkout's cache (``deployer.hoststate``)."""
    from deployer.app.hoststate import refresh_hosts
    from deployer.cli.common import load_session_from_cli
    from deployer.cli.logs import default_runbook

    opts = get_options(ctx)
    session = load_session_from_cli(ctx, default_runbook(opts.project_dir), host, (), (),
                                    None, placeholder=True)
    for warning in refresh_hosts(session, accept_new_host_key):
        click.echo(f"warning: {warning}", err=True)


@click.command()
@click.option("--host", "-H", "host", default=None,
              help="Only runs on this host (or group), read from the host itself.")
@click.option("--runbook", "-r", "runbook", default=None, help="Only runs of this runbook.")
@click.option("--limit", "-n", default=20, show_default=True, help="How many runs (0: all).")
@click.option("--local", is_flag=True,
              help="Only this checkout's records: do not ask the host.")
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust and record an unknown host key (a changed key is always refused).")
@report_format
@click.pass_context
def history(ctx: click.Context, host: str | None, runbook: str | None, limit: int,
            local: bool, accept_new_host_key: bool, as_json: bool) -> None:
    """List past runs, newest first: id, runbook, host, status, start, duration, operator.

    With --host, the runs are read from the host's state directory first, so every
    operator's and CI runner's runs are listed; without it, this checkout's records."""
    from deployer.errors import DeployerError
    from deployer.inventory import load_inventory
    from deployer.state import StateStore

    opts = get_options(ctx)
    names = None
    if host:
        try:
            names = {h.name for h in
                     load_inventory(opts.inventory, opts.project_dir).resolve(host)}
        except DeployerError:
            names = {host}  # a host the inventory does not have (any more): local runs
        else:
            if not local:
                _read_hosts(ctx, host, accept_new_host_key)
    store = StateStore(opts.project_dir)
    records = [r for r in store.list_runs(runbook=runbook)
               if names is None or r.host in names][:limit or None]
    if as_json:
        click.echo(json.dumps([r.summary() for r in records], indent=2))
        return
    if not records:
        click.echo("no runs recorded" + (f" for host {host}" if host else "")
                   + (f" of runbook {runbook}" if runbook else ""))
        return
    from deployer.cli.progress import console, history_table

    history_table(records, console())


@click.command()
@click.argument("run_id")
@click.option("--host", "-H", "host", default=None,
              help="Read the run from this host's state directory first.")
@click.option("--accept-new-host-key", is_flag=True,
              help="Trust and record an unknown host key (a changed key is always refused).")
@report_format
@click.option("--tail", default=10, show_default=True, help="Output lines shown per step.")
@click.pass_context
def show(ctx: click.Context, run_id: str, host: str | None, accept_new_host_key: bool,
         as_json: bool, tail: int) -> None:
    """Show one run: every step with its state, duration and last output lines."""
    from deployer.state import StateStore

    if host:
        _read_hosts(ctx, host, accept_new_host_key)
    store = StateStore(get_options(ctx).project_dir)
    record = store.load(run_id)
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
        return
    from deployer.cli.progress import console, show_run

    show_run(record, console(), tail=tail)


__all__ = ["run", "apply", "rollback", "unlock", "history", "show", "EXIT_USAGE"]
