"""Every catalogue entry is diagnosed from its own real samples, near misses are not,
and the failure classes the project promises are all present."""

from __future__ import annotations

import pytest

from deployer.diagnose.matcher import Entry, Sample, diagnose, load_catalogue, unfiltered_entries

CATALOGUE = load_catalogue()


def _run(sample: Sample) -> list[str]:
    found = diagnose(sample.text, kind=sample.kind, exit_code=sample.exit_code,
                     previous_steps=list(sample.previous_steps), context=dict(sample.context))
    return [d.id for d in found]


SAMPLES = [pytest.param(entry, sample, id=f"{entry.id}-{n}")
           for entry in CATALOGUE for n, sample in enumerate(entry.samples)]
NEAR_MISSES = [pytest.param(entry, sample, id=f"{entry.id}-near-{n}")
               for entry in CATALOGUE for n, sample in enumerate(entry.near_misses)]


@pytest.mark.parametrize(("entry", "sample"), SAMPLES)
def test_sample_is_diagnosed_as_its_entry_first(entry: Entry, sample: Sample) -> None:
    ids = _run(sample)
    assert ids, f"{entry.id}: sample matched nothing: {sample.text!r}"
    assert ids[0] == entry.id, f"{entry.id}: best match was {ids[0]} ({ids})"


@pytest.mark.parametrize(("entry", "sample"), NEAR_MISSES)
def test_near_miss_is_not_diagnosed_as_its_entry(entry: Entry, sample: Sample) -> None:
    assert entry.id not in _run(sample)


# Classes named by issue 5; each must stay in the catalogue.
REQUIRED = [
    "own-package-missing", "dependency-missing", "console-script-missing",
    "pg-password-auth-failed", "psql-variable-in-dollar-quote", "route-404",
    "copy-from-stage-missing", "system-lib-missing", "redis-password-doubled",
    "sqlalchemy-metadata-reserved", "sqlalchemy-ambiguous-fk", "ratelimit-strategy-invalid",
    "seed-duplicate-key", "async-engine-sync-driver", "sync-engine-async-driver",
    "port-already-allocated", "no-space-left", "compose-v2-missing", "compose-v1-missing",
    "ssh-host-key-unknown", "ssh-host-key-changed", "ssh-auth-failed",
    "ssh-connection-refused", "ssh-connection-timeout", "docker-daemon-down",
]


def test_every_promised_class_is_catalogued() -> None:
    ids = {e.id for e in CATALOGUE}
    assert [r for r in REQUIRED if r not in ids] == []


def test_every_pattern_feeds_the_literal_prefilter() -> None:
    # A pattern without a usable literal would force a full regex pass on every line.
    assert unfiltered_entries() == []


def test_entries_are_complete() -> None:
    for entry in CATALOGUE:
        assert entry.cause.count(". ") + 1 <= 4, f"{entry.id}: cause should be ~two sentences"
        assert len(entry.fix) > 20, entry.id


# Hand-written messages (not the catalogue's own samples) for the key classes, so a
# catalogue edit that breaks recognition fails here even if its sample was edited too.
EXPLICIT = [
    ("ModuleNotFoundError: No module named 'myshop'", {"context": {"app_package": "myshop"}},
     "own-package-missing"),
    ("gunicorn myshop.main:app -k uvicorn.workers.UvicornWorker\n"
     "ModuleNotFoundError: No module named 'myshop'", {}, "own-package-missing"),
    ("ModuleNotFoundError: No module named 'requests'", {"context": {"app_package": "myshop"}},
     "dependency-missing"),
    ("ModuleNotFoundError: No module named 'myshop'", {}, "dependency-missing"),
    ("No module named alembic.__main__; 'alembic' is a package and cannot be directly executed",
     {}, "dependency-missing"),
    ('Error response from daemon: exec: "celery": executable file not found in $PATH', {},
     "console-script-missing"),
    ('FATAL:  password authentication failed for user "shop_admin"',
     {"previous_steps": ["upload_env", "reset_schema"]}, "pg-password-auth-failed"),
    ('psql:<stdin>:4: ERROR:  syntax error at or near ":"', {"kind": "psql"},
     "psql-variable-in-dollar-quote"),
    ('GET /api/v1/orders -> 404 {"detail":"Not Found"}', {"kind": "http"}, "route-404"),
    ("ImportError: libmagic.so.1: cannot open shared object file: No such file or directory", {},
     "system-lib-missing"),
    ("Error 111 connecting to redis://:hunter2@:hunter2@cache:6379/0", {},
     "redis-password-doubled"),
    ("sqlalchemy.exc.InvalidRequestError: Attribute name 'metadata' is reserved when using "
     "the Declarative API.", {}, "sqlalchemy-metadata-reserved"),
    ('sqlalchemy.exc.IntegrityError: (psycopg2.errors.UniqueViolation) duplicate key value '
     'violates unique constraint "users_email_key"', {"previous_steps": ["seed_admin"]},
     "seed-duplicate-key"),
    ("Error response from daemon: Ports are not available: exposing port TCP 0.0.0.0:80 -> "
     "0.0.0.0:0: listen tcp 0.0.0.0:80: bind: address already in use", {},
     "port-already-allocated"),
    ("write /var/lib/docker/overlay2/x/merged/tmp/f: no space left on device", {},
     "no-space-left"),
    ("docker: 'compose' is not a docker command.\nSee 'docker --help'", {}, "compose-v2-missing"),
    ("sh: 1: docker-compose: not found", {}, "compose-v1-missing"),
    ("Cannot connect to the Docker daemon at unix:///run/docker.sock. Is the docker daemon "
     "running?", {}, "docker-daemon-down"),
    ("deploy@127.0.0.1: Permission denied (publickey,password).", {}, "ssh-auth-failed"),
    ("ssh: connect to host 127.0.0.1 port 2222: Connection refused", {},
     "ssh-connection-refused"),
    ("The asyncio extension requires an async driver to be used. The loaded 'psycopg2' is "
     "not async.", {}, "async-engine-sync-driver"),
    ("COPY --from=build /src/dist ./dist\n"
     'ERROR: failed to solve: failed to compute cache key: "/src/dist": not found', {},
     "copy-from-stage-missing"),
]


@pytest.mark.parametrize(("text", "kwargs", "expected"), EXPLICIT,
                         ids=[e[2] + f"-{i}" for i, e in enumerate(EXPLICIT)])
def test_explicit_messages(text: str, kwargs: dict, expected: str) -> None:
    found = diagnose(text, **kwargs)
    assert found and found[0].id == expected, [d.id for d in found]
