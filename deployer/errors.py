"""The one error hierarchy of deployer, and the exit code each error maps to.

Every failure deployer reports on purpose is a ``DeployerError``. The CLI catches
``DeployerError`` and prints ``str(error)`` (plus a hint when there is one) with no
traceback unless ``--debug``; anything else escaping is a bug and shows a traceback.

    DeployerError                 exit 2 unless said otherwise
    ├── UsageError                bad command-line usage (unknown runbook, bad --var)
    ├── InputError                bad input files; carries one or more ``Problem``
    │   (YAML syntax, schema, templates, inventory, undefined variables)
    ├── SecretError               secrets that are missing or cannot be fetched
    │   └── SecretUnavailable     a secret's inventory command failed (store locked,
    │                             tool missing); only commands that act on a
    │                             host resolve secrets: `plan` never does
    ├── StalePlanError            a saved plan or a resumed run no longer matches its inputs
    ├── TransportError            SSH could not connect / a session died        (exit 3)
    │   └── HostKeyError          unknown or changed host key                    (exit 2)
    ├── LockHeldError             another run holds the host lock                (exit 4)
    └── RunFailed                 a run failed; exit 1 or 3 decided by rollback outcome

Exit codes: 0 success; 1 a step failed and rollback completed; 2 usage or validation
error; 3 failed and rollback incomplete or not run; 4 lock held; 130 interrupted. Their
meanings live in one table, ``outcomes.EXIT_TABLE``; the names below read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployer.outcomes import ExitCode

EXIT_OK = int(ExitCode.OK)
EXIT_ROLLED_BACK = int(ExitCode.ROLLED_BACK)
EXIT_USAGE = int(ExitCode.USAGE)
EXIT_FAILED = int(ExitCode.FAILED)
EXIT_LOCKED = int(ExitCode.LOCKED)
EXIT_INTERRUPTED = int(ExitCode.INTERRUPTED)


@dataclass(frozen=True)
class Position:
    """Where something is in an input file; line and col are 1-based."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    """One finding about an input file: what is wrong, where, and how to fix it."""

    message: str
    position: Position | None = None
    path: str = ""  # dotted location inside the document, e.g. "steps[2].retries"
    hint: str = ""
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = f"{self.position}: " if self.position else ""
        at = f"{self.path}: " if self.path else ""
        text = f"{where}{at}{self.message}"
        if self.hint:
            text += f" (fix: {self.hint})"
        return text


class DeployerError(Exception):
    """Base of every error deployer reports on purpose."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(DeployerError):
    """Bad command-line usage."""


class InputError(DeployerError):
    """One or more problems in runbooks, inventory, templates or vars files."""

    def __init__(self, problems: list[Problem] | Problem | str, hint: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem(problems, hint=hint)]
            hint = ""  # shown with its one problem
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems), hint)


class SecretError(DeployerError):
    """Secrets that are missing or whose source failed."""


class SecretUnavailable(SecretError):
    """A secret's inventory command failed or timed out: the secret exists somewhere the
    operator cannot reach now (``plan`` may still show the plan with stand-ins)."""


class StalePlanError(DeployerError):
    """A saved plan or resumable run whose inputs changed since."""

    def __init__(self, message: str, changes: list[str] | None = None, hint: str = "") -> None:
        self.changes = list(changes or [])
        full = message + "".join(f"\n  - {c}" for c in self.changes)
        super().__init__(full, hint)


class TransportError(DeployerError):
    """SSH connection could not be made or was lost."""

    exit_code = EXIT_FAILED


class HostKeyError(TransportError):
    """The host presented an unknown or a changed key."""

    exit_code = EXIT_USAGE


class LockHeldError(DeployerError):
    """Another run holds the deploy lock on the host."""

    exit_code = EXIT_LOCKED

    def __init__(self, message: str, holder: dict | None = None, hint: str = "") -> None:
        super().__init__(message, hint)
        self.holder = holder or {}


class RunFailed(DeployerError):
    """A run ended in failure; ``exit_code`` says whether rollback completed."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED, hint: str = "") -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code
