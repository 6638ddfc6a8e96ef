"""Turn a ``Detection`` into the text of the files ``deployer init`` writes.

``inventory_text`` is the inventory (YAML written by hand, so it can carry comments and
``TODO`` markers; every value goes through ``yaml.safe_dump``, so text read from the app
can never change the document's structure). ``secrets_template`` is a dotenv file with
every secret's name and an empty value. ``GITIGNORE_LINES`` are the entries ``init``
makes sure ``.gitignore`` has. Nothing here touches the disk.

The variable names are the shipped runbooks' contract (docs/deploying.md).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any

import yaml

from deployer.init.detect import Detection, EnvVar

GITIGNORE_LINES = ("secrets.env", ".deployer/")
SECRETS_FILE = "secrets.env"
SECRETS_TEMPLATE = "secrets.env.example"

# Secrets every inventory uses, whatever the app calls them.
ADMIN_SECRET = "admin_password"
DB_SUPERUSER_SECRET = "postgres_password"
DB_APP_SECRET = "db_app_password"


@dataclass(frozen=True)
class Secret:
    name: str
    purpose: str


def _y(value: Any) -> str:
    """``value`` as one YAML flow value (quoted when needed)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False,
                          allow_unicode=True).strip()
    return text[:-4].rstrip() if text.endswith("\n...") or text.endswith(" ...") else text


def _j(expr: str) -> str:
    return "{{ " + expr + " }}"


