"""The three example apps (examples/app: FastAPI + Alembic with JSON login;
examples/django; examples/fastapi-form), deployed to the sandbox VPS with the shipped
runbooks through the real CLI of the built wheel,
installed into a fresh venv (``wheel_deployer``): the project directory holds only the
inventory and the secrets file, so the packaged runbooks and templates are what runs.

Each app's inventory is what `deployer init` writes for it; the test changes only
inventory variables: the host connection, and the names and ports that keep this
checkout's deployment apart from every other (project, directories, image tag, ports),
plus the sandbox's locally built base images. Then, per app, in order:

1. `first-time`: health, the wrong login refused, the admin's login accepted;
2. `restart` with a code change (the version): the new version answers;
3. `restart` with a migration that fails half-way: the run rolls back, the previous
   version still serves on the previous schema.

Compose v2 only (Django's one-off commands run in `web`, fastapi-form uses depends_on
conditions): these tests are not in the compose_v1 pass.
"""

from __future__ import annotations

import json
import re
import secrets as random_secrets
import shlex
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployer.steps.compose import backup_tag
from tests.e2e.conftest import ROOT, Cli, Result, Sandbox, wait_for

pytestmark = pytest.mark.e2e

# Offsets from the sandbox's own (per-checkout) api port: other checkouts' sandboxes
# have other base ports, so these stay theirs alone. Below the ephemeral range.
PORTS = {"django": (1000, 3000), "fastapi-form": (2000, 4000), "app": (5000, 6000)}
# Behind the proxy: the env name each app reads its port from inside the container, and
# its health route (the gate's first check).
SLOT_PORT_ENV = {"django": "WEB_PORT", "fastapi-form": "UVICORN_PORT", "app": "API_PORT"}
HEALTH = {"django": "/healthz/", "fastapi-form": "/api/v1/utils/health-check/",
          "app": "/api/health"}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def request(url: str, method: str = "GET", form: dict[str, str] | None = None,
            headers: dict[str, str] | None = None, json_body: dict[str, str] | None = None
            ) -> tuple[int, str, dict[str, str]]:
    """One request to the sandbox (loopback only, no proxy, redirects not followed)."""
    assert url.startswith("http://127."), url
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    headers = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)
    except urllib.error.URLError as exc:
        return 0, str(exc.reason), {}


