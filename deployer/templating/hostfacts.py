"""Host facts as a render context sees them (``deployer.facts``): the pinned or found
value, else the fact's stand-in, remembered so a plan can say the host decides."""

from __future__ import annotations

from deployer.templating.base import ContextBase


class HostFacts(ContextBase):
    """``fact`` and ``facts_pending``."""

    def fact(self, name: str) -> str:
        """The host fact ``name`` (``deployer.facts``): pinned by the variable of that
        name (or found on the host and set there by the run), else the fact's stand-in,
        remembered for ``facts_pending``."""
        if self._raw.get(name):
            return str(self.vars[name])
        from deployer.facts import get_fact

        self._stood_in.add(name)
        return get_fact(name).stand_in

    def facts_pending(self) -> set[str]:
        """The facts something rendered so far used while unknown: through ``fact``
        (a kind), or a template naming the fact's variable. The plan shows their
        stand-ins for what the host decides at run time."""
        from deployer.facts import registry

        named = {n for n in registry() if n in self._names.looked_up and not self._raw.get(n)}
        return self._stood_in | named
