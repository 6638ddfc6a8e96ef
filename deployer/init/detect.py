"""What ``deployer init`` can tell about an app from its files: one ``Detection``.

Pure: reads files under the app directory (compose files, Dockerfile, marker files,
sources) and returns data; nothing is imported, executed or written. Every guess that
could be wrong is recorded in ``todos`` with the reason, so the inventory can mark it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from deployer.errors import InputError, Problem
from deployer.init.compose import ComposeProject, Service, find_compose_files, load_compose
from deployer.init.source import (
    Dockerfile,
    Route,
    find_routes,
    is_health,
    is_login,
    parse_dockerfile,
    source_files,
)

_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|_KEY$|^KEY$|TOKEN|PRIVATE|_PW$|DSN$|"
                          r"DATABASE_URL$)", re.I)
# Settings about secrets that are not secret themselves (ACCESS_TOKEN_EXPIRE_MINUTES).
_NOT_SECRET = re.compile(r"(EXPIRE|TTL|LIFETIME|MINUTES|SECONDS|HOURS|LENGTH|ALGORITHM|"
                         r"_FILE$|_PATH$|_URL_PREFIX$)", re.I)
_PORT_NAME = re.compile(r"(^|_)PORT$", re.I)
_DB_IMAGES = ("postgres", "postgis", "timescale")
_ENV_EXAMPLES = (".env.example", ".env.sample", ".env.template", ".env.dist", "env.example")


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str | None
    required: bool
    secret: bool


@dataclass
class Detection:
    app_dir: str
    app_name: str
    compose_files: list[str]
    api_service: str | None = None
    db_service: str | None = None
    tasks_service: str | None = None
    prestart_service: str | None = None
    api_image_var: str | None = None  # the ${VAR} in the api's `image:`
    api_image: str | None = None  # its default, or the literal image
    db_image_var: str | None = None
    db_image: str | None = None
    base_image_arg: str | None = None  # build arg naming the base image
    api_port_var: str | None = None
    api_port: int | None = None
    db_port_var: str | None = None
    db_port: int = 5432
    db_name: str | None = None
    db_superuser: str = "postgres"
    migrate_tool: str = "none"  # alembic | django | command | none
    workdir: str | None = None
    health: Route | None = None
    login: Route | None = None
    admin_user_var: str | None = None
    admin_password_var: str | None = None
    seed_command: str | None = None
    seed_mode: str | None = None  # create-only | create-or-update
    seed_update_command: str | None = None  # create-only: sets the admin's password
    env: list[EnvVar] = field(default_factory=list)
    env_file_services: list[str] = field(default_factory=list)
    app_imports: str = ""  # modules the image must import (from its start command)
    db_extensions: list[str] = field(default_factory=list)
    todos: list[str] = field(default_factory=list)

    def env_var(self, name: str) -> EnvVar | None:
        return next((e for e in self.env if e.name == name), None)


def _image_ref(image: str | None) -> tuple[str | None, str | None]:
    """(${VAR} name, default or literal) of an `image:` value."""
    if not image:
        return None, None
    m = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}", image.strip())
    if m:
        return m.group(1), m.group(2) or None
    return None, image.strip()


def _ref_value(value: str) -> tuple[str | None, str | None]:
    """(${VAR} name, default) of a value that is one reference, else (None, value)."""
    m = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?]([^}]*))?\}", value.strip())
    if m:
        default = m.group(2)
        return m.group(1), None if default is None or value.count(":?") or "?" in \
            value.split(m.group(1), 1)[1][:2] else default
    return None, value


def _is_db(svc: Service) -> bool:
    image = (svc.image or "").lower()
    return any(d in image for d in _DB_IMAGES) or (svc.build is None and svc.name.lower() in (
        "db", "postgres", "postgresql", "database", "pg"))


def _one_off(svc: Service, project: ComposeProject) -> bool:
    """Run to completion, not served: a dependency with service_completed_successfully,
    or restart "no" with a command that migrates."""
    for other in project.services.values():
        if other.depends_on.get(svc.name) == "service_completed_successfully":
            return True
    cmd = str(svc.command or "")
    return str(svc.restart or "no") == "no" and bool(re.search(r"prestart|migrat|alembic",
                                                                cmd))


def _pick_api(project: ComposeProject, db: str | None) -> str | None:
    candidates = [s for s in project.services.values()
                  if s.name != db and not s.profiles and not _one_off(s, project)]
    built = [s for s in candidates if s.build is not None]
    pool = built or candidates
    for preferred in ("api", "web", "backend", "app", "server"):
        for s in pool:
            if s.name == preferred:
                return s.name
    with_health = [s for s in pool if s.healthcheck]
    return (with_health or pool)[0].name if pool else None


def _same_image(a: Service, b: Service) -> bool:
    return bool(a.image) and a.image == b.image


def _port_of(svc: Service, dockerfile: Dockerfile) -> tuple[str | None, int | None]:
    for name, value in svc.environment.items():
        if _PORT_NAME.search(name) and not name.upper().startswith(("PG", "POSTGRES", "DB_",
                                                                     "DATABASE", "REDIS")):
            var, default = _ref_value(value)
            if default and default.isdigit():
                return var, int(default)
            if var is None and value.isdigit():
                return None, int(value)
    for port in svc.ports:
        target = port.split(":")[-1].split("/")[0]
        if target.isdigit():
            return None, int(target)
    for name, value in dockerfile.env.items():
        if _PORT_NAME.search(name) and value.isdigit():
            return None, int(value)
    if dockerfile.expose:
        return None, dockerfile.expose[0]
    return None, None


def _env_example_names(app_dir: str) -> dict[str, str]:
    for name in _ENV_EXAMPLES:
        path = os.path.join(app_dir, name)
        if os.path.isfile(path):
            out: dict[str, str] = {}
            for line in open(path, encoding="utf-8", errors="replace"):
                m = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", line)
                if m:
                    out[m.group(1)] = m.group(2).strip().strip("'\"")
            return out
    return {}


def _seed(app_dir: str, migrate_tool: str) -> tuple[str | None, str | None]:
    """(command, mode) of an admin seed found in the source."""
    files = source_files(app_dir)
    if migrate_tool == "django":
        for rel in files:
            parts = rel.split(os.sep)
            if len(parts) >= 3 and parts[-3:-1] == ["management", "commands"] and \
                    "superuser" in parts[-1]:
                name = parts[-1][:-3]
                return f"python manage.py {name}", _seed_mode(app_dir, rel)
        return None, None
    for rel in files:
        base = os.path.basename(rel)[:-3]
        if base in ("initial_data", "seed", "seed_admin", "create_admin", "create_superuser",
                    "seed_db", "init_data") or base.startswith("seed_"):
            module = rel[:-3].replace(os.sep, ".")
            if module.startswith("src."):
                module = module[4:]
            return f"python -m {module}", _seed_mode(app_dir, rel)
    return None, None


def _django_password_command(app_dir: str) -> str | None:
    """A management command that sets the superuser's password (rotation)."""
    for rel in source_files(app_dir):
        parts = rel.split(os.sep)
        if len(parts) >= 3 and parts[-3:-1] == ["management", "commands"] and \
                "password" in parts[-1] and "superuser" in parts[-1]:
            return f"python manage.py {parts[-1][:-3]}"
    return None