@dataclass
class Example:
    name: str
    source: Path  # the working copy the runbooks sync (tests edit it)
    project: Path
    cli: Cli
    vars: dict[str, Any]
    secrets: dict[str, str]
    sandbox: Sandbox

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.vars['api_port']}"

    def run(self, runbook: str) -> Result:
        return self.cli.run("run", runbook, "--host", "sandbox", "--yes")

    def compose(self, args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        files = " ".join(f"-f {shlex.quote(f)}" for f in self.vars["compose_files"])
        return self.sandbox.ssh(f"cd {shlex.quote(self.vars['app_dir'])} && docker compose "
                                f"{files} -p {shlex.quote(self.vars['compose_project'])} "
                                f"{args}", check=check, timeout=300)

    def remove(self) -> None:
        """Everything this example's deployment left on the sandbox (its proxy and the
        zero-downtime slots included)."""
        v = self.vars
        proxy_dir = v["app_dir"] + ".deployer-proxy"
        paths = " ".join(shlex.quote(p) for p in (v["app_dir"], v["app_dir"] +
                                                   ".deployer-prev", v["backup_dir"],
                                                   proxy_dir))
        pid = shlex.quote(proxy_dir + "/caddy.pid")
        script = [f"if [ -f {pid} ]; then kill $(cat {pid}) 2>/dev/null || true; fi"]
        for project in (v["compose_project"], *(f"{v['compose_project']}-{s}"
                                                for s in ("blue", "green"))):
            label = shlex.quote(f"label=com.docker.compose.project={project}")
            script += [f"docker ps -aq --filter {label} | xargs -r docker rm -f >/dev/null",
                       f"docker volume ls -q --filter {label} | xargs -r docker volume rm "
                       ">/dev/null"]
        script += [f"docker image rm -f {shlex.quote(v['api_image'])} "
                   f"{shlex.quote(backup_tag(v['api_image']))} >/dev/null 2>&1 || true",
                   f"rm -rf {paths}"]
        self.sandbox.ssh("\n".join(script) + "\n", timeout=300)

    def proxy_vars(self) -> list[str]:
        """`--var`s putting this example behind Caddy (docs/zero-downtime.md): its own
        proxy and admin ports next to its api port, the env name its app reads its port
        from, and its health route."""
        base = int(self.vars["api_port"])
        values = {"proxy": "caddy", "proxy_bind": "127.0.0.1", "proxy_port": base + 10,
                  "proxy_admin": f"127.0.0.1:{base + 11}",
                  "slot_port_env": SLOT_PORT_ENV[self.name], "health_path": HEALTH[self.name]}
        return [arg for k, val in values.items() for arg in ("--var", f"{k}={val}")]

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{int(self.vars['api_port']) + 10}"


def make_example(name: str, sandbox: Sandbox, tmp: Path, exe: str) -> Example:
    source = tmp / "src" / name
    shutil.copytree(ROOT / "examples" / name, source,
                    ignore=shutil.ignore_patterns("__pycache__", ".ruff_cache", ".env",
                                                  "staticfiles"))
    project = tmp / "project"
    project.mkdir()  # no runbooks/ or templates/: the wheel's own serve
    r = subprocess.run([exe, "-C", str(project), "init", str(source)], capture_output=True,
                       text=True, timeout=60, cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr
    generated = yaml.safe_load((project / "inventory.yml").read_text())
    gvars = generated["hosts"]["vps"]["vars"]
    sv = sandbox.vars
    suffix = sv["api_image"].rsplit(":", 1)[1]  # sandbox-<id>: this checkout's
    api_off, pg_off = PORTS[name]
    overrides = {
        "app_source": str(source),
        "app_dir": f"{sv['app_dir']}-{name}",
        "backup_dir": f"{sv['backup_dir']}-{name}",
        "compose_project": f"{sv['compose_project']}-{name}",
        "api_image": f"deployer-example-{name}:{suffix}",
        "base_image": sv["base_image"],
        "postgres_image": sv["postgres_image"],
        "api_port": int(sv["api_port"]) + api_off,
        "pg_port": int(sv["api_port"]) + pg_off,
    }
    host = {k: sandbox.host[k] for k in ("host", "port", "user", "identity_file",
                                         "known_hosts", "connect_timeout")
            if k in sandbox.host}
    if name == "django":
        # The split role model: migrations as the owner role, the app with data only.
        overrides |= {"db_roles": "split", "db_owner_role": "site_migrator",
                      "app_secrets": [*gvars["app_secrets"], "db_owner_password"],
                      "migrate_env": {"DB_USER": "{{ db_owner_role }}",
                                      "DB_PASSWORD": "{{ secrets.db_owner_password }}"}}
    host["vars"] = gvars | overrides
    inventory = {"default_host": "sandbox", "hosts": {"sandbox": host}}
    (project / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    names = ["postgres_password", *host["vars"]["app_secrets"]]
    values = {n: random_secrets.token_urlsafe(24) for n in names}
    secrets_file = project / "secrets.env"
    secrets_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    secrets_file.chmod(0o600)
    box = Sandbox(inventory=project / "inventory.yml", secrets_file=secrets_file,
                  host=host, secrets=values)
    cli = Cli(project=project, sandbox=box, executable=exe)
    return Example(name, source, project, cli, host["vars"], values, sandbox)


@pytest.fixture(scope="module", params=["app", "django", "fastapi-form"])
def example(request: pytest.FixtureRequest, sandbox: Sandbox,
            tmp_path_factory: pytest.TempPathFactory, wheel_deployer: str):
    ex = make_example(request.param, sandbox, tmp_path_factory.mktemp(request.param),
                      wheel_deployer)
    ex.remove()
    yield ex
    ex.remove()


# ------------------------------------------------------------------ what each app shows

def version_and_schema(ex: Example, url: str | None = None) -> tuple[str, str | None]:
    """The running code's version and its newest applied migration (at ``url``: the
    api, or the proxy in front of it)."""
    url = url or ex.url
    if ex.name == "app":
        status, body, _ = request(url + "/api/health")
        assert status == 200, body
        data = json.loads(body)
        return data["version"], data["revision"]
    if ex.name == "django":
        status, body, _ = request(url + "/healthz/")
        assert status == 200, body
        data = yaml.safe_load(body)
        return data["version"], data["migration"]
    status, body, _ = request(url + "/api/v1/utils/version/")
    assert status == 200, body
    data = yaml.safe_load(body)
    return data["version"], data["revision"]


def assert_logins(ex: Example) -> None:
    """The wrong password refused, the admin's accepted, as each app answers them."""
    if ex.name == "app":
        url = ex.url + "/api/v1/auth/login"
        status, body, _ = request(url, "POST", json_body={"email": ex.vars["admin_email"],
                                                          "password": "wrong-one"})
        assert status == 401, body
        status, body, _ = request(url, "POST", json_body={
            "email": ex.vars["admin_email"], "password": ex.secrets["admin_password"]})
        assert status == 200 and '"token_type":"bearer"' in body, body
        return
    if ex.name == "django":
        token = "e2e" + "0" * 29
        form = {"csrfmiddlewaretoken": token, "username": ex.vars["admin_email"],
                "next": "/admin/"}
        hdr = {"Cookie": f"csrftoken={token}"}
        url = ex.url + "/admin/login/?next=/admin/"
        status, body, _ = request(url, "POST", form | {"password": "wrong-one"}, hdr)
        assert status == 200 and "Please enter the correct" in body, (status, body[:300])
        status, body, headers = request(url, "POST",
                                        form | {"password": ex.secrets["admin_password"]}, hdr)
        assert status == 302 and headers.get("Location") == "/admin/", (status, headers)
        return
    url = ex.url + "/api/v1/login/access-token"
    status, body, _ = request(url, "POST", {"username": ex.vars["admin_email"],
                                            "password": "wrong-one"})
    assert status == 400, body
    status, body, _ = request(url, "POST", {"username": ex.vars["admin_email"],
                                            "password": ex.secrets["admin_password"]})
    assert status == 200 and '"token_type":"bearer"' in body, body
    status, body, _ = request(ex.url + "/api/v1/utils/health-check/")
    assert (status, body) == (200, "true")


def assert_split_roles(ex: Example) -> None:
    """The app's role reads and writes the tables the owner's migrations made, and
    changes no schema; the owner role owns them."""
    def psql(role: str, sql: str) -> subprocess.CompletedProcess[str]:
        return ex.compose(f"exec -T {ex.vars['db_service']} psql -X -At -U {role} -d "
                          f"{shlex.quote(ex.vars['db_name'])} -c {shlex.quote(sql)}",
                          check=False)
    app, owner = ex.vars["db_app_role"], ex.vars["db_owner_role"]
    owned = psql("postgres", "SELECT DISTINCT tableowner FROM pg_tables "
                 "WHERE schemaname = 'public'")
    assert owned.stdout.split() == [owner], owned.stdout + owned.stderr
    wrote = psql(app, "UPDATE notes_note SET title = title")
    assert wrote.returncode == 0, wrote.stdout + wrote.stderr
    refused = psql(app, "CREATE TABLE e2e_sneaky (x int)")
    assert refused.returncode != 0 and "permission denied" in refused.stderr, refused


def set_version(ex: Example, version: str) -> None:
    init = ex.source / ("mysite" if ex.name == "django" else "app") / "__init__.py"
    init.write_text(re.sub(r'__version__ = ".*"', f'__version__ = "{version}"',
                           init.read_text()))


def add_broken_migration(ex: Example) -> None:
    """A migration that changes the schema, then fails: it must leave nothing behind."""
    if ex.name == "app":
        (ex.source / "alembic" / "versions" / "0003_broken.py").write_text(
            '"""broken on purpose"""\n\nfrom alembic import op\n\n'
            'revision = "0003"\ndown_revision = "0002"\n'
            "branch_labels = None\ndepends_on = None\n\n\n"
            "def upgrade() -> None:\n"
            '    op.execute("ALTER TABLE users ADD COLUMN e2e text")\n'
            '    op.execute("SELECT 1/0")\n\n\n'
            "def downgrade() -> None:\n"
            '    op.execute("ALTER TABLE users DROP COLUMN e2e")\n')
        return
    if ex.name == "django":
        (ex.source / "notes" / "migrations" / "0002_broken.py").write_text(
            "from django.db import migrations\n\n\n"
            "class Migration(migrations.Migration):\n"
            "    dependencies = [(\"notes\", \"0001_initial\")]\n"
            "    operations = [\n"
            "        migrations.RunSQL(\"ALTER TABLE notes_note ADD COLUMN e2e text\",\n"
            "                          migrations.RunSQL.noop),\n"
            "        migrations.RunSQL(\"SELECT 1/0\", migrations.RunSQL.noop),\n"
            "    ]\n")
        return
    (ex.source / "app" / "alembic" / "versions" / "f00dbad00002_broken.py").write_text(
        '"""broken on purpose"""\n\nfrom alembic import op\n\n'
        'revision = "f00dbad00002"\ndown_revision = "e2412789c190"\n'
        "branch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade() -> None:\n"
        '    op.execute("ALTER TABLE item ADD COLUMN e2e text")\n'
        '    op.execute("SELECT 1/0")\n\n\n'
        "def downgrade() -> None:\n"
        '    op.execute("ALTER TABLE item DROP COLUMN e2e")\n')


def remove_broken_migration(ex: Example) -> None:
    (ex.source / {"app": "alembic/versions/0003_broken.py",
                  "django": "notes/migrations/0002_broken.py"}.get(
        ex.name, "app/alembic/versions/f00dbad00002_broken.py")).unlink()


def wait_serving(ex: Example, version: str) -> None:
    path = {"app": "/api/health", "django": "/healthz/"}.get(ex.name, "/api/v1/utils/version/")
    wait_for(lambda: request(ex.url + path)[0] == 200
             and version_and_schema(ex)[0] == version, 90,
             f"{ex.name} to serve version {version}", interval=1)


# ------------------------------------------------------------------ the three deploys

def test_first_time_restart_and_rollback(example: Example) -> None:
    ex = example
    first_schema = {"app": "0002", "django": "0001_initial",
                    "fastapi-form": "e2412789c190"}[ex.name]

    listed = ex.cli.run("runbooks")
    assert listed.returncode == 0, listed.describe()
    assert re.search(r"first-time\s.*packaged", listed.stdout), listed.stdout
    assert "/venv/" in listed.stdout.splitlines()[0], listed.stdout  # the wheel's copy
    planned = ex.cli.run("plan", "first-time", "--host", "sandbox")
    assert planned.returncode == 0, planned.describe()
    result = ex.run("first-time")
    assert result.returncode == 0, result.describe()
    wait_serving(ex, "1.0.0")
    assert version_and_schema(ex) == ("1.0.0", first_schema)
    assert_logins(ex)
    if ex.vars.get("db_roles") == "split":
        assert_split_roles(ex)

    set_version(ex, "1.0.1")
    result = ex.run("restart")
    assert result.returncode == 0, result.describe()
    wait_serving(ex, "1.0.1")
    assert version_and_schema(ex) == ("1.0.1", first_schema)
    assert_logins(ex)

    add_broken_migration(ex)
    set_version(ex, "1.0.2")
    result = ex.run("restart")
    assert result.returncode == 1, result.describe()  # failed, rolled back completely
    assert "division by zero" in result.output, result.describe()
    wait_serving(ex, "1.0.1")
    assert version_and_schema(ex) == ("1.0.1", first_schema)
    assert_logins(ex)
    table = {"app": "users", "django": "notes_note"}.get(ex.name, "item")
    user = "postgres"
    cols = ex.compose(f"exec -T {ex.vars['db_service']} psql -X -At -U {user} -d "
                      f"{shlex.quote(ex.vars['db_name'])} -c \"SELECT column_name FROM "
                      f"information_schema.columns WHERE table_name = '{table}'\"")
    assert "e2e" not in cols.stdout.split(), cols.stdout

    # Behind Caddy, through variables only: the same app moves to a blue/green slot
    # with no change to it, its new version served through the proxy.
    remove_broken_migration(ex)
    set_version(ex, "1.1.0")
    result = ex.cli.run("run", "restart", "--host", "sandbox", "--yes", *ex.proxy_vars())
    assert result.returncode == 0, result.describe()
    wait_for(lambda: request(ex.proxy_url + HEALTH[ex.name])[0] == 200
             and version_and_schema(ex, ex.proxy_url)[0] == "1.1.0", 90,
             f"{ex.name} to serve 1.1.0 through the proxy", interval=1)
    assert version_and_schema(ex, ex.proxy_url) == ("1.1.0", first_schema)
    shown = ex.cli.run("status", "--host", "sandbox", "--format", "json", *ex.proxy_vars())
    assert shown.returncode == 0, shown.describe()
    host = json.loads(shown.stdout)["hosts"][0]
    assert host["live_slot"] == "blue" and host["verdict"] == "healthy", host
    for value in ex.secrets.values():
        assert all(value not in out for out in ex.cli.outputs)
