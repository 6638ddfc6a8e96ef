"""`deployer init` on the three example apps and on inputs it must refuse or not clobber.

Pure and fast: each test copies an example (or writes a small app) into a temporary
directory, runs `init` through the CLI entry point, and reads what it wrote. The
generated inventories must pass `deployer validate` against the shipped runbooks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from deployer.cli.main import main
from deployer.init.compose import substitute_defaults, var_refs
from deployer.init.detect import detect

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def copy_example(tmp_path, monkeypatch):
    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(EXAMPLES / name, dest,
                        ignore=shutil.ignore_patterns("__pycache__", ".ruff_cache", ".env"))
        monkeypatch.chdir(dest)
        return dest
    return copy


def inventory_vars(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    return data["hosts"]["vps"]["vars"]


def check(vars_: dict, name: str) -> dict:
    found = [c for c in vars_["checks"] if c["name"] == name]
    assert len(found) == 1, vars_["checks"]
    return found[0]


# ---------------------------------------------------------------- the three examples

def test_django_example(copy_example, capsys):
    app = copy_example("django")
    code, out, err = cli(capsys, "init")
    assert code == 0, err
    v = inventory_vars(app / "inventory.yml")
    assert (v["api_service"], v["db_service"]) == ("web", "db")
    assert v["tasks_service"] == ""
    assert v["migrate_tool"] == "django"
    assert v["api_port"] == 8100 and v["api_image"] == ""  # read from compose config
    assert v["db_name"] == "site" and v["db_roles"] == "owner"
    assert v["seed_command"] == "python manage.py ensure_superuser"
    assert v["seed_mode"] == "create-only"
    assert v["seed_update_command"] == "python manage.py set_superuser_password"
    assert v["app_source"] == "."
    assert v["app_imports"] == "mysite.wsgi"
    assert set(v["app_secrets"]) == {"django_secret_key", "admin_password", "db_app_password"}
    env = v["env"]
    assert env["DB_USER"] == "{{ db_app_role }}"
    assert env["DB_PASSWORD"] == "{{ secrets.db_app_password }}"
    assert env["DJANGO_SECRET_KEY"] == "{{ secrets.django_secret_key }}"
    assert env["DJANGO_SUPERUSER_PASSWORD"] == "{{ secrets.admin_password }}"
    assert env["WEB_PORT"] == "{{ api_port }}" and env["WEB_IMAGE"] == "{{ api_image }}"
    assert env["WEB_HOST"] == "{{ api_host }}" and env["DB_HOST"] == "{{ db_host }}"
    # compose says ${DJANGO_SUPERUSER_EMAIL:-}; .env.example has the real value
    assert env["DJANGO_SUPERUSER_EMAIL"] == "admin@example.com"
    assert check(v, "health")["path"] == "/healthz/"
    ok = check(v, "login_admin")
    token = ok["headers"]["Cookie"].split("=", 1)[1]
    assert len(token) == 32 and ok["form"]["csrfmiddlewaretoken"] == token
    assert ok["expect_status"] == [302] and ok["path"].startswith("/admin/login/")
    bad = check(v, "login_rejected")
    assert bad["expect_status"] == [200] and bad["form"]["password"] == "not-the-password"
    secrets_env = (app / "secrets.env.example").read_text()
    for name in ("postgres_password", "django_secret_key", "admin_password",
                 "db_app_password"):
        assert f"\n{name}=\n" in secrets_env
    assert "deployer validate" in out and "deployer plan first-time --host vps" in out


def test_fastapi_form_example(copy_example, capsys):
    app = copy_example("fastapi-form")
    code, _, err = cli(capsys, "init")
    assert code == 0, err
    v = inventory_vars(app / "inventory.yml")
    assert (v["api_service"], v["db_service"]) == ("backend", "db")
    assert v["prestart_service"] == "prestart"
    assert v["env_file_services"] == ["prestart", "backend"]
    assert v["migrate_tool"] == "alembic" and v["db_roles"] == "none"
    assert v["api_port"] == 8200 and v["api_image"] == ""
    assert v["app_imports"] == "app.main" and v["db_extensions"] == ["uuid-ossp"]
    assert v["seed_command"] == "python -m app.initial_data"
    assert v["seed_mode"] == "create-only" and "seed_update_command" not in v
    assert v["admin_email"] == "admin@example.com"
    health = check(v, "health")
    assert health["path"] == "/api/v1/utils/health-check/"
    assert health["expect_json"] is True
    bad = check(v, "login_rejected")
    assert bad["path"] == "/api/v1/login/access-token"
    assert bad["expect_status"] == [400] and "form" in bad and "json" not in bad
    ok = check(v, "login_admin")
    assert ok["form"]["password"] == "{{ secrets.admin_password }}"
    env = v["env"]
    assert env["SECRET_KEY"] == "{{ secrets.secret_key }}"
    assert env["FIRST_SUPERUSER_PASSWORD"] == "{{ secrets.admin_password }}"
    assert env["POSTGRES_PASSWORD"] == "{{ secrets.postgres_password }}"
    # a lifetime is not a secret, though its name says TOKEN
    assert env["ACCESS_TOKEN_EXPIRE_MINUTES"] == "60"
    assert env["POSTGRES_SERVER"] == "{{ db_host }}" and env["BACKEND_PORT"] == "{{ api_port }}"
    # values of .env.example that are secrets never reach the inventory
    assert "change-me" not in (app / "inventory.yml").read_text()


def test_fastapi_alembic_example(copy_example, capsys):
    app = copy_example("app")
    code, _, err = cli(capsys, "init")
    assert code == 0, err
    v = inventory_vars(app / "inventory.yml")
    assert (v["api_service"], v["db_service"], v["tasks_service"]) == ("api", "postgres",
                                                                       "tasks")
    assert v["compose_files"] == ["docker-compose.yml", "docker-compose.prod.yml"]
    assert v["migrate_tool"] == "alembic" and v["api_port"] == 8000
    assert v["seed_command"] == "python -m app.seed_admin"
    assert v["seed_mode"] == "create-or-update"
    assert check(v, "health")["path"] == "/api/health"
    assert check(v, "login_admin")["path"] == "/api/v1/auth/login"
    assert "json" in check(v, "login_rejected")
    assert v["env"]["JWT_SECRET"] == "{{ secrets.jwt_secret }}"
    assert v["env"]["DATABASE_URL"] == "{{ db_url }}" and v["db_roles"] == "owner"
    assert set(v["app_secrets"]) == {"jwt_secret", "admin_password", "db_app_password"}


@pytest.mark.parametrize("name", ["app", "django", "fastapi-form"])
def test_generated_inventory_validates(copy_example, capsys, name):
    copy_example(name)
    assert cli(capsys, "init")[0] == 0
    code, out, err = cli(capsys, "validate")
    assert code == 0, err
    assert "error:" not in out + err
    # db_roles: none leaves the roles step skipped; validate may warn about its secret
    assert "ok: runbooks and inventory are valid" in out or "0 errors" in out + err


@pytest.mark.parametrize("name", ["django", "fastapi-form"])
def test_no_todo_left_for_the_examples(copy_example, capsys, name):
    app = copy_example(name)
    cli(capsys, "init")
    text = (app / "inventory.yml").read_text()
    todos = [line for line in text.splitlines() if "TODO" in line]
    # only the three a person must always decide: host, user, directory on the server
    assert len(todos) == 3, todos


# ---------------------------------------------------------------- second run, gitignore

def test_second_run_keeps_edits_and_writes_new(copy_example, capsys):
    app = copy_example("django")
    cli(capsys, "init")
    first = (app / "inventory.yml").read_text()
    code, out, _ = cli(capsys, "init")
    assert code == 0 and "unchanged inventory.yml" in out
    assert not (app / "inventory.yml.new").exists()
    edited = first.replace("host: 192.0.2.10", "host: 198.51.100.7")
    (app / "inventory.yml").write_text(edited)
    code, out, _ = cli(capsys, "init")
    assert code == 0
    assert (app / "inventory.yml").read_text() == edited
    assert (app / "inventory.yml.new").read_text() == first
    assert "inventory.yml.new" in out


def test_gitignore_lines_appended_once(copy_example, capsys):
    app = copy_example("fastapi-form")
    (app / ".gitignore").write_text("node_modules/\n/secrets.env")
    cli(capsys, "init")
    cli(capsys, "init")
    lines = (app / ".gitignore").read_text().splitlines()
    assert lines[0] == "node_modules/"
    assert lines.count(".deployer/") == 1
    assert "secrets.env" not in lines  # "/secrets.env" already covers it


def test_runbooks_copied_and_not_clobbered(copy_example, capsys):
    app = copy_example("fastapi-form")
    code, out, err = cli(capsys, "init", "--runbooks")
    assert code == 0, err
    first_time = app / "runbooks" / "first-time.yml"
    assert first_time.read_text() == (REPO / "runbooks" / "first-time.yml").read_text()
    assert (app / "templates" / "env.j2").exists()
    first_time.write_text(first_time.read_text() + "# mine\n")
    cli(capsys, "init", "--runbooks")
    assert first_time.read_text().endswith("# mine\n")
    assert (app / "runbooks" / "first-time.yml.new").exists()
    code, out, _ = cli(capsys, "runbooks")
    assert "overrides packaged" in out or "project" in out


def test_init_path_writes_into_the_project_dir(tmp_path, monkeypatch, capsys):
    shutil.copytree(EXAMPLES / "django", tmp_path / "apps" / "site")
    (tmp_path / "deploy").mkdir()
    monkeypatch.chdir(tmp_path / "deploy")
    code, _, err = cli(capsys, "init", "../apps/site")
    assert code == 0, err
    v = inventory_vars(tmp_path / "deploy" / "inventory.yml")
    assert v["app_source"] == "../apps/site"
    assert not (tmp_path / "apps" / "site" / "inventory.yml").exists()


# ---------------------------------------------------------------- refusals, safety

def test_no_compose_file_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "init")
    assert code == 2
    assert "no compose file" in err and "Traceback" not in err
    assert not (tmp_path / "inventory.yml").exists()


def test_broken_compose_names_file_and_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "docker-compose.yml").write_text("services:\n  web:\n    image: [a\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "init")
    assert code == 2
    assert "docker-compose.yml:" in err and "Traceback" not in err


def test_compose_without_services(tmp_path, monkeypatch, capsys):
    (tmp_path / "compose.yaml").write_text("volumes:\n  x: {}\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "init")
    assert code == 2 and "compose.yaml" in err and "services" in err


def test_hostile_values_stay_data(tmp_path, monkeypatch, capsys):
    """Text from the app (env defaults) cannot change the inventory's structure, and
    nothing in the app is executed."""
    marker = tmp_path / "ran"
    (tmp_path / "compose.yaml").write_text(f"""
