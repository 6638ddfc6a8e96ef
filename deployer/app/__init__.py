"""The application layer: what the CLI asks deployer to do, as functions returning data.

``deployer.cli`` parses arguments, calls one of these and renders the result; it never
builds an executor, schedules hosts or decides a policy itself.

- ``build``: the one executor builder (and the connection ``unlock`` uses);
- ``host``: run or roll back on one host, with SIGINT/SIGTERM handled once;
- ``group``: a group run through ``deployer.fleet`` (resume policy, fleet rollback);
- ``unlock``: a host's lock and the command its dead holder left running;
- ``saved_plan``: the session of ``deployer apply PLAN.json``, refused when stale;
- ``doctor``: the doctor checks of every host.
"""

from __future__ import annotations

from .build import build_executor, connect, sudo_password
from .group import GroupPlan, deploy_group, host_outcome, prepare_group
from .host import deploy_host, prepare_resume, roll_back_host, run_to_roll_back, steps_to_undo
from .saved_plan import load_saved_plan
from .unlock import LeftoverStop, LockView, open_lock, stop_leftover_of

__all__ = [
    "GroupPlan", "LeftoverStop", "LockView", "build_executor", "connect", "deploy_group",
    "deploy_host", "host_outcome", "load_saved_plan", "open_lock", "prepare_group",
    "prepare_resume",
    "roll_back_host", "run_to_roll_back", "steps_to_undo", "stop_leftover_of",
    "sudo_password",
]