def _seed_mode(app_dir: str, rel: str) -> str:
    text = open(os.path.join(app_dir, rel), encoding="utf-8", errors="replace").read()
    # A seed that updates an existing user reports it ("updated"); a create-only one
    # has no such outcome. A guess either way: the inventory says where it came from.
    return "create-or-update" if re.search(r"\bupdated\b", text) else "create-only"


def detect(app_dir: str) -> Detection:
    """Inspect ``app_dir``. Raises ``InputError`` when there is no compose file or one
    cannot be read as a compose file (file:line in the message)."""
    app_dir = os.path.abspath(app_dir)
    if not os.path.isdir(app_dir):
        raise InputError(Problem(f"{app_dir} is not a directory",
                                 hint="run `deployer init PATH` with the app's directory"))
    files = find_compose_files(app_dir)
    if not files:
        raise InputError(Problem(
            f"no compose file in {app_dir} (looked for compose.yaml, compose.yml, "
            "docker-compose.yaml, docker-compose.yml)",
            hint="run deployer init in the directory that holds the app's compose file"))
    project = load_compose(app_dir, files)
    det = Detection(app_dir=app_dir, app_name=_app_name(app_dir), compose_files=files)
    todo = det.todos.append

    dbs = [s for s in project.services.values() if _is_db(s)]
    if dbs:
        db = dbs[0]
        det.db_service = db.name
        det.db_image_var, det.db_image = _image_ref(db.image)
        for name, value in db.environment.items():
            var, default = _ref_value(value)
            if name == "PGPORT":
                det.db_port_var = var
                if default and default.isdigit():
                    det.db_port = int(default)
            elif name == "POSTGRES_DB":
                det.db_name = default or (None if var else value) or None
                if det.db_name is None and var:
                    det.db_name = _env_example_names(app_dir).get(var) or None
            elif name == "POSTGRES_USER":
                det.db_superuser = default or (value if var is None else None) or \
                    _env_example_names(app_dir).get(var or "", "") or "postgres"
        if det.db_name is None:
            todo("db_name: the database name could not be read from the db service "
                 "(POSTGRES_DB)")
    else:
        todo("db_service: no PostgreSQL service found in the compose file(s)")

    det.api_service = _pick_api(project, det.db_service)
    dockerfile = parse_dockerfile(os.path.join(app_dir, "Dockerfile"))
    det.workdir = dockerfile.workdir
    if det.api_service:
        api = project.services[det.api_service]
        det.api_image_var, det.api_image = _image_ref(api.image)
        if api.image is None:
            todo(f"api_image: service `{api.name}` has no `image:`; give it "
                 "`image: ${APP_IMAGE:-myapp:latest}` so a rollback can re-tag it")
        build_svc = api if api.build is not None else next(
            (s for s in project.services.values() if s.build is not None
             and _same_image(s, api)), None)
        if build_svc is not None:
            args = (build_svc.build or {}).get("args")
            # a mapping, or a list of NAME=value / NAME
            names = list(args) if isinstance(args, dict) else [
                str(a).split("=", 1)[0] for a in args] if isinstance(args, list) else []
            for arg in names:
                if "IMAGE" in str(arg).upper() or str(arg).upper().endswith("BASE"):
                    det.base_image_arg = str(arg)
        if build_svc is not None and build_svc is not api:
            todo(f"build: `{build_svc.name}` builds the image `{api.name}` runs; deployer "
                 f"builds api_service: move `build:` to `{api.name}`")
        elif build_svc is None:
            todo(f"build: no service builds the image of `{api.name}`")
        det.api_port_var, det.api_port = _port_of(api, dockerfile)
        if det.api_port is None:
            todo(f"api_port: the port `{api.name}` listens on could not be found")
        for svc in project.services.values():
            if svc.name == api.name or svc.name == det.db_service:
                continue
            if svc.profiles and _same_image(svc, api):
                det.tasks_service = det.tasks_service or svc.name
            elif _one_off(svc, project) and (_same_image(svc, api) or svc.build is not None):
                det.prestart_service = det.prestart_service or svc.name
        det.env_file_services = [s.name for s in project.services.values() if s.env_file]
    else:
        todo("api_service: no service that builds and serves the app was found")

    if os.path.isfile(os.path.join(app_dir, "manage.py")):
        det.migrate_tool = "django"
    elif os.path.isfile(os.path.join(app_dir, "alembic.ini")):
        det.migrate_tool = "alembic"
    else:
        todo("migrate_tool: neither alembic.ini nor manage.py found; set `command` and "
             "migrate_command, or leave `none`")

    routes = find_routes(app_dir)
    det.health = _best(routes, is_health, ("health", "healthz"))
    det.login = _best(routes, is_login, ("access-token", "login"))
    if det.health is None:
        todo("health check: no health route found in the source")
    elif not det.health.certain:
        todo(f"health check: the prefix of {det.health.path} "
             f"({det.health.file}:{det.health.line}) is not a literal; check the path")
    if det.login is None:
        todo("login check: no login route found in the source")
    elif not det.login.certain:
        todo(f"login check: the prefix of {det.login.path} "
             f"({det.login.file}:{det.login.line}) is not a literal; check the path")

    det.seed_command, det.seed_mode = _seed(app_dir, det.migrate_tool)
    if det.seed_mode == "create-only" and det.migrate_tool == "django":
        det.seed_update_command = _django_password_command(app_dir)
    det.db_extensions = _extensions(app_dir)
    api_cmd = project.services[det.api_service].command if det.api_service else None
    det.app_imports = _imports(str(api_cmd or dockerfile.cmd or ""))
    det.env = _env_vars(project, app_dir)
    names = [e.name for e in det.env]
    for user, password in (("DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD"),
                           ("FIRST_SUPERUSER", "FIRST_SUPERUSER_PASSWORD"),
                           ("ADMIN_EMAIL", "ADMIN_PASSWORD"),
                           ("ADMIN_USER", "ADMIN_PASSWORD"),
                           ("SUPERUSER_EMAIL", "SUPERUSER_PASSWORD")):
        if password in names:
            det.admin_password_var = password
            det.admin_user_var = user if user in names else None
            break
    if det.seed_command is None and det.login is not None:
        todo("seed: no admin seed command found; the login check needs an admin user")
    return det


