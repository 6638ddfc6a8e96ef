"""The zero-downtime parts of restart (runbooks/parts/zero-downtime*.yml, maintenance.yml)
without a host: which path the plan takes with and without var proxy, the switch's
marker logic run for real in bash, the migration check's command, and `deployer
maintenance`'s input checks. Against the sandbox: tests/e2e/test_zero_downtime.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from deployer.migrations_safety import __file__ as CLASSIFIER_FILE
from deployer.operate import compose_context
from tests.test_shipped_runbooks import ROOT, invoke, planned, session

ZD_STEPS = ("zd_migrate.classify", "zd_migrate.migrate", "zero_downtime.slot_start",
            "zero_downtime.gate", "zero_downtime.switch", "zero_downtime.drain")


def test_without_proxy_restart_stays_in_place() -> None:
    steps = planned("restart")
    assert not steps["up"].skipped and not steps["verify.checks"].skipped
    for sid in ZD_STEPS:
        assert steps[sid].skipped, sid


def test_with_proxy_restart_switches_instead_of_recreating() -> None:
    steps = planned("restart", cli_vars=("proxy=caddy",))
    assert steps["up"].skipped and steps["verify.checks"].skipped
    for sid in ZD_STEPS + ("zero_downtime.config_caddy", "zero_downtime.gate_checks.checks",
                           "zero_downtime.checks.checks"):
        assert not steps[sid].skipped, sid
    assert steps["zero_downtime.config_nginx_blue"].skipped
    order = list(steps)
    assert order.index("zd_migrate.migrate") < order.index("migrate") < order.index(
        "zero_downtime.slot_start") < order.index("zero_downtime.gate") < order.index(
        "zero_downtime.switch") < order.index("zero_downtime.drain")
    # the gate's checks go to the idle slot directly, the later ones through the proxy
    # (the first check of the series: health)
    gate = steps["zero_downtime.gate_checks.checks"].commands[0]
    after = steps["zero_downtime.checks.checks"].commands[0]
    assert ":8001/api/health" in gate.display() and ":80/api/health" in after.display()
    # migrations with bounded locks, through PGOPTIONS, never by editing them
    (migrate,) = steps["zd_migrate.migrate"].commands
    assert migrate.env["PGOPTIONS"] == "-c lock_timeout=5s -c statement_timeout=15min"
    assert "-e PGOPTIONS" in migrate.script and "55P03" in migrate.script


def test_behind_the_proxy_django_and_tasks_less_apps_migrate_in_their_own_service() -> None:
    # Django without a tasks service: the classification reads Django's own SQL
    # (sqlmigrate of each unapplied migration) in the api's image, and the bounded-lock
    # migration runs Django's migrate there, never alembic.
    steps = planned("restart", cli_vars=("proxy=caddy", "migrate_tool=django",
                                         "tasks_service=", "api_service=web"))
    (classify,) = steps["zd_migrate.classify"].commands
    assert "run --rm -T web sh -c" in classify.script
    assert "sqlmigrate" in classify.script and "alembic" not in classify.script
    (migrate,) = steps["zd_migrate.migrate"].commands
    assert "-e PGOPTIONS web" in migrate.script and "manage.py migrate --noinput" in migrate.script
    assert "alembic" not in migrate.script
    # A tool with no dry run is not classified; `none` migrates nothing.
    steps = planned("restart", cli_vars=("proxy=caddy", "migrate_tool=command",
                                         "migrate_command=./migrate.sh"))
    assert steps["zd_migrate.classify"].skipped and not steps["zd_migrate.migrate"].skipped
    steps = planned("restart", cli_vars=("proxy=caddy", "migrate_tool=none"))
    assert steps["zd_migrate.migrate"].skipped


def test_nginx_renders_one_site_per_target() -> None:
    steps = planned("restart", cli_vars=("proxy=nginx", "proxy_port=8080"))
    assert steps["zero_downtime.config_caddy"].skipped
    for target, port in (("blue", 8001), ("green", 8002), ("none", 8000)):
        (upload,) = steps[f"zero_downtime.config_nginx_{target}"].commands
        text = upload.content.decode() if isinstance(upload.content, bytes) else upload.content
        assert f"server 127.0.0.1:{port};" in text and "listen 8080;" in text
    (maint,) = steps["zero_downtime.config_nginx_maintenance"].commands
    text = maint.content.decode() if isinstance(maint.content, bytes) else maint.content
    assert "return 503" in text and "Retry-After 120" in text


def test_migration_check_sends_the_classifier_over_stdin() -> None:
    (cmd,) = planned("restart", cli_vars=("proxy=caddy",))["zd_migrate.classify"].commands
    assert cmd.stdin == Path(CLASSIFIER_FILE).read_text()
    assert "run --rm -T tasks sh -c" in cmd.script
    shown = cmd.display()
    assert "migrations_safety.py" in shown and "def classify" not in shown
    (allowed,) = planned("restart", cli_vars=("proxy=caddy", "allow_contract=true"))[
        "zd_migrate.classify"].commands
    assert "--allow-contract" in allowed.script and "--allow-contract" not in cmd.script


def test_classifier_runs_standalone_with_only_the_standard_library(tmp_path: Path) -> None:
    sql = tmp_path / "m.sql"
    sql.write_text("-- Running upgrade 0002 -> 0003\nALTER TABLE users DROP COLUMN bio;\n")
    # -I: isolated, so the deployer package cannot be imported: exactly the app image
    r = subprocess.run([sys.executable, "-I", "-", str(sql)], cwd=tmp_path,
                       input=Path(CLASSIFIER_FILE).read_text(), capture_output=True,
                       text=True)
    assert r.returncode == 3, r.stderr
    assert "contract 0003: drops a column" in r.stdout
    r = subprocess.run([sys.executable, "-I", "-", str(sql), "--allow-contract"],
                       cwd=tmp_path, input=Path(CLASSIFIER_FILE).read_text(),
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("classes: contract"), r.stderr


def _proxy_sh(tmp_path: Path, proxy: str) -> str:
    s = session("restart", cli_vars=(f"proxy={proxy}", f"app_dir={tmp_path / 'app'}"))
    return str(compose_context(s, s.hosts[0]).render("{{ proxy_sh }}"))


def _bash(script: str) -> str:
    r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_switch_moves_one_marker_atomically(tmp_path: Path) -> None:
    live = tmp_path / "app.deployer-proxy" / "live"
    out = _bash(_proxy_sh(tmp_path, "caddy") + """
