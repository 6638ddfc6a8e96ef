"""Test-only stand-ins for step kinds whose module is not in this checkout yet.

The runbook/plan tests use the real kinds; while a kind module is missing (kinds are
written in parallel) a minimal kind with a ``command`` option takes its place so the
loader, planner and CLI can still be exercised. Once every module exists this is a no-op.
"""

from __future__ import annotations

import importlib

from deployer.commands import RemoteCommand
from deployer.steps.base import FieldSpec, StepKind


def _fake(name: str) -> StepKind:
    def build(body, ctx, step=None):
        return [RemoteCommand(script=f"{name}: " + str(ctx.render(body.options.get(
            "command", ""), f"{name}.command")))]

    return StepKind(name=name, doc=f"(test stand-in for {name})",
                    fields={"command": FieldSpec("string", "command", required=True)},
                    build=build, shorthand="command")


def install() -> None:
    import deployer.steps as steps

    try:
        steps.registry()
        return
    except ModuleNotFoundError:
        pass
    found = {}
    for mod in steps.KIND_MODULES:
        try:
            found[mod] = importlib.import_module(f"deployer.steps.{mod}").KIND
        except ModuleNotFoundError:
            found[mod] = _fake(mod)
    steps._registry = found


def all_real() -> bool:
    import deployer.steps as steps

    return all(k.doc and not k.doc.startswith("(test stand-in")
               for k in steps.registry().values())