_EXTENSION = re.compile(r"CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?[\"']?"
                        r"([A-Za-z0-9_-]+)", re.I)


def _extensions(app_dir: str) -> list[str]:
    """Extensions the migrations create: with `db_roles: owner` the superuser must."""
    found: list[str] = []
    for rel in source_files(app_dir):
        if "migrations" not in rel and "alembic" not in rel and "versions" not in rel:
            continue
        text = open(os.path.join(app_dir, rel), encoding="utf-8", errors="replace").read()
        found.extend(m.group(1) for m in _EXTENSION.finditer(text))
    return list(dict.fromkeys(found))


def _imports(command: str) -> str:
    """The module a uvicorn/gunicorn/`python -m` start command loads, or ""."""
    m = re.search(r"([A-Za-z_][A-Za-z0-9_.]*):[A-Za-z_][A-Za-z0-9_]*", command)
    if m and re.search(r"uvicorn|gunicorn|hypercorn|fastapi", command):
        return m.group(1)
    m = re.search(r"(?:gunicorn|uwsgi)[^\n]*?[\s\"',]([A-Za-z_][A-Za-z0-9_]*\.wsgi)\b", command)
    if m:
        return m.group(1)
    m = re.search(r"-m[\"',\s]+([A-Za-z_][A-Za-z0-9_.]*)", command)
    if m and m.group(1) not in ("uvicorn", "gunicorn", "flask", "http.server"):
        return m.group(1)
    return ""


