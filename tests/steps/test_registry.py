"""Every registered kind is complete: documented fields of known types, a valid
shorthand, and a build that refuses a body missing its required options."""

from __future__ import annotations

import pytest

from deployer.errors import InputError
from deployer.models import StepBody
from deployer.steps import KIND_MODULES, registry
from tests.steps.conftest import FixtureContext

TYPES = {"string", "integer", "number", "boolean", "list[string]", "list[integer]",
         "mapping", "any", "string|list[string]", "choice"}


def test_registry_has_every_kind() -> None:
    assert sorted(registry()) == sorted(KIND_MODULES)


@pytest.mark.parametrize("name", KIND_MODULES)
def test_fields_are_documented(name: str) -> None:
    kind = registry()[name]
    assert kind.doc.strip()
    assert kind.fields
    for field_name, spec in kind.fields.items():
        assert spec.type in TYPES, (field_name, spec.type)
        assert len(spec.doc) > 20, field_name
        if spec.type == "choice":
            assert spec.choices and (spec.default is None or spec.default in spec.choices)
    if kind.shorthand is not None:
        assert kind.shorthand in kind.fields


@pytest.mark.parametrize("name", KIND_MODULES)
def test_empty_body_is_an_input_error(name: str) -> None:
    kind = registry()[name]
    with pytest.raises(InputError):
        kind.build(StepBody(kind=name, options={}), FixtureContext(), None)


def test_fixture_context_is_the_production_context() -> None:
    # the kind fixtures must render exactly as plan and run do: the fixture context
    # may construct a StepContext but must not override any of its behaviour
    from deployer.templating import StepContext

    assert issubclass(FixtureContext, StepContext)
    own = {name for name in vars(FixtureContext) if not name.startswith("__")}
    assert own == set(), own
