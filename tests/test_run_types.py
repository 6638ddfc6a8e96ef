"""The executor's seam types: what a record keeps of the options, and what ``ok`` means;
``deployer.executor`` still exports them."""

from __future__ import annotations

from deployer import executor, run_types
from deployer.run_types import RunOptions


def test_only_the_options_set_are_recorded() -> None:
    opts = RunOptions(resume=True, from_step="b", approved_by="")
    assert opts.recorded() == {"resume": True, "from_step": "b"}
    assert opts.to_dict()["yes"] is False


def test_the_executor_re_exports_the_seam_types() -> None:
    assert executor.RunOptions is run_types.RunOptions
    assert executor.RunOutcome is run_types.RunOutcome
    assert executor.Events is run_types.Events