proxy_active
proxy_switch blue; proxy_active; ls "$live"
proxy_switch green; proxy_active; ls "$live"
proxy_switch green; proxy_active
proxy_maintenance on; ls "$live"
proxy_maintenance off; ls "$live"
proxy_switch none; proxy_active; ls -A "$live" | wc -l
""")
    assert out.split() == ["none", "blue", "blue", "green", "green", "green",
                           "green", "maintenance", "green", "none", "0"]
    assert live.is_dir()


def test_nginx_switch_installs_the_site_of_the_markers(tmp_path: Path) -> None:
    script = _proxy_sh(tmp_path, "nginx")
    site = tmp_path / "site.conf"
    script = script.replace("/etc/nginx/conf.d/shop-deployer.conf", str(site))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nginx").write_text("#!/bin/sh\necho \"nginx $*\" >>\"$NGINX_LOG\"\n")
    (fake / "nginx").chmod(0o755)
    proxy = tmp_path / "app.deployer-proxy"
    proxy.mkdir()
    for target in ("blue", "green", "none", "maintenance"):
        (proxy / f"site-{target}.conf").write_text(f"# {target}\n")
    log = tmp_path / "nginx.log"
    _bash(f"export PATH={fake}:$PATH NGINX_LOG={log}\n" + script
          + "\nproxy_switch blue\nproxy_maintenance on\nproxy_maintenance off\n")
    assert site.read_text() == "# blue\n"
    assert log.read_text().count("nginx -s reload") == 3
    assert log.read_text().count("nginx -t -q") == 3


def _deployer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deployer.cli.main", "-C", str(ROOT), "-i",
                           str(ROOT / "inventory.example.yml"), *args], capture_output=True,
                          text=True, timeout=60)


def test_maintenance_command_needs_a_host_and_owns_its_var() -> None:
    r = _deployer("maintenance", "on")
    assert r.returncode == 2 and "pass --host" in r.stderr, r.stderr
    r = _deployer("maintenance", "off", "--host", "vps", "--var", "maintenance=on")
    assert r.returncode == 2 and "set by the argument" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    code, out = invoke("plan", str(ROOT / "runbooks" / "parts" / "maintenance.yml"),
                       "--host", "vps", "--var", "proxy=caddy", "--var", "maintenance=on")
    assert code == 0, out
    assert "proxy_maintenance on" in out