def _best(routes: list[Route], pred: object, words: tuple[str, ...]) -> Route | None:
    found = [r for r in routes if pred(r)]  # type: ignore[operator]
    for word in words:
        for r in found:
            if word in r.path.lower():
                return r
    return found[0] if found else None


def _app_name(app_dir: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", os.path.basename(app_dir.rstrip(os.sep)).lower())
    return name.strip("-") or "app"


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name)) and not _NOT_SECRET.search(name)


def _env_vars(project: ComposeProject, app_dir: str) -> list[EnvVar]:
    """Every variable the stack reads: ${...} in the compose files, then the names of an
    .env example (the app's env_file variables). COMPOSE_* settings are left out."""
    out: dict[str, EnvVar] = {}
    for r in project.refs:
        out[r.name] = EnvVar(r.name, r.default, r.required, is_secret_name(r.name))
    for name, value in _env_example_names(app_dir).items():
        old = out.get(name)
        if old is not None and not old.default and value and not old.secret:
            # `${X:-}` in compose, a real example value in .env.example: the example's
            out[name] = EnvVar(name, value, old.required, old.secret)
        elif name not in out:
            out[name] = EnvVar(name, value or None, False, is_secret_name(name))
    return [e for e in out.values() if not e.name.startswith("COMPOSE_")]