def _secret_name(env_name: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", env_name.lower()).strip("_")


def secrets_of(det: Detection) -> list[Secret]:
    """The secrets the inventory refers to, in a stable order."""
    found: dict[str, Secret] = {}
    for e in det.env:
        name = _env_secret(det, e)
        if name and name not in found:
            found[name] = Secret(name, f"{e.name} in the app's environment")
    if det.db_service and roles_model(det) == "owner" and DB_APP_SECRET not in found:
        found[DB_APP_SECRET] = Secret(DB_APP_SECRET, "the app role's password (db_app_role)")
    if det.db_service and DB_SUPERUSER_SECRET not in found:
        found[DB_SUPERUSER_SECRET] = Secret(DB_SUPERUSER_SECRET,
                                            "the PostgreSQL superuser's password")
    if det.login is not None and ADMIN_SECRET not in found:
        found[ADMIN_SECRET] = Secret(ADMIN_SECRET, "the seeded admin's password (the login "
                                     "check uses it)")
    return list(found.values())


def _env_secret(det: Detection, e: EnvVar) -> str | None:
    if e.name == det.admin_password_var:
        return ADMIN_SECRET
    if e.name == "POSTGRES_PASSWORD" and roles_model(det) == "none":
        return DB_SUPERUSER_SECRET
    if e.name == "POSTGRES_PASSWORD":
        return DB_SUPERUSER_SECRET
    if e.name == _db_password_var(det):
        return DB_APP_SECRET
    if e.name == "DATABASE_URL":
        return None  # {{ db_url }}: built from db_app_password (or the superuser's)
    return _secret_name(e.name) if e.secret else None


def _db_user_var(det: Detection) -> str | None:
    names = [e.name for e in det.env]
    for cand in ("DB_USER", "DATABASE_USER", "POSTGRES_APP_USER", "PGUSER"):
        if cand in names:
            return cand
    return None


def _db_password_var(det: Detection) -> str | None:
    names = [e.name for e in det.env]
    for cand in ("DB_PASSWORD", "DATABASE_PASSWORD", "POSTGRES_APP_PASSWORD", "PGPASSWORD"):
        if cand in names:
            return cand
    return None


def roles_model(det: Detection) -> str:
    """`owner` when the app connects as a role of its own (DB_USER...), `none` when it
    connects as the superuser the postgres image creates (POSTGRES_USER only)."""
    names = [e.name for e in det.env]
    if _db_user_var(det) or "DATABASE_URL" in names:
        return "owner"
    return "none"


def env_mapping(det: Detection) -> dict[str, tuple[str, str]]:
    """Env name -> (value as written in the inventory, comment)."""
    out: dict[str, tuple[str, str]] = {}
    fixed = {
        det.api_image_var: _j("api_image"),
        det.db_image_var: _j("postgres_image"),
        det.base_image_arg: _j("base_image"),
        det.api_port_var: _j("api_port"),
        det.db_port_var: _j("pg_port"),
        det.admin_user_var: _j("admin_email"),
        _db_user_var(det): _j("db_app_role"),
        "POSTGRES_DB": _j("db_name"),
        "DB_NAME": _j("db_name"),
        "POSTGRES_USER": _j("db_superuser"),
    }
    for host_var in ("POSTGRES_SERVER", "POSTGRES_HOST", "DB_HOST", "DATABASE_HOST"):
        fixed[host_var] = _j("db_host")
    if det.api_port_var and det.api_port_var.endswith("PORT"):
        # WEB_PORT -> WEB_HOST: the address the app binds, next to its port
        fixed[det.api_port_var[:-4] + "HOST"] = _j("api_host")
    for e in det.env:
        if e.name in fixed and e.name:
            out[e.name] = (fixed[e.name], "")
            continue
        secret = _env_secret(det, e)
        if secret:
            out[e.name] = (_j(f"secrets.{secret}"), "secret")
        elif e.name == "DATABASE_URL":
            out[e.name] = (_j("db_url"), "the role and password of db_roles")
        elif e.default is not None:
            out[e.name] = (e.default, "")
        else:
            out[e.name] = ("", "TODO: required by the compose file, no default")
    return out


def checks(det: Detection) -> list[tuple[dict[str, Any], str]]:
    """The verification checks (data for the shipped verify part) and a comment each."""
    result: list[tuple[dict[str, Any], str]] = []
    if det.health is not None:
        check: dict[str, Any] = {"name": "health", "method": "GET", "path": det.health.path,
                                 "expect_status": [200]}
        note = f"from {det.health.file}:{det.health.line}"
        if det.health.body_hint == "true":
            check["expect_json"] = True
        result.append((check | {"retries": 30}, note))
    login = det.login
    if login is None:
        return result
    note = f"from {login.file}:{login.line}"
    if login.body_hint == "django-admin":
        # Django's CSRF check compares the csrftoken cookie with the form field; a client
        # may choose the value (32 characters), so one request carries both.
        # Derived from the app's name, not random: a second `init` writes the same file.
        token = hashlib.sha256(f"deployer-init-csrf:{det.app_name}".encode()).hexdigest()[:32]
        common = {"method": "POST", "path": login.path + "?next=/admin/",
                  "headers": {"Cookie": f"csrftoken={token}"}}
        form = {"csrfmiddlewaretoken": token, "username": _j("admin_email"),
                "next": "/admin/"}
        result.append(({"name": "login_rejected", **common,
                        "form": form | {"password": "not-the-password"},
                        "expect_status": [200],
                        "body_contains": "Please enter the correct"},
                       note + "; the admin answers the form again, 200"))
        result.append(({"name": "login_admin", **common,
                        "form": form | {"password": _j("secrets.admin_password")},
                        "expect_status": [302]}, "302 to /admin/ once logged in"))
    elif login.body_hint == "form":
        form = {"username": _j("admin_email")}
        result.append(({"name": "login_rejected", "method": "POST", "path": login.path,
                        "form": form | {"password": "not-the-password"},
                        "expect_status": [400]},
                       note + "; OAuth2 password form: FastAPI's OAuth2 examples answer "
                       "400 to a wrong password"))
        result.append(({"name": "login_admin", "method": "POST", "path": login.path,
                        "form": form | {"password": _j("secrets.admin_password")},
                        "expect_status": [200], "expect_json": {"token_type": "bearer"}},
                       ""))
    else:
        body = {"email": _j("admin_email")}
        result.append(({"name": "login_rejected", "method": "POST", "path": login.path,
                        "json": body | {"password": "not-the-password"},
                        "expect_status": [401]},
                       note + "; TODO: check the body fields and the status"))
        result.append(({"name": "login_admin", "method": "POST", "path": login.path,
                        "json": body | {"password": _j("secrets.admin_password")},
                        "expect_status": [200]}, ""))
    return result


def _admin_user_default(det: Detection) -> str:
    if det.admin_user_var:
        e = det.env_var(det.admin_user_var)
        if e and e.default:
            return e.default
    return "admin" if det.migrate_tool == "django" else "admin@example.com"


def inventory_text(det: Detection, app_source: str) -> str:
    """The inventory for ``det``; ``app_source`` is the app directory as the inventory
    names it (relative to the project directory)."""
    name = det.app_name
    lines: list[str] = [
        f"# Written by `deployer init` from {app_source}. Review the lines marked below, run",
        "# `deployer validate` and `deployer plan first-time`. Variables: docs/deploying.md.",
        "default_host: vps",
        "",
        "hosts:",
        "  vps:",
        "    host: 192.0.2.10          # TODO: your server's address (this is a "
        "documentation address)",
        "    user: deploy              # TODO: an SSH user that may run docker",
        "    port: 22",
        "    # known_hosts: known_hosts   # unknown host keys are refused (docs/ssh.md)",
        "    vars:",
    ]

    def var(key: str, value: Any, comment: str = "") -> None:
        text = f"      {key}: {_y(value)}"
        lines.append(f"{text}  # {comment}" if comment else text)

    def section(title: str) -> None:
        lines.append(f"      # --- {title}")

    section("the app and where it goes")
    var("app_name", name)
    var("app_source", app_source)
    var("app_dir", f"/srv/{name}", "TODO: the directory on the server")
    var("compose_project", name)
    var("compose_files", det.compose_files)
    var("backup_dir", f"/srv/backups/{name}")
    section("services (from the compose file)")
    if det.api_service:
        var("api_service", det.api_service)
    else:
        var("api_service", "", "TODO: the service that serves the app")
    if det.db_service:
        var("db_service", det.db_service)
    else:
        var("db_service", "", "TODO: the PostgreSQL service")
    if det.tasks_service:
        var("tasks_service", det.tasks_service, "one-off commands run here")
    else:
        var("tasks_service", "", "none found: one-off commands use `run --rm --no-deps "
            f"{det.api_service or 'api'}` (Compose v2; v1 needs a tasks service)")
    if det.prestart_service:
        var("prestart_service", det.prestart_service, "runs to completion before the api "
            "starts")
    if det.env_file_services:
        var("env_file_services", det.env_file_services, "read the .env with `env_file:`")
    section("images")
    var("api_image", "", "read from `docker compose config` on the host"
        + (f" (compose default: {det.api_image})" if det.api_image else ""))
    if det.app_imports:
        var("app_imports", det.app_imports, "must import inside the new image")
    else:
        var("app_imports", "", "no Python entry point found: the import check is skipped")
    var("postgres_image", det.db_image or "postgres:16")
    var("base_image", "python:3.11-slim-bookworm" if det.base_image_arg else "",
        f"the {det.base_image_arg} build argument" if det.base_image_arg else "no base image "
        "build argument found")
    section("where the app listens (host's loopback, behind your proxy)")
    var("api_host", "127.0.0.1")
    port = det.api_port or 8000
    var("api_port", port, "" if det.api_port else "TODO: the port the app listens on")
    var("api_url", "http://" + _j("api_host") + ":" + _j("api_port"))
    var("required_ports", [_j("api_port"), _j("pg_port")])
    section("PostgreSQL")
    var("pg_port", det.db_port)
    var("db_name", det.db_name or name, "" if det.db_name else "TODO: the database name")
    var("db_superuser", det.db_superuser)
    model = roles_model(det)
    var("db_roles", model, "the app connects as its own role" if model == "owner" else
        "the app connects as the superuser the postgres image creates")
    if model == "owner":
        user_var = _db_user_var(det)
        found = det.env_var(user_var) if user_var else None
        default = found.default if found is not None else None
        var("db_app_role", default or f"{name.replace('-', '_')}_owner")
        var("db_ui_role", "", "no read-only role")
    var("db_extensions", det.db_extensions, "created by the superuser before the "
        "migrations" if det.db_extensions else "")
    section("migrations and seed")
    var("migrate_tool", det.migrate_tool, "" if det.migrate_tool != "none" else
        "TODO: alembic, django, command or none")
    if det.seed_command:
        var("seed_command", det.seed_command)
        var("seed_mode", det.seed_mode or "create-only", "a guess from the seed's source: "
            "check it (docs/deploying.md, rotating the admin password)")
        if det.seed_update_command:
            var("seed_update_command", det.seed_update_command, "restart: sets the admin's "
                "password from the current secret")
        if det.seed_command != "python -m app.seed_admin":
            var("admin_exists_sql", "", "no --resume check of the seed (it runs again)")
    else:
        var("seed_mode", "none", "TODO: no seed command found; the login check needs an "
            "admin (seed_command)")
    var("admin_email", _admin_user_default(det), "the seeded admin (its login name) the "
        "checks use")
    section("secrets this deployment needs besides postgres_password (values: secrets.env)")
    var("app_secrets", [x.name for x in secrets_of(det) if x.name != DB_SUPERUSER_SECRET])
    section("environment of the stack (.env next to the compose files)")
    env = {"COMPOSE_PROJECT_NAME": (_j("compose_project"), "")} | env_mapping(det)
    if env:
        lines.append("      env:")
        for key, (value, comment) in env.items():
            text = f"        {key}: {_y(value)}"
            lines.append(f"{text}  # {comment}" if comment else text)
    else:
        var("env", {})
    section("verification (each check: a request from the server, retried)")
    found_checks = checks(det)
    if found_checks:
        lines.append("      checks:")
        for check, comment in found_checks:
            if comment:
                lines.append(f"        # {comment}")
            first = True
            for key, value in check.items():
                lead = "        - " if first else "          "
                lines.append(f"{lead}{key}: {_y(value)}")
                first = False
    else:
        var("checks", [], "TODO: no health or login route found")
    if det.todos:
        lines.append("")
        lines.append("# TODO (deployer init could not tell):")
        lines.extend(f"#   - {t}" for t in det.todos)
    lines.append("")
    lines.append("# Secrets (values never go in this file): put them in secrets.env "
                 f"(template: {SECRETS_TEMPLATE})")
    lines.append("# and pass --secrets-file secrets.env, or set DEPLOYER_SECRET_<NAME>, or "
                 "add a `secrets:` entry with a command, e.g.:")
    lines.append("# secrets:")
    for s in secrets_of(det):
        lines.append(f"#   {s.name}: {{command: pass show {name}/{s.name}}}   # {s.purpose}")
    return "\n".join(lines) + "\n"


def secrets_template(det: Detection) -> str:
    lines = ["# Secrets of the deployment (dotenv). Copy to secrets.env (never commit it),",
             "# fill in every value, and pass --secrets-file secrets.env. Generate values",
             "# with e.g. `openssl rand -base64 24 | tr '+/' '-_'`.", ""]
    for s in secrets_of(det):
        lines.append(f"# {s.purpose}")
        lines.append(f"{s.name}=")
    return "\n".join(lines) + "\n"


def relative_source(app_dir: str, project_dir: str) -> str:
    rel = os.path.relpath(os.path.abspath(app_dir), os.path.abspath(project_dir))
    return "." if rel == "." else rel
