"""restart's backup retention (prune_backups, var backup_keep) on the sandbox VPS.

Dumps are pruned by age (mtime), keeping the newest ``backup_keep``; only files named
like a dump of this database are candidates, and a failed run prunes nothing.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli, Deployment, Result, Sandbox
from tests.e2e.test_restart_rollback import break_login_routes
from tests.e2e.test_shipped_runbooks import source_var, steps_by_id

pytestmark = pytest.mark.e2e


def dumps(sandbox: Sandbox) -> list[str]:
    """The database's dumps in backup_dir, newest first (by mtime, as the prune sees them)."""
    v = sandbox.vars
    out = sandbox.ssh(
        f"find {shlex.quote(v['backup_dir'])} -maxdepth 1 -type f "
        f"-name {shlex.quote(v['db_name'] + '-*.dump')} -printf '%T@ %p\\n' | sort -rn"
    ).stdout
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.strip()]


def restart(cli: Cli, app: Path, keep: int) -> tuple[Result, str, dict[str, str]]:
    """A restart with this backup_keep: its result, its dump, its steps' states."""
    before = cli.run_ids()
    r = cli.run("run", "restart", "--host", "sandbox", "--var", source_var(app),
                "--var", f"backup_keep={keep}")
    record = cli.new_record(before)
    backup = steps_by_id(record)["backup"]["captured"]["backup_file"]
    return r, backup, {s["id"]: s["state"] for s in record["steps"]}


def test_only_the_newest_backup_keep_dumps_remain(
        healthy: Deployment, cli: Cli, sandbox: Sandbox, app_copy: Path) -> None:
    v = sandbox.vars
    bdir = v["backup_dir"]
    # an old dump of this database (a prune candidate), and files that are not: a dump cut
    # short, another database's dump, something else entirely
    stale = f"{bdir}/{v['db_name']}-20000101T000000Z.dump"
    bystanders = [f"{bdir}/{v['db_name']}-20000101T000001Z.dump.partial",
                  f"{bdir}/otherdb-20000101T000000Z.dump", f"{bdir}/README"]
    made = " ".join(shlex.quote(p) for p in [stale, *bystanders])
    sandbox.ssh(f"mkdir -p {shlex.quote(bdir)} && touch -d 2000-01-01 {made}")
    try:
        produced = []
        for run in range(3):
            r, backup, states = restart(cli, app_copy, keep=2)
            assert r.returncode == 0, r.describe()
            assert states["prune_backups"] == "ok", states
            produced.append(backup)
            kept = dumps(sandbox)
            assert len(kept) == 2, kept
            assert kept[0] == backup, (run, kept)
        # the stale dump went with the second run at the latest, the first run's with the third
        assert dumps(sandbox) == [produced[2], produced[1]]

        # a failed run keeps its own dump and deletes none, whatever backup_keep says
        break_login_routes(app_copy)
        r, failed_backup, states = restart(cli, app_copy, keep=1)
        assert r.returncode == 1, r.describe()
        assert states["prune_backups"] == "pending", states
        assert dumps(sandbox) == [failed_backup, produced[2], produced[1]]

        left = sandbox.ssh(f"ls -A {shlex.quote(bdir)}").stdout.split()
        for path in bystanders:
            assert Path(path).name in left, (path, left)
    finally:
        sandbox.ssh(f"rm -f {made}")
