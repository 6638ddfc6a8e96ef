"""Read an app's source as text, never importing or running it: the Dockerfile, the
migration tool's marker files, and the health and login routes.

Routes are found by pattern: FastAPI/Starlette/Flask decorators (``@router.get("/x")``)
with their router's ``prefix=`` and literal ``include_router(..., prefix="/api")``
prefixes, and Django ``path("x/", ...)`` entries in ``urls.py``. A route whose full path
cannot be told for sure (a prefix from a setting) is reported with ``certain=False`` so
the inventory marks it TODO.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".ruff_cache",
              ".mypy_cache", ".pytest_cache", "build", "dist", "staticfiles", "site-packages",
              ".tox", "frontend"}
MAX_FILE_BYTES = 512 * 1024
MAX_FILES = 4000


@dataclass
class Dockerfile:
    path: str
    workdir: str | None = None
    expose: list[int] = field(default_factory=list)
    args: dict[str, str | None] = field(default_factory=dict)  # ARG name -> default
    env: dict[str, str] = field(default_factory=dict)
    cmd: str | None = None


@dataclass(frozen=True)
class Route:
    method: str  # GET, POST
    path: str
    file: str  # relative to the app directory
    line: int
    certain: bool  # the full path is known (no unresolved prefix)
    framework: str  # fastapi, flask, django
    body_hint: str = ""  # "true": the handler answers a bare JSON true; "form": a form login


def parse_dockerfile(path: str) -> Dockerfile:
    df = Dockerfile(path=path)
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError:
        return df
    # join continuation lines; the last stage's instructions win (later ones override)
    text = re.sub(r"\\\r?\n", " ", text)
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            df.workdir, df.expose, df.cmd, df.env = None, [], None, {}  # a new stage
        elif word == "WORKDIR":
            df.workdir = rest
        elif word == "EXPOSE":
            for tok in rest.split():
                num = tok.split("/")[0]
                if num.isdigit():
                    df.expose.append(int(num))
        elif word == "ARG":
            name, eq, default = rest.partition("=")
            df.args.setdefault(name.strip(), default.strip() if eq else None)
        elif word == "ENV":
            for name, value in _env_pairs(rest):
                df.env[name] = value
        elif word == "CMD":
            df.cmd = rest
    return df


def _env_pairs(rest: str) -> list[tuple[str, str]]:
    if "=" not in rest.split(" ", 1)[0]:
        name, _, value = rest.partition(" ")  # legacy `ENV NAME value`
        return [(name, value.strip())]
    return [(m.group(1), m.group(2).strip('"')) for m in
            re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)', rest)]


def source_files(app_dir: str, suffix: str = ".py") -> list[str]:
    """Source files under ``app_dir`` (relative paths), skipping virtualenvs and builds."""
    found: list[str] = []
    for folder, dirs, files in os.walk(app_dir):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(suffix):
                found.append(os.path.relpath(os.path.join(folder, name), app_dir))
                if len(found) >= MAX_FILES:
                    return found
    return found


def _read(app_dir: str, rel: str) -> str:
    path = os.path.join(app_dir, rel)
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            return ""
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


_DECORATOR = re.compile(
    r"^\s*@(?P<obj>[A-Za-z_][A-Za-z0-9_]*)\.(?P<verb>get|post|api_route|route)\(\s*"
    r"(?P<q>['\"])(?P<path>[^'\"]*)(?P=q)(?P<rest>[^\n]*)", re.M)
_ROUTER_PREFIX = re.compile(
    r"^\s*(?P<obj>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:APIRouter|Blueprint)\((?P<args>[^)]*)\)",
    re.M)
_PREFIX_ARG = re.compile(r"(?:prefix|url_prefix)\s*=\s*(?P<q>['\"])(?P<p>[^'\"]*)(?P=q)")
_INCLUDE = re.compile(r"(?:include_router|register_blueprint)\((?P<args>[^)]*)\)")
_DJANGO_PATH = re.compile(r"\b(?:re_)?path\(\s*r?(?P<q>['\"])(?P<path>[^'\"]*)(?P=q)\s*,"
                          r"\s*(?P<target>[^,)]+)")
_HEALTH_WORDS = ("health", "healthz", "healthcheck", "health-check", "ping", "ready",
                 "readyz", "livez", "status")
_LOGIN_WORDS = ("login", "access-token", "token", "signin", "sign-in", "auth")


def _join(*parts: str) -> str:
    kept = [p for p in parts if p and p.strip("/")]
    path = "/" + "/".join(p.strip("/") for p in kept)
    # FastAPI and Django redirect a path without its declared trailing slash: keep it
    return path + "/" if kept and kept[-1].endswith("/") else path


def find_routes(app_dir: str) -> list[Route]:
    """Every decorated or Django-listed route whose path looks like a health or login
    route, with as much of its prefix as the source states literally."""
    files = source_files(app_dir)
    texts = {rel: _read(app_dir, rel) for rel in files}
    include_prefixes: list[str] = []
    dynamic_include = False
    for text in texts.values():
        for m in _INCLUDE.finditer(text):
            args = m.group("args")
            pm = _PREFIX_ARG.search(args)
            if pm:
                include_prefixes.append(pm.group("p"))
            elif "prefix" in args:
                dynamic_include = True  # prefix=settings.API_V1_STR: not literal
    routes: list[Route] = []
    for rel, text in texts.items():
        if not text:
            continue
        if os.path.basename(rel) == "urls.py" or "urlpatterns" in text:
            routes.extend(_django_routes(rel, text))
        prefixes: dict[str, str] = {}
        for m in _ROUTER_PREFIX.finditer(text):
            pm = _PREFIX_ARG.search(m.group("args"))
            prefixes[m.group("obj")] = pm.group("p") if pm else ""
        for m in _DECORATOR.finditer(text):
            verb = m.group("verb")
            rest = m.group("rest")
            if verb in ("get", "post"):
                method = verb.upper()
            else:
                mm = re.search(r"methods\s*=\s*\[([^\]]*)\]", rest)
                method = "POST" if mm and "POST" in mm.group(1).upper() else "GET"
            local = _join(prefixes.get(m.group("obj"), ""), m.group("path"))
            if not _interesting(local):
                continue
            line = text.count("\n", 0, m.start("obj")) + 1
            own_prefix = m.group("obj") in prefixes
            framework = "flask" if verb == "route" or "Blueprint" in text else "fastapi"
            hint = _body_hint(text, m.end(), method)
            # The app object's routes have no include prefix; a router's may have one.
            outer = [""] if not own_prefix else (sorted(set(include_prefixes)) or [""])
            certain = not (own_prefix and (dynamic_include or len(set(outer)) > 1))
            for pre in outer[:1]:
                routes.append(Route(method, _join(pre, local), rel, line, certain, framework,
                                    hint))
    return routes


def _interesting(path: str) -> bool:
    last = [p for p in path.lower().split("/") if p]
    return any(w in seg for seg in last for w in _HEALTH_WORDS + _LOGIN_WORDS)


def _body_hint(text: str, start: int, method: str) -> str:
    """What the handler's source says about its answer, from its first lines."""
    body = text[start:start + 1500]
    nxt = re.search(r"\n\s*@", body)
    body = body[:nxt.start()] if nxt else body
    if "OAuth2PasswordRequestForm" in body or "Form(" in body:
        return "form"
    if re.search(r"return\s+(?:JSONResponse\()?True\b", body):
        return "true"
    return ""


def _django_routes(rel: str, text: str) -> list[Route]:
    routes = []
    for m in _DJANGO_PATH.finditer(text):
        path, target = m.group("path"), m.group("target").strip()
        line = text.count("\n", 0, m.start("path")) + 1
        if target.startswith("admin.site.urls"):
            routes.append(Route("POST", _join(path, "login") + "/", rel, line, True,
                                "django", "django-admin"))
        elif _interesting(path):
            full = "/" + path.lstrip("^").rstrip("$")
            routes.append(Route("GET", full, rel, line, True, "django"))
    return routes


def is_health(route: Route) -> bool:
    segs = [p for p in route.path.lower().split("/") if p]
    return route.method == "GET" and any(w in s for s in segs for w in _HEALTH_WORDS) \
        and not any(w in s for s in segs for w in ("login", "token"))


def is_login(route: Route) -> bool:
    segs = [p for p in route.path.lower().split("/") if p]
    return route.method == "POST" and any(
        w in s for s in segs for w in ("login", "access-token", "token", "signin", "sign-in"))
