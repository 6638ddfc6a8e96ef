"""The secret names a deployment needs: the runbook's own plus the var ``app_secrets``.

The shipped runbooks declare only ``postgres_password``; which other secrets an app
has (its signing key, its admin's password, a mail password...) is the inventory's to
say, with the list var ``app_secrets``. ``with_app_secrets`` merges those names, for
every host in play, into the names that are fetched, masked and usable as
``secrets.NAME``; a name that is not a plain identifier is refused here, before any
secret is looked up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from deployer.errors import InputError

VAR = "app_secrets"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def with_app_secrets(declared: Iterable[str],
                     host_vars: Iterable[Mapping[str, Any]]) -> list[str]:
    """``declared`` followed by every name of each host's ``app_secrets`` (in order,
    without repeats)."""
    names = list(dict.fromkeys(declared))
    for variables in host_vars:
        value = dict.get(variables, VAR) if isinstance(variables, dict) else None
        if value is None:
            continue
        if not isinstance(value, (list, tuple)):
            raise InputError(
                f"var {VAR} must be a list of secret names, got {type(value).__name__}",
                hint=f"{VAR}: [jwt_secret, admin_password]")
        for name in value:
            if not isinstance(name, str) or not _NAME.match(name):
                raise InputError(
                    f"var {VAR}: {name!r} is not a secret name",
                    hint="use letters, digits and _ (it is also the DEPLOYER_SECRET_<NAME> "
                         "variable)")
            if name not in names:
                names.append(name)
    return names