services:
  db:
    image: postgres:16
  api:
    build:
      context: .
      args: ["PY_IMAGE=python:3.12-slim"]
    image: myapp:1
    command: ["sh", "-c", "touch {marker}"]
    environment:
      GREETING: "${{GREETING:-a: b\\n  evil: [1]}}"
      API_PORT: "${{API_PORT:-9000}}"
""")
    (tmp_path / "setup.py").write_text(f"open({str(marker)!r}, 'w')\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "init")
    assert code == 0, err
    v = inventory_vars(tmp_path / "inventory.yml")
    assert v["env"]["GREETING"] == "a: b\n  evil: [1]"
    assert "evil" not in v and v["api_port"] == 9000
    assert "the PY_IMAGE build argument" in (tmp_path / "inventory.yml").read_text()
    assert not marker.exists()
    todos = (tmp_path / "inventory.yml").read_text()
    assert "migrate_tool: none" in todos and "TODO" in todos


def test_unknown_app_gets_todos_not_guesses(tmp_path, monkeypatch, capsys):
    (tmp_path / "compose.yaml").write_text("services:\n  worker:\n    image: busybox\n")
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(capsys, "init")
    assert code == 0
    text = (tmp_path / "inventory.yml").read_text()
    assert "no PostgreSQL service" in text and "no health route" in text
    assert "thing(s) to check" in out


# ---------------------------------------------------------------- the readers

def test_var_refs_and_defaults():
    refs = var_refs("${A:-x} ${B:?need B} $$NOT ${C-} $D ${E}", "svc")
    got = {r.name: (r.default, r.required) for r in refs}
    assert got == {"A": ("x", False), "B": (None, True), "C": ("", False),
                   "D": (None, False), "E": (None, False)}
    assert substitute_defaults("${A:-x}/$$B/${C}", {"C": "c"}) == "x/$B/c"


def test_router_prefixes_resolve(tmp_path):
    (tmp_path / "compose.yaml").write_text(
        "services:\n  db: {image: 'postgres:16'}\n  api: {build: ., image: 'a:1'}\n")
    pkg = tmp_path / "svc"
    pkg.mkdir()
    (pkg / "main.py").write_text(
        "app.include_router(api_router, prefix=\"/api/v2\")\n")
    (pkg / "auth.py").write_text(
        "router = APIRouter(prefix=\"/auth\")\n\n"
        "@router.post(\"/token\")\n"
        "def token(form: OAuth2PasswordRequestForm = Depends()):\n    ...\n\n"
        "@router.get(\"/healthz\")\ndef h():\n    return True\n")
    det = detect(str(tmp_path))
    assert det.login is not None and det.login.path == "/api/v2/auth/token"
    assert det.login.body_hint == "form" and (det.login.file, det.login.line) == (
        "svc/auth.py", 3)
    assert det.health is not None and det.health.path == "/api/v2/auth/healthz"
    assert det.health.body_hint == "true"


def test_prefix_from_a_setting_is_a_todo(tmp_path):
    (tmp_path / "compose.yaml").write_text(
        "services:\n  db: {image: 'postgres:16'}\n  api: {build: ., image: 'a:1'}\n")
    (tmp_path / "main.py").write_text(
        "app.include_router(api_router, prefix=settings.API_V1_STR)\n"
        "router = APIRouter()\n@router.get(\"/health\")\ndef h():\n    return True\n")
    det = detect(str(tmp_path))
    assert det.health is not None and not det.health.certain
    assert any("not a literal" in t for t in det.todos)


def test_build_on_another_service_is_a_todo(tmp_path):
    (tmp_path / "compose.yaml").write_text(
        "services:\n  db: {image: 'postgres:16'}\n"
        "  prestart: {build: ., image: 'a:1', command: [alembic, upgrade, head]}\n"
        "  api: {image: 'a:1', depends_on: {prestart: "
        "{condition: service_completed_successfully}}}\n")
    det = detect(str(tmp_path))
    assert det.api_service == "api" and det.prestart_service == "prestart"
    assert any("move `build:` to `api`" in t for t in det.todos), det.todos
