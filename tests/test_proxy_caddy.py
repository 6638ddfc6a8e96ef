"""The shipped Caddy template and the switch it makes, against a real Caddy (the Debian
package, in scripts/test-deps): two loopback upstreams stand for the blue and green
slots, a load thread keeps requests going through the proxy, and renaming the live
marker (what the runbooks' switch does) moves traffic without losing a request and
without a config reload. Maintenance mode answers 503 with Retry-After. No Docker: the
slots are plain Python servers."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.templating import environment

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slot(http.server.ThreadingHTTPServer):
    daemon_threads = True


def serve(name: str, delay: float = 0.0) -> tuple[Slot, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if delay:
                time.sleep(delay)
            body = json.dumps({"slot": name}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = Slot(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def render(path: Path, **values: object) -> None:
    text = environment(str(ROOT)).get_template("caddy/caddy.json.j2").render(**values)
    json.loads(text)  # valid JSON, whatever the values
    path.write_text(text)


@pytest.fixture
def caddy(tmp_path: Path) -> Iterator[dict[str, object]]:
    exe = shutil.which("caddy")
    assert exe, "caddy is not installed: scripts/test-deps installs it (Debian package caddy)"
    listen, admin = free_port(), free_port()
    blue, blue_port = serve("blue")
    green, green_port = serve("green", delay=0.05)
    inplace, inplace_port = serve("none")
    live = tmp_path / "live"
    live.mkdir()
    render(tmp_path / "caddy.json", proxy_listen=f"127.0.0.1:{listen}",
           proxy_admin=f"127.0.0.1:{admin}", drain_timeout=10, proxy_live_dir=str(live),
           blue_upstream=f"127.0.0.1:{blue_port}", green_upstream=f"127.0.0.1:{green_port}",
           none_upstream=f"127.0.0.1:{inplace_port}", maintenance_retry_after=300)
    proc = subprocess.Popen([exe, "run", "--config", str(tmp_path / "caddy.json")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    url = f"http://127.0.0.1:{listen}/"
    deadline = time.monotonic() + 15
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "caddy did not start serving within 15 s"
            time.sleep(0.1)
    try:
        yield {"live": live, "url": url, "admin": f"127.0.0.1:{admin}", "exe": exe}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        for server in (blue, green, inplace):
            server.shutdown()


def switch(target: dict[str, object], slot: str) -> None:
    """What the runbooks' proxy_mark does: one marker, renamed (atomic), or none."""
    live = Path(str(target["live"]))
    current = [s for s in ("blue", "green") if (live / s).exists()]
    if slot == "none":
        for s in current:
            (live / s).unlink()
    elif current and current[0] != slot:
        (live / current[0]).rename(live / slot)
    elif not current:
        (live / slot).touch()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_switch_under_load_loses_no_request(caddy: dict[str, object]) -> None:
    url = str(caddy["url"])
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                status, _, body = get(url)
                if status == 200:
                    seen.append(json.loads(body)["slot"])
                else:
                    failures.append(f"HTTP {status}")
            except Exception as exc:  # noqa: BLE001 - every failure counts
                failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for target in ("blue", "green", "blue", "green", "none", "green"):
            time.sleep(0.4)
            switch(caddy, target)
        time.sleep(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert failures == []
    assert {"blue", "green", "none"} <= set(seen)
    assert seen[-1] == "green"  # the last switch holds
    assert len(seen) > 50  # the load really ran through all five switches


def test_maintenance_mode_serves_503_with_retry_after_then_back(
        caddy: dict[str, object]) -> None:
    url = str(caddy["url"])
    switch(caddy, "blue")
    marker = Path(str(caddy["live"])) / "maintenance"
    marker.touch()
    status, headers, body = get(url + "api/anything")
    assert status == 503
    assert headers.get("Retry-After") == "300"
    assert b"maintenance" in body.lower()
    marker.unlink()
    status, _, body = get(url)
    assert status == 200 and json.loads(body) == {"slot": "blue"}


def test_caddy_accepts_every_rendered_variant(tmp_path: Path) -> None:
    exe = shutil.which("caddy")
    assert exe
    for i, extra in enumerate([{}, {"proxy_domain": "shop.example.com"}]):
        path = tmp_path / f"c{i}.json"
        render(path, proxy_listen=":8080", proxy_admin="127.0.0.1:2999",
               proxy_live_dir="/srv/app.deployer-proxy/live", blue_upstream="127.0.0.1:8001",
               green_upstream="127.0.0.1:8002", none_upstream="127.0.0.1:8000", **extra)
        r = subprocess.run([exe, "validate", "--config", str(path)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        config = json.loads(path.read_text())
        assert config["admin"]["listen"] == "127.0.0.1:2999"
        server = config["apps"]["http"]["servers"]["deployer"]
        routes = server["routes"]
        assert routes[0]["handle"][0]["status_code"] == 503
        assert [r["handle"][0].get("upstreams") for r in routes[1:]] == [
            [{"dial": "127.0.0.1:8001"}], [{"dial": "127.0.0.1:8002"}],
            [{"dial": "127.0.0.1:8000"}]]
        markers = [r["match"][0]["file"]["try_files"] for r in routes[:3]]
        assert markers == [["/maintenance"], ["/blue"], ["/green"]]
        if extra.get("proxy_domain"):
            assert all(r["match"][0]["host"] == ["shop.example.com"] for r in routes)
            assert "automatic_https" not in server
        else:
            assert server["automatic_https"] == {"disable": True}
