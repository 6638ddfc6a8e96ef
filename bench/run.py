"""deployer's benchmark: per-step overhead, fan-out, plan, startup and memory, side by
side with raw paramiko, Fabric, OpenSSH ControlMaster, ansible-playbook and pyinfra.

    python bench/run.py                  # everything, medians of 5 runs -> bench/RESULTS.md
    python bench/run.py --repeat 7 --only steps,fanout
    python bench/run.py --setup-venv     # (re)install ansible-core + pyinfra in bench/.venv

Not part of the test suite. Everything targets loopback only: the script starts its own
OpenSSH sshd instances (tests/sshd.py) on 127.0.0.1 (a light login shell), 127.0.0.1
with a heavy ``~/.bashrc`` (a second sshd whose sessions get ``HOME`` pointing at it), and
127.0.1.1..127.0.1.N for the fan-out (one sshd per 16 addresses). See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV = BENCH / ".venv"
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(BENCH))

import latency  # noqa: E402

from tests.sshd import MAX_ADDRESSES, SshServer  # noqa: E402

HEAVY_RC_MS = 80.0  # target cost of the heavy ~/.bashrc
STREAM_BYTES = 200 * 1024 * 1024


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


LAUNCHER: Path | None = None  # set by main(): the `deployer` command of this checkout


def write_launcher(directory: Path) -> Path:
    """A `deployer` script like pip's console script, but importing the package from
    this checkout (ROOT) with this interpreter: a `deployer` found on PATH may be another
    install, or a shared checkout with someone's half-done edits."""
    path = directory / "deployer"
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                    "from deployer.cli.main import main\nsys.exit(main())\n")
    path.chmod(0o755)
    return path


def deployer_argv() -> list[str]:
    if LAUNCHER is not None:
        return [str(LAUNCHER)]
    return [sys.executable, "-m", "deployer.cli.main"]


def checkout_info() -> str:
    """The commit measured, and whether the tree had uncommitted changes under deployer/."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                "deployer", "runbooks", "templates"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" with uncommitted changes in deployer/, runbooks/ or templates/"
                   if dirty else " (clean)")


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env.update({"DEPLOYER_SSH_CONFIG": "none", "DEPLOYER_KNOWN_HOSTS": "none",
                "NO_COLOR": "1", "COLUMNS": "120"})
    env.update(extra or {})
    return env


def timed(argv: list[str], env: dict[str, str], cwd: str | None = None,
          expect: int = 0, stdout: Any = subprocess.DEVNULL) -> float:
    """Wall seconds of one process; fails loudly if it exits unexpectedly."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, text=True)
    took = time.perf_counter() - start
    if proc.returncode != expect:
        raise RuntimeError(f"{' '.join(argv[:6])}... exited {proc.returncode}:\n"
                           f"{proc.stderr[-3000:]}")
    return took


# -- machine ------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    info = {"cores": str(os.cpu_count()), "python": platform.python_version(),
            "kernel": platform.release()}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["openssh"] = subprocess.run(["ssh", "-V"], capture_output=True,
                                         text=True).stderr.strip()
    except OSError:
        pass
    try:
        import fabric
        import paramiko

        info["paramiko"] = paramiko.__version__
        info["fabric"] = fabric.__version__
    except ImportError:
        pass
    return info


# -- tools in the bench venv -------------------------------------------------------------


def setup_venv(force: bool = False) -> str:
    """Make bench/.venv with ansible-core and pyinfra. Returns a note for RESULTS.md."""
    if not force and (VENV / "bin" / "ansible-playbook").exists() and (
            VENV / "bin" / "pyinfra").exists():
        return "bench/.venv present"
    log("installing ansible-core and pyinfra into bench/.venv (pip)")
    try:
        if not (VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        proc = subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "ansible-core",
                               "pyinfra"], capture_output=True, text=True)
        if proc.returncode != 0:
            return f"pip install ansible-core pyinfra failed: {proc.stderr.strip()[-500:]}"
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"could not create bench/.venv: {exc}"
    return "bench/.venv installed"


NO_TOOLS = False  # --no-tools: leave ansible/pyinfra out of this run


def tool(name: str) -> str | None:
    if NO_TOOLS:
        return None
    path = VENV / "bin" / name
    return str(path) if path.exists() else None


def tool_version(name: str) -> str:
    exe = tool(name)
    if exe is None:
        return "not installed"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    return out.strip().splitlines()[0] if out.strip() else "?"


# -- the lab: sshd servers and a deployer project ----------------------------------------


class Lab:
    def __init__(self, work: Path, fan_hosts: int, fan_group: int | None = None) -> None:
        """``fan_hosts`` addresses get an sshd; the first ``fan_group`` (all by default)
        form the fan-out section's group ``fan`` (the latency section's fleets may use
        more)."""
        self.work = work
        self.fan_group = fan_hosts if fan_group is None else min(fan_group, fan_hosts)
        self.servers: list[SshServer] = []
        self.light_home = work / "home-light"
        self.heavy_home = work / "home-heavy"
        self.light_home.mkdir()
        self.heavy_home.mkdir()
        self.rc_loops = calibrate_rc_loop()
        (self.heavy_home / ".bashrc").write_text(
            "# deliberately heavy, like `eval \"$(pyenv init -)\"` on a real account\n"
            f"for __i in $(seq 1 {self.rc_loops}); do :; done; unset __i\n")
        # sshd passes SetEnv values to the session; bash then reads $HOME/.bashrc
        # (Debian's bash sources it for non-interactive shells started by sshd).
        self.light = self._server("light", ["127.0.0.1"], self.light_home)
        self.heavy = self._server("heavy", ["127.0.0.1"], self.heavy_home)
        self.fan_addresses = [f"127.0.1.{i}" for i in range(1, fan_hosts + 1)]
        self.fan: dict[str, SshServer] = {}
        for start in range(0, len(self.fan_addresses), MAX_ADDRESSES):
            chunk = self.fan_addresses[start:start + MAX_ADDRESSES]
            server = self._server(f"fan{start}", chunk, self.light_home)
            for address in chunk:
                self.fan[address] = server
        self.project = work / "project"
        self.hosts: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {"fan": {}}
        self._write_project()

    def _server(self, name: str, addresses: list[str], home: Path) -> SshServer:
        server = SshServer(self.work / f"sshd-{name}", addresses=addresses,
                           extra_config=f"SetEnv HOME={home}\n").start()
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def fan_names(self) -> list[str]:
        """The fan-out section's hosts (group ``fan``)."""
        return [f"fan{i:03d}" for i in range(1, self.fan_group + 1)]

    def _write_project(self) -> None:
        p = self.project
        (p / "runbooks").mkdir(parents=True)
        self.hosts["light"] = self.host_entry(self.light, "127.0.0.1", [])
        self.hosts["heavy"] = self.host_entry(self.heavy, "127.0.0.1", [])
        for name, address in zip(self.fan_names(), self.fan_addresses, strict=False):
            self.hosts[name] = self.host_entry(self.fan[address], address, ["fan"])
        self._write_inventory()
        self.runbook("steps1", trivial_steps(1))
        self.runbook("steps101", trivial_steps(101))
        self.runbook("fan20", trivial_steps(20))
        self.runbook("big2000", templated_steps(2000))
        self.runbook("stream", textwrap.dedent(f"""\
            steps:
              - id: stream
                run: "head -c {STREAM_BYTES} /dev/zero | tr '\\\\0' x | fold -w 99"
            """))

    def host_entry(self, server: Any, address: str, groups: list[str]) -> dict[str, Any]:
        return {"host": address, "port": server.port, "user": server.user,
                "identity_file": server.client_key, "known_hosts": server.known_hosts,
                "connect_timeout": 30, "groups": groups,
                "vars": {"lock_dir": str(self.work / "locks" / f"{address}-{server.port}"),
                         "host_state_dir": str(self.work / "hoststate" /
                                               f"{address}-{server.port}")}}

    def add_hosts(self, hosts: dict[str, dict[str, Any]], groups: list[str]) -> None:
        """More inventory hosts (bench/latency.py's relayed ones), written at once."""
        self.hosts.update(hosts)
        self.groups.update({g: {} for g in groups})
        self._write_inventory()

    def _write_inventory(self) -> None:
        import yaml

        (self.project / "inventory.yml").write_text(
            yaml.safe_dump({"hosts": self.hosts, "groups": self.groups}, sort_keys=False))

    def runbook(self, name: str, text: str) -> None:
        (self.project / "runbooks" / f"{name}.yml").write_text(text)

    def deployer(self, *args: str) -> list[str]:
        return deployer_argv() + ["-C", str(self.project), *args]


def calibrate_rc_loop() -> int:
    """Loop count that makes the heavy ~/.bashrc cost about HEAVY_RC_MS."""
    n = 20000
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(["bash", "-c", f"for i in $(seq 1 {n}); do :; done"], check=True)
        runs.append(time.perf_counter() - start)
    per = median(runs) * 1000 / n
    return max(1000, int(HEAVY_RC_MS / per))


def trivial_steps(n: int) -> str:
    lines = ["steps:"]
    for i in range(n):
        lines += [f"  - id: s{i}", "    run: \"true\""]
    return "\n".join(lines) + "\n"


def templated_steps(n: int) -> str:
    lines = ["vars:", "  app_dir: /srv/app", "steps:"]
    for i in range(n):
        lines += [f"  - id: s{i}", f"    name: Step {i}",
                  f"    run: \"echo step {i} in {{{{ app_dir }}}} on {{{{ host.name }}}}\"",
                  "    cwd: \"{{ app_dir }}\"", "    timeout: 30"]
    return "\n".join(lines) + "\n"


# -- per-step contenders -------------------------------------------------------------
# Each returns the marginal milliseconds of one more trivial step (median over repeats).


def nodelay_socket(server: SshServer) -> socket.socket:
    sock = socket.create_connection((server.address, server.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _paramiko_client(server: SshServer, nodelay: bool) -> Any:
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(server.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(server.address, server.port, server.user, key_filename=server.client_key,
                   sock=nodelay_socket(server) if nodelay else None, allow_agent=False,
                   look_for_keys=False)
    return client


def loop_ms(step: Callable[[], None], n: int, repeat: int) -> float:
    step()  # warm up: first-use costs are not per-step costs
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            step()
        runs.append((time.perf_counter() - start) * 1000 / n)
    return median(runs)


def raw_paramiko_ms(server: SshServer, n: int, repeat: int, nodelay: bool) -> float:
    client = _paramiko_client(server, nodelay)

    def step() -> None:
        _, out, _ = client.exec_command("true")
        if out.channel.recv_exit_status() != 0:
            raise RuntimeError("true failed")

    try:
        return loop_ms(step, n, repeat)
    finally:
        client.close()


def fabric_ms(server: SshServer, n: int, repeat: int) -> float:
    """Fabric as a user writes it: Connection(...).run in a loop (no TCP_NODELAY)."""
    from fabric import Config, Connection
    from paramiko.config import SSHConfig

    conn = Connection(server.address, user=server.user, port=server.port,
                      config=Config(lazy=True, ssh_config=SSHConfig()),
                      connect_kwargs={"key_filename": server.client_key, "allow_agent": False,
                                      "look_for_keys": False})
    conn.client.load_host_keys(server.known_hosts)
    conn.open()
    try:
        return loop_ms(lambda: conn.run("true", hide=True), n, repeat)
    finally:
        conn.close()


def openssh_cm_ms(server: SshServer, work: Path, n: int, repeat: int) -> float:
    path = work / f"cm-{server.port}"
    argv = server.ssh_argv()
    argv[1:1] = ["-o", "ControlMaster=auto", "-o", f"ControlPath={path}",
                 "-o", "ControlPersist=60"]
    env = clean_env()

    def step() -> None:
        subprocess.run(argv + ["true"], check=True, env=env, stdin=subprocess.DEVNULL)

    try:
        return loop_ms(step, n, repeat)
    finally:
        subprocess.run(argv[:1] + ["-o", f"ControlPath={path}", "-O", "exit", "x"],
                       capture_output=True, env=env)


def deployer_marginal_ms(lab: Lab, server: SshServer, host: str, n: int,
                         repeat: int, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Real `deployer run`: (wall of 101 steps - wall of 1 step) / 100, paired runs.

    Each repeat also times the floor (raw paramiko, TCP_NODELAY, ``n`` steps) right
    after the pair, so the ratio compares figures taken under the same machine load
    (other tenants of a shared machine come and go within seconds).
    """
    env = clean_env()
    timed(lab.deployer("run", "steps1", "--host", host, *extra), env)  # warm caches
    client = _paramiko_client(server, nodelay=True)

    def floor_step() -> None:
        _, out, _ = client.exec_command("true")
        if out.channel.recv_exit_status() != 0:
            raise RuntimeError("true failed")

    diffs, one, many, floors, ratios = [], [], [], [], []
    try:
        floor_step()
        for _ in range(repeat):
            t1 = timed(lab.deployer("run", "steps1", "--host", host, *extra), env)
            t101 = timed(lab.deployer("run", "steps101", "--host", host, *extra), env)
            one.append(t1)
            many.append(t101)
            diffs.append((t101 - t1) * 1000 / 100)
            floors.append(loop_ms(floor_step, n, 1))
            ratios.append(diffs[-1] / floors[-1])
    finally:
        client.close()
    return {"marginal_ms": median(diffs), "wall_1_s": median(one), "wall_101_s": median(many),
            "paired_floor_ms": median(floors), "paired_ratio": median(ratios),
            "runs_ms": diffs, "paired_floors_ms": floors}


def _ansible_files(lab: Lab, name: str, hosts: list[tuple[str, SshServer, str]],
                   tasks: int, forks: int = 5) -> tuple[list[str], dict[str, str]]:
    d = lab.work / f"ansible-{name}"
    d.mkdir(exist_ok=True)
    lines = ["[bench]"]
    for alias, server, address in hosts:
        lines.append(f"{alias} ansible_host={address} ansible_port={server.port} "
                     f"ansible_user={server.user} "
                     f"ansible_ssh_private_key_file={server.client_key} "
                     f"ansible_ssh_common_args='-F /dev/null -o IdentitiesOnly=yes "
                     f"-o UserKnownHostsFile={server.known_hosts} "
                     f"-o GlobalKnownHostsFile=/dev/null'")
    lines += ["[bench:vars]", "ansible_python_interpreter=/usr/bin/python3"]
    (d / "hosts.ini").write_text("\n".join(lines) + "\n")
    play = ["- hosts: bench", "  gather_facts: false", "  tasks:"]
    for i in range(tasks):
        play += [f"    - name: s{i}", "      command: \"true\""]
    (d / "play.yml").write_text("\n".join(play) + "\n")
    (d / "ansible.cfg").write_text(textwrap.dedent(f"""\
        [defaults]
        forks = {forks}
        host_key_checking = True
        retry_files_enabled = False
        interpreter_python = /usr/bin/python3
        [ssh_connection]
        pipelining = True
        control_path_dir = {d}/cp
        """))
    env = clean_env({"ANSIBLE_CONFIG": str(d / "ansible.cfg"), "ANSIBLE_HOME": str(d / "home"),
                     "ANSIBLE_LOCAL_TEMP": str(d / "tmp"), "ANSIBLE_NOCOLOR": "1"})
    return [tool("ansible-playbook") or "ansible-playbook", "-i", str(d / "hosts.ini"),
            str(d / "play.yml")], env


def ansible_marginal_ms(lab: Lab, server: SshServer, label: str, n: int,
                        repeat: int) -> dict[str, float]:
    hosts = [("target", server, server.address)]
    argv1, env1 = _ansible_files(lab, f"{label}-1", hosts, 1)
    argvn, envn = _ansible_files(lab, f"{label}-{n + 1}", hosts, n + 1)
    timed(argv1, env1)
    diffs, one, many = [], [], []
    for _ in range(repeat):
        t1 = timed(argv1, env1)
        tn = timed(argvn, envn)
        one.append(t1)
        many.append(tn)
        diffs.append((tn - t1) * 1000 / n)
    return {"marginal_ms": median(diffs), "wall_1_s": median(one),
            f"wall_{n + 1}_s": median(many)}


def _pyinfra_files(lab: Lab, name: str, server: SshServer, ops: int) -> tuple[list[str],
                                                                             dict[str, str]]:
    d = lab.work / f"pyinfra-{name}"
    d.mkdir(exist_ok=True)
    (d / "inventory.py").write_text(textwrap.dedent(f"""\
        bench = [("{server.address}", {{
            "ssh_port": {server.port},
            "ssh_user": "{server.user}",
            "ssh_key": "{server.client_key}",
            "ssh_known_hosts_file": "{server.known_hosts}",
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
        }})]
        """))
    (d / "deploy.py").write_text(
        "from pyinfra.operations import server\n"
        f"for i in range({ops}):\n"
        "    server.shell(name=f's{i}', commands=['true'])\n")
    env = clean_env({"HOME": str(d)})  # no ~/.ssh/config of the operator
    return [tool("pyinfra") or "pyinfra", "-y", "--no-wait", str(d / "inventory.py"),
            str(d / "deploy.py")], env


def pyinfra_marginal_ms(lab: Lab, server: SshServer, label: str, n: int,
                        repeat: int) -> dict[str, float]:
    argv1, env1 = _pyinfra_files(lab, f"{label}-1", server, 1)
    argvn, envn = _pyinfra_files(lab, f"{label}-{n + 1}", server, n + 1)
    timed(argv1, env1)
    diffs, one, many = [], [], []
    for _ in range(repeat):
        t1 = timed(argv1, env1)
        tn = timed(argvn, envn)
        one.append(t1)
        many.append(tn)
        diffs.append((tn - t1) * 1000 / n)
    return {"marginal_ms": median(diffs), "wall_1_s": median(one),
            f"wall_{n + 1}_s": median(many)}


def per_step_section(lab: Lab, server: SshServer, host: str, label: str, n: int,
                     repeat: int, notes: list[str]) -> dict[str, Any]:
    log(f"per-step ({label}): deployer")
    out: dict[str, Any] = {"deployer": deployer_marginal_ms(lab, server, host, n, repeat)}
    # What keeping the run on the host (docs/host-state.md) costs a step: the same runs
    # with var host_state=false, records on this machine only.
    log(f"per-step ({label}): deployer without the host state")
    out["deployer_local_only"] = deployer_marginal_ms(lab, server, host, n, repeat,
                                                      ("--var", "host_state=false"))
    log(f"per-step ({label}): raw paramiko")
    out["paramiko_nodelay_ms"] = raw_paramiko_ms(server, n, repeat, nodelay=True)
    out["paramiko_default_ms"] = raw_paramiko_ms(server, n, repeat, nodelay=False)
    log(f"per-step ({label}): fabric, openssh")
    out["fabric_ms"] = fabric_ms(server, n, repeat)
    out["openssh_cm_ms"] = openssh_cm_ms(server, lab.work, n, repeat)
    if tool("ansible-playbook"):
        log(f"per-step ({label}): ansible-playbook")
        try:
            out["ansible"] = ansible_marginal_ms(lab, server, label, n, repeat)
        except RuntimeError as exc:
            notes.append(f"ansible-playbook ({label}) failed: {exc}")
    if tool("pyinfra"):
        log(f"per-step ({label}): pyinfra")
        try:
            out["pyinfra"] = pyinfra_marginal_ms(lab, server, label, n, repeat)
        except RuntimeError as exc:
            notes.append(f"pyinfra ({label}) failed: {exc}")
    return out


# -- fan-out ----------------------------------------------------------------------------


def fanout_section(lab: Lab, repeat: int, notes: list[str]) -> dict[str, Any]:
    env = clean_env()
    names = lab.fan_names()
    n = len(names)
    single_argv = lab.deployer("run", "fan20", "--host", names[0])
    fan_argv = lab.deployer("run", "fan20", "--host", "fan", "--parallel", str(n),
                            "--max-fail", "100%")
    log(f"fan-out: deployer 1 host and {n} hosts x 20 steps")
    listeners = sorted({s.pid for s in lab.fan.values()})
    timed(single_argv, env)
    timed(fan_argv, env)
    single, fan = [], []
    cpu: dict[str, list[dict[str, float]]] = {"single": [], "fan": []}
    for _ in range(repeat):
        for key, argv, walls in (("single", single_argv, single), ("fan", fan_argv, fan)):
            before = cpu_snapshot(listeners)
            walls.append(timed(argv, env))
            cpu[key].append(cpu_delta(before, cpu_snapshot(listeners)))
    out: dict[str, Any] = {"hosts": n, "steps": 20, "deployer_single_s": median(single),
                           "deployer_fan_s": median(fan), "cores": os.cpu_count() or 1}
    for key in ("single", "fan"):
        for field in ("deployer_cpu_s", "sshd_cpu_s", "machine_cpu_s"):
            out[f"{key}_{field}"] = median([c[field] for c in cpu[key]])
    if tool("ansible-playbook"):
        log(f"fan-out: ansible-playbook forks={n}")
        try:
            one = [("fan001", lab.fan[lab.fan_addresses[0]], lab.fan_addresses[0])]
            everyone = [(name, lab.fan[a], a)
                        for name, a in zip(names, lab.fan_addresses, strict=False)]
            a1, e1 = _ansible_files(lab, "fan-1", one, 20, forks=n)
            an, en = _ansible_files(lab, "fan-n", everyone, 20, forks=n)
            timed(a1, e1)  # warm-up; the 50-host play is too slow to warm up as well
            s1, sn = [], []
            for _ in range(repeat):
                s1.append(timed(a1, e1))
                sn.append(timed(an, en))
            out["ansible_single_s"] = median(s1)
            out["ansible_fan_s"] = median(sn)
        except RuntimeError as exc:
            notes.append(f"ansible fan-out failed: {exc}")
    return out


def cpu_snapshot(listeners: list[int]) -> dict[str, float]:
    """CPU seconds so far: this process's reaped children (deployer runs), the sshd
    listeners' reaped children (every SSH session and the shells it ran), and the whole
    machine (all cores, busy time, every tenant)."""
    tick = os.sysconf("SC_CLK_TCK")
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    sshd = 0.0
    for pid in listeners:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            # utime stime cutime cstime are fields 14-17 (1-based) of /proc/pid/stat.
            sshd += sum(int(x) for x in fields[11:15]) / tick
        except OSError:
            pass
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = (sum(values) - values[3] - values[4]) / tick
    return {"deployer_cpu_s": kids.ru_utime + kids.ru_stime, "sshd_cpu_s": sshd,
            "machine_cpu_s": busy}


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


# -- plan, startup, memory ------------------------------------------------------------------


def plan_section(lab: Lab, repeat: int, notes: list[str]) -> dict[str, Any]:
    env = clean_env()
    out: dict[str, Any] = {}
    log("plan: 2,000-step runbook")
    argv = lab.deployer("plan", "big2000", "--host", "light")
    timed(argv, env)
    out["plan_2000_s"] = median([timed(argv, env) for _ in range(repeat)])
    base = lab.deployer("plan", "steps1", "--host", "light")
    out["plan_1_s"] = median([timed(base, env) for _ in range(repeat)])
    log("startup: deployer --help")
    help_argv = deployer_argv() + ["--help"]
    timed(help_argv, env)
    out["help_s"] = median([timed(help_argv, env) for _ in range(max(repeat, 10))])
    out["python_startup_s"] = median([timed([sys.executable, "-c", "pass"], env)
                                      for _ in range(max(repeat, 10))])
    first = ROOT / "runbooks" / "first-time.yml"
    inventory = next((p for p in (ROOT / "inventory.example.yml",
                                  ROOT / "examples" / "inventory.yml") if p.exists()), None)
    if first.exists():
        log("startup: deployer plan first-time")
        argv = deployer_argv() + ["-C", str(ROOT)]
        if inventory is not None:
            argv += ["-i", str(inventory.relative_to(ROOT))]
        argv += ["plan", "first-time", "--placeholder-secrets"]
        try:
            timed(argv, env)
            out["plan_first_time_s"] = median([timed(argv, env) for _ in range(repeat)])
            out["plan_first_time_cmd"] = " ".join(argv[len(deployer_argv()):])
        except RuntimeError as exc:
            notes.append(f"`deployer plan first-time` on the shipped runbook failed, so the "
                         f"figure is for a generated runbook instead: {exc}")
    if "plan_first_time_s" not in out:
        if not first.exists():
            notes.append("runbooks/first-time.yml does not exist yet: the `plan first-time` "
                         "figure is for a generated 30-step runbook instead")
        lab.runbook("first-time-generated", templated_steps(30))
        argv = lab.deployer("plan", "first-time-generated", "--host", "light")
        timed(argv, env)
        out["plan_first_time_s"] = median([timed(argv, env) for _ in range(repeat)])
        out["plan_first_time_cmd"] = "plan first-time-generated --host light (generated)"
    return out


RSS_WRAPPER = """
import resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                      stdin=subprocess.DEVNULL)
took = time.perf_counter() - start
if proc.returncode:
    sys.stderr.write(proc.stderr.decode(errors="replace")[-2000:])
    sys.exit(proc.returncode)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, took)
"""


def _peak_rss(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(ru_maxrss in MiB, wall seconds) of one run of ``argv``, measured by a small
    wrapper process so that the figure is the deployer process's own peak."""
    proc = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *argv],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv[:6])}... failed: {proc.stderr[-2000:]}")
    kib, took = proc.stdout.split()
    return int(kib) / 1024, float(took)


def memory_section(lab: Lab, repeat: int) -> dict[str, Any]:
    """Peak RSS of `deployer run` (ru_maxrss of the process, which holds the SSH
    connection in-process) while one step prints 200 MiB, stdout to /dev/null.

    Like every other figure, the reported value is the median of ``repeat`` (>= 5)
    runs; the largest single run is kept too, since a peak is also a worst case."""
    env = clean_env()
    runs = max(5, repeat)
    log(f"memory: one step printing 200 MiB, {runs} runs")
    stream = lab.deployer("run", "stream", "--host", "light")
    measured = [_peak_rss(stream, env) for _ in range(runs)]
    peaks = [m[0] for m in measured]
    walls = [m[1] for m in measured]
    base = [_peak_rss(lab.deployer("run", "steps1", "--host", "light"), env)[0]
            for _ in range(runs)]
    return {"peak_rss_mib": median(peaks), "peak_rss_max_mib": max(peaks),
            "peak_rss_runs_mib": peaks, "runs": runs,
            "stream_wall_s": median(walls), "one_step_rss_mib": median(base),
            "one_step_rss_runs_mib": base,
            "throughput_mib_s": (STREAM_BYTES / 1024 / 1024) / median(walls)}


# -- report -----------------------------------------------------------------------------


def fmt_ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} ms"


def fmt_s(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 1000:.0f} ms" if v < 10 else f"{v:.1f} s"


class Target(NamedTuple):
    group: str  # the ANALYSIS.md section that explains it
    name: str
    measured: str
    ratio: str
    met: bool | None  # None: not measured in this run


def targets(r: dict[str, Any]) -> list[Target]:
    """The issue's targets, each judged from the figures of this run only."""
    rows: list[Target] = []
    light, heavy = r.get("light"), r.get("heavy")
    if light:
        d = light["deployer"]["marginal_ms"]
        floor = light["deployer"].get("paired_floor_ms", light["paramiko_nodelay_ms"])
        ratio = light["deployer"].get("paired_ratio", d / floor)
        rows.append(Target("per_step",
                           "marginal per-step <= 1.3x raw paramiko TCP_NODELAY (light rc)",
                           f"{d:.2f} ms vs {floor:.2f} ms (paired)", f"{ratio:.2f}x",
                           ratio <= 1.3))
        if "pyinfra" in light:
            p = light["pyinfra"]["marginal_ms"]
            rows.append(Target("tools", ">= 10x less per step than pyinfra (light rc)",
                               f"{d:.2f} ms vs {p:.1f} ms", f"{p / d:.1f}x less",
                               p >= 10 * d))
        else:
            rows.append(Target("tools", ">= 10x less per step than pyinfra",
                               "pyinfra not available", "-", None))
        if "ansible" in light:
            a = light["ansible"]["marginal_ms"]
            rows.append(Target("tools",
                               ">= 50x less per step than ansible-playbook command: (light rc)",
                               f"{d:.2f} ms vs {a:.1f} ms", f"{a / d:.1f}x less",
                               a >= 50 * d))
        else:
            rows.append(Target("tools", ">= 50x less than ansible-playbook",
                               "ansible not available", "-", None))
    if heavy:
        d = heavy["deployer"]["marginal_ms"]
        raw = heavy["paramiko_nodelay_ms"]
        rows.append(Target("heavy", "faster than raw per-channel exec on a heavy ~/.bashrc",
                           f"{d:.2f} ms vs {raw:.2f} ms", f"{raw / d:.1f}x faster", d < raw))
    fan = r.get("fanout")
    if fan:
        ratio = fan["deployer_fan_s"] / fan["deployer_single_s"]
        rows.append(Target("fanout", f"{fan['hosts']}-host fan-out wall <= 3x single host",
                           f"{fmt_s(fan['deployer_fan_s'])} vs "
                           f"{fmt_s(fan['deployer_single_s'])}", f"{ratio:.2f}x", ratio <= 3))
    plan = r.get("plan")
    if plan:
        rows.append(Target("plan", "plan of 2,000 steps < 1 s", fmt_s(plan["plan_2000_s"]),
                           f"{plan['plan_2000_s']:.2f} s", plan["plan_2000_s"] < 1))
        rows.append(Target("startup", "`deployer --help` < 300 ms", fmt_s(plan["help_s"]),
                           f"{plan['help_s'] / 0.3:.2f}x of budget", plan["help_s"] < 0.3))
    rows += latency_targets(r.get("latency"))
    mem = r.get("memory")
    if mem:
        mb = mem["peak_rss_mib"] * MIB_TO_MB
        worst = mem.get("peak_rss_max_mib", max(mem["peak_rss_runs_mib"]))
        rows.append(Target("memory", "peak RSS < 150 MB while streaming 200 MB",
                           f"{mb:.0f} MB ({mem['peak_rss_mib']:.0f} MiB) median of "
                           f"{len(mem['peak_rss_runs_mib'])}; largest run "
                           f"{worst * MIB_TO_MB:.0f} MB", f"{mb / 150:.2f}x of budget",
                           mb < 150))
    return rows


def latency_targets(sec: dict[str, Any] | None) -> list[Target]:
    """Issue 15's targets, as round trips measured through the relays of this run."""
    if not sec:
        return []
    rows: list[Target] = []
    d = sec["direct"]["deployer"]
    for r in sec["by_rtt"]:
        rtt, dep = r["rtt_ms"], r["deployer"]
        per = latency.in_rtt(dep["marginal_ms"], d["marginal_ms"], rtt)
        fixed = latency.in_rtt(dep["wall_1_s"] * 1000, d["wall_1_s"] * 1000, rtt)
        counted = r.get("counted")
        if counted:
            # Judged on the round trips counted at the relay: what a slower or busier
            # machine cannot change. The timed figure stands beside it.
            c_per, c_fixed = counted["deployer_per_step"], counted["deployer_run_1"] - 1
            rows.append(Target("latency", f"per step <= 1.1 RTT at {rtt:g} ms RTT",
                               f"{dep['marginal_ms']:.1f} ms ({per:.2f} RTT timed)",
                               f"{c_per:.2f} RTT counted", c_per <= 1.1))
            rows.append(Target("latency", f"fixed cost of a run <= 10 RTT at {rtt:g} ms RTT",
                               f"1-step run {fmt_s(dep['wall_1_s'])} ({fixed:.1f} RTT timed)",
                               f"{c_fixed:g} RTT counted", c_fixed <= 10))
            continue
        rows.append(Target("latency", f"per step <= 1.1 RTT at {rtt:g} ms RTT",
                           f"{dep['marginal_ms']:.1f} ms", f"{per:.2f} RTT", per <= 1.1))
        rows.append(Target("latency", f"fixed cost of a run <= 10 RTT at {rtt:g} ms RTT",
                           f"1-step run {fmt_s(dep['wall_1_s'])}", f"{fixed:.1f} RTT",
                           fixed <= 10))
    fleet = sec.get("fleet")
    if fleet:
        ratio = fleet["fleet_s"] / fleet["single_s"]
        rows.append(Target("latency", f"{fleet['hosts']} hosts at {fleet['rtt_ms']:g} ms RTT "
                           "<= 1.5x one host", f"{fmt_s(fleet['fleet_s'])} vs "
                           f"{fmt_s(fleet['single_s'])}", f"{ratio:.2f}x", ratio <= 1.5))
    return rows


MIB_TO_MB = 1.048576
GROUP_TITLES = {
    "latency": "Behind real latency (relay)",
    "per_step": "Per-step cost against raw paramiko",
    "tools": "Against ansible-playbook and pyinfra",
    "heavy": "Heavy ~/.bashrc",
    "fanout": "Fan-out",
    "plan": "Plan of a 2,000-step runbook",
    "startup": "Startup",
    "memory": "Memory while streaming",
}


def analysis_sections(path: Path) -> dict[str, str]:
    """ANALYSIS.md split at its ``<!-- analysis: GROUP -->`` markers. Text before the
    first marker is about the file itself and is not copied into results."""
    sections: dict[str, str] = {}
    if not path.exists():
        return sections
    key: str | None = None
    lines: list[str] = []
    for line in path.read_text().splitlines() + ["<!-- analysis: end -->"]:
        stripped = line.strip()
        if stripped.startswith("<!-- analysis:") and stripped.endswith("-->"):
            if key is not None:
                sections[key] = "\n".join(lines).strip()
            key = stripped[len("<!-- analysis:"):-3].strip()
            lines = []
        else:
            lines.append(line)
    return sections


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "n/a"
    return f"{fmt.format(min(values))}-{fmt.format(max(values))}"


def measured_facts(group: str, r: dict[str, Any]) -> list[str]:
    """Sentences computed from this run's figures that bear on a group's targets."""
    facts: list[str] = []
    lat = r.get("latency") or {}
    fleet = lat.get("fleet") or {}
    if group == "latency" and fleet.get("sizes"):
        cores = fleet.get("cores", 1)
        for size in fleet["sizes"]:
            if "machine_cpu_s" in size:
                facts.append(f"{size['hosts']} hosts: wall {size['wall_s']:.2f} s, the "
                             f"machine's CPU over its {cores} cores "
                             f"{size['machine_cpu_s'] / cores:.2f} s (deployer "
                             f"{size['cpu_s']:.2f} s, the hosts' sshds "
                             f"{size.get('sshd_cpu_s', 0):.2f} s).")
    light, heavy = r.get("light") or {}, r.get("heavy") or {}
    if group == "per_step" and light:
        dep = light["deployer"]
        runs, floors = dep.get("runs_ms", []), dep.get("paired_floors_ms", [])
        ratios = [a / b for a, b in zip(runs, floors, strict=False) if b]
        facts.append(f"deployer {dep['marginal_ms']:.2f} ms a step (repeats "
                     f"{_spread(runs)} ms); the floor timed right after each pair "
                     f"{_spread(floors)} ms; per-repeat ratios {_spread(ratios)}x, median "
                     f"{dep.get('paired_ratio', float('nan')):.2f}x.")
        local = light.get("deployer_local_only")
        if local:
            cost = dep["marginal_ms"] - local["marginal_ms"]
            facts.append(f"Keeping the run on the host costs {cost:.2f} ms a step "
                         f"({local['marginal_ms']:.2f} ms a step with host_state=false): "
                         "a posted journal line and audit lines a transition, riding in "
                         "front of the next step (no round trip of their own).")
        facts.append(f"For the 1.3x target deployer needed <= "
                     f"{1.3 * dep.get('paired_floor_ms', light['paramiko_nodelay_ms']):.2f} "
                     "ms a step in this run.")
    if group == "tools" and light:
        d = light["deployer"]["marginal_ms"]
        if "ansible" in light:
            a = light["ansible"]["marginal_ms"]
            facts.append(f"ansible-playbook `command:` cost {a:.1f} ms a task, so 50x needed "
                         f"deployer <= {a / 50:.2f} ms a step; it took {d:.2f} ms.")
        if "pyinfra" in light:
            p = light["pyinfra"]["marginal_ms"]
            facts.append(f"pyinfra `server.shell` cost {p:.1f} ms an operation, so 10x needed "
                         f"deployer <= {p / 10:.2f} ms a step; it took {d:.2f} ms.")
    if group == "heavy" and heavy and light:
        rc = heavy["paramiko_nodelay_ms"] - light["paramiko_nodelay_ms"]
        extra = heavy["deployer"]["marginal_ms"] - light["deployer"]["marginal_ms"]
        facts.append(f"The heavy rc added {rc:.1f} ms to every raw `exec_command` "
                     f"(heavy minus light floor) and {extra:.2f} ms to deployer's step.")
    fan = r.get("fanout")
    if group == "fanout" and fan and "fan_machine_cpu_s" in fan:
        cores, n = fan["cores"], fan["hosts"]
        floor = fan["fan_machine_cpu_s"] / cores
        wall = fan["deployer_fan_s"]
        others = fan["fan_machine_cpu_s"] - fan["fan_deployer_cpu_s"] - fan["fan_sshd_cpu_s"]
        facts.append(f"The {n}-host run kept the machine's CPUs busy for "
                     f"{fan['fan_machine_cpu_s']:.2f} s: the {n} hosts' sshd sessions and "
                     f"shells {fan['fan_sshd_cpu_s']:.2f} s, deployer "
                     f"{fan['fan_deployer_cpu_s']:.2f} s, the rest "
                     f"{max(others, 0):.2f} s.")
        if wall <= floor * 1.15:
            facts.append(f"With {cores} cores that work needs at least {floor:.2f} s; the "
                         f"wall was {wall:.2f} s ({wall / floor:.2f}x that floor), so the run "
                         "was CPU-bound: the cores were busy nearly the whole time.")
        else:
            facts.append(f"With {cores} cores that work needs at least {floor:.2f} s; the "
                         f"wall was {wall:.2f} s ({wall / floor:.2f}x that floor), so "
                         f"{wall - floor:.2f} s of the wall is not explained by CPU.")
        per_host = (fan["fan_deployer_cpu_s"] - fan["single_deployer_cpu_s"]) / max(n - 1, 1)
        alone = fan["fan_deployer_cpu_s"] / cores
        facts.append(f"deployer's own CPU per extra host: {per_host * 1000:.0f} ms. Were the "
                     f"hosts other machines, the floor would be deployer's CPU alone, "
                     f"{alone:.2f} s on {cores} cores ({alone / fan['deployer_single_s']:.2f}x "
                     "the single-host wall).")
    plan = r.get("plan")
    if group == "plan" and plan:
        per = (plan["plan_2000_s"] - plan["plan_1_s"]) * 1000 / 1999
        facts.append(f"A 1-step plan took {fmt_s(plan['plan_1_s'])} (startup, inventory, "
                     f"one host) and the 2,000-step plan {fmt_s(plan['plan_2000_s'])}: "
                     f"{per:.3f} ms for each further step (parse, render, draw).")
    if group == "startup" and plan:
        facts.append(f"`deployer --help` {fmt_s(plan['help_s'])} against "
                     f"{fmt_s(plan['python_startup_s'])} for `python -c pass`: "
                     f"{(plan['help_s'] - plan['python_startup_s']) * 1000:.0f} ms are "
                     "deployer's own imports and argument parsing.")
    mem = r.get("memory")
    if group == "memory" and mem:
        runs = mem["peak_rss_runs_mib"]
        facts.append(f"Peak RSS {mem['peak_rss_mib']:.0f} MiB median of {len(runs)} runs "
                     f"(runs {', '.join(f'{x:.0f}' for x in runs)} MiB; largest "
                     f"{max(runs):.0f} MiB); a 1-step run peaks at "
                     f"{mem['one_step_rss_mib']:.0f} MiB, so streaming 200 MiB added "
                     f"{mem['peak_rss_mib'] - mem['one_step_rss_mib']:.0f} MiB.")
    return facts


def render_analysis(r: dict[str, Any], rows: list[Target]) -> list[str]:
    """Per group of targets: the status computed from this run, the figures that bear on
    it, then the explanation from ANALYSIS.md (which states no status of its own)."""
    static = analysis_sections(BENCH / "ANALYSIS.md")
    missed = [t.name for t in rows if t.met is False]
    unmeasured = [t.name for t in rows if t.met is None]
    measured = len(rows) - len(unmeasured)
    summary = f"{measured - len(missed)} of {measured} measured targets met in this run"
    summary += f"; missed: {'; '.join(missed)}" if missed else ""
    summary += f"; not measured: {'; '.join(unmeasured)}" if unmeasured else ""
    out = ["", "## Analysis", "", summary + ".",
           "",
           "For each group below: the status and figures are computed from this run; the "
           "text after them is bench/ANALYSIS.md, which explains what the figure is made "
           "of and what would lower it, whatever a given run measures."]
    groups = list(dict.fromkeys(t.group for t in rows))
    for group in groups:
        out += ["", f"### {GROUP_TITLES.get(group, group)}", ""]
        for t in rows:
            if t.group == group:
                status = ("not measured" if t.met is None else "met" if t.met
                          else "**missed**")
                out.append(f"- {t.name}: {status} in this run: {t.measured}; {t.ratio}")
        out += [f"- {fact}" for fact in measured_facts(group, r)]
        if static.get(group):
            out += ["", static[group]]
    return out


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    out = [
        "# deployer benchmark results",
        "",
        f"- date: {r['date']}",
        f"- machine: {m.get('cores')} cores ({m.get('cpu', '?')}), {m.get('memory', '?')} "
        f"RAM, Linux {m.get('kernel')}",
        f"- software: Python {m.get('python')}, {m.get('openssh')}, paramiko "
        f"{m.get('paramiko')}, Fabric {m.get('fabric')}, {r['tools']['ansible']}, "
        f"{r['tools']['pyinfra']}",
        f"- command: `{r['command']}`",
        f"- code measured: commit {r.get('checkout', 'unknown')}",
        f"- load average (1, 5, 15 min) when the run started: "
        f"{r.get('load', {}).get('start', 'n/a')}; after each section (including the "
        "benchmark's own work): "
        + (", ".join(f"{k} {v}" for k, v in r.get("load", {}).items() if k != "start")
           or "n/a"),
        f"- medians of {r['repeat']} runs; {r['steps']} trivial steps (`true`) per per-step "
        "measurement; all over loopback OpenSSH sshd started by the benchmark",
        f"- heavy rc: `~/.bashrc` running a {r['rc_loops']}-iteration shell loop "
        f"(~{HEAVY_RC_MS:.0f} ms of real work per shell start)",
        "",
        "## Targets",
        "",
        "| target | measured | ratio | met |",
        "|---|---|---|---|",
    ]
    target_rows = targets(r)
    for t in target_rows:
        mark = "n/a" if t.met is None else ("yes" if t.met else "**no**")
        out.append(f"| {t.name} | {t.measured} | {t.ratio} | {mark} |")

    for key, title in (("light", "light login shell (empty ~/.bashrc)"),
                       ("heavy", "heavy ~/.bashrc")):
        sec = r.get(key)
        if not sec:
            continue
        d = sec["deployer"]["marginal_ms"]
        out += ["", f"## Per-step cost, {title}", "",
                "Marginal milliseconds of one more trivial step on one host. deployer: "
                "real `deployer run` of a 101-step runbook minus a 1-step runbook, "
                "divided by 100 (startup, connect, lock and summary cancel out). "
                "Library loops: one live connection, one `true` per iteration.", "",
                "| tool | ms per step | vs deployer |", "|---|---|---|"]
        rows = [
            ("deployer `run` (persistent remote shell, TCP_NODELAY)", d),
            ("raw paramiko `exec_command`, TCP_NODELAY socket (the floor)",
             sec["paramiko_nodelay_ms"]),
            ("raw paramiko `exec_command`, default socket", sec["paramiko_default_ms"]),
            ("Fabric `Connection.run` (defaults)", sec["fabric_ms"]),
            ("OpenSSH `ssh` with ControlMaster/ControlPersist", sec["openssh_cm_ms"]),
        ]
        if "ansible" in sec:
            rows.append(("ansible-playbook `command:` (pipelining)",
                         sec["ansible"]["marginal_ms"]))
        if "pyinfra" in sec:
            rows.append(("pyinfra `server.shell`", sec["pyinfra"]["marginal_ms"]))
        for name, v in rows:
            out.append(f"| {name} | {v:.2f} | {v / d:.1f}x |")
        dep = sec["deployer"]
        out += ["", f"deployer walls: 1 step {fmt_s(dep['wall_1_s'])}, 101 steps "
                    f"{fmt_s(dep['wall_101_s'])}. Per repeat, deployer ms/step: "
                    + ", ".join(f"{x:.2f}" for x in dep.get("runs_ms", []))
                    + "; raw paramiko TCP_NODELAY timed right after each pair: "
                    + ", ".join(f"{x:.2f}" for x in dep.get("paired_floors_ms", []))
                    + f" (median ratio {dep.get('paired_ratio', float('nan')):.2f}x)."]
        many = r["steps"] + 1
        if "ansible" in sec:
            a = sec["ansible"]
            out.append(f"ansible-playbook walls: 1 task {fmt_s(a['wall_1_s'])}, "
                       f"{many} tasks {fmt_s(a[f'wall_{many}_s'])}.")
        if "pyinfra" in sec:
            p = sec["pyinfra"]
            out.append(f"pyinfra walls: 1 op {fmt_s(p['wall_1_s'])}, {many} ops "
                       f"{fmt_s(p[f'wall_{many}_s'])}.")
    fan = r.get("fanout")
    if fan:
        out += ["", f"## Fan-out: {fan['hosts']} hosts x {fan['steps']} steps", "",
                f"{fan['hosts']} loopback addresses (127.0.1.x) served by "
                f"{-(-fan['hosts'] // MAX_ADDRESSES)} sshd processes on this same machine, "
                "so the hosts' sshd and shells compete with deployer for the same cores.", "",
                "| | 1 host | all hosts | ratio |", "|---|---|---|---|",
                f"| deployer `--parallel {fan['hosts']}` | {fmt_s(fan['deployer_single_s'])} | "
                f"{fmt_s(fan['deployer_fan_s'])} | "
                f"{fan['deployer_fan_s'] / fan['deployer_single_s']:.2f}x |"]
        if "ansible_fan_s" in fan:
            out.append(f"| ansible-playbook `forks={fan['hosts']}` | "
                       f"{fmt_s(fan['ansible_single_s'])} | {fmt_s(fan['ansible_fan_s'])} | "
                       f"{fan['ansible_fan_s'] / fan['ansible_single_s']:.2f}x |")
            out.append("")
            out.append(f"deployer's {fan['hosts']}-host wall is "
                       f"{fan['ansible_fan_s'] / fan['deployer_fan_s']:.1f}x shorter than "
                       "Ansible's.")
    if fan and "fan_machine_cpu_s" in fan:
        cores = fan["cores"]
        out += ["", "CPU seconds used during one run (medians), and the shortest wall the "
                f"machine's {cores} cores allow for that much work:", "",
                "| | deployer process | sshd sessions + remote shells | whole machine "
                "(all tenants) | CPU-bound floor (machine / cores) |", "|---|---|---|---|---|"]
        for key, label in (("single", "1 host"), ("fan", f"{fan['hosts']} hosts")):
            out.append(f"| {label} | {fan[f'{key}_deployer_cpu_s']:.2f} s | "
                       f"{fan[f'{key}_sshd_cpu_s']:.2f} s | {fan[f'{key}_machine_cpu_s']:.2f} s "
                       f"| {fan[f'{key}_machine_cpu_s'] / cores:.2f} s |")
    plan = r.get("plan")
    if plan:
        out += ["", "## Plan and startup", "", "| command | wall |", "|---|---|",
                f"| `deployer plan big2000` (2,000 templated steps, output to /dev/null) | "
                f"{fmt_s(plan['plan_2000_s'])} |",
                f"| `deployer plan steps1` (1 step) | {fmt_s(plan['plan_1_s'])} |",
                f"| `deployer {plan['plan_first_time_cmd']}` | "
                f"{fmt_s(plan['plan_first_time_s'])} |",
                f"| `deployer --help` | {fmt_s(plan['help_s'])} |",
                f"| `python -c pass` (interpreter floor) | {fmt_s(plan['python_startup_s'])} |"]
    lat = r.get("latency")
    if lat:
        out += ["", "## Behind real latency", "",
                "The light sshd reached through bench/relay.py, which delays every chunk by "
                "RTT/2 in each direction (userspace, loopback only: the kernel has no netem). "
                "In RTT: (figure through the relay - the same figure direct on loopback, "
                "measured in this run) / RTT, i.e. the round trips the tool waited for. "
                f"deployer per step over {lat['steps']} steps, ansible and pyinfra over "
                f"{lat['tool_steps']}.", "", "| figure | measured | in RTT |", "|---|---|---|"]
        out += [f"| {name} | {value} | {rtts} |" for name, value, rtts in latency.rows(lat)]
        counted = [(r["rtt_ms"], r["counted"]) for r in lat["by_rtt"] if r.get("counted")]
        if counted:
            out += ["", "Round trips counted at the relay (each time the client sent again "
                    "after the server had answered; bench/relay.py `round_trips`), one run "
                    "each: independent of this machine's speed and load.", "",
                    "| RTT | deployer 1-step run | deployer per step | raw paramiko connect "
                    "+ 1 command | raw paramiko per command |", "|---|---|---|---|---|"]
            out += [f"| {rtt:g} ms | {c['deployer_run_1']} | {c['deployer_per_step']:.2f} | "
                    f"{c['paramiko_connect_1']} | {c['paramiko_per_step']:.2f} |"
                    for rtt, c in counted]
        fleet = lat.get("fleet")
        if fleet and "sizes" in fleet:
            out += ["", latency.fleet_intro(fleet), "", *latency.fleet_rows(fleet)]
        elif fleet:
            out += ["", f"Fleet: {fleet['hosts']} hosts x {fleet['steps']} steps, each behind "
                    f"its own relayed address at {fleet['rtt_ms']:g} ms RTT: one host "
                    f"{fmt_s(fleet['single_s'])}, all hosts {fmt_s(fleet['fleet_s'])} "
                    f"({fleet['fleet_s'] / fleet['single_s']:.2f}x)."]
    mem = r.get("memory")
    if mem:
        out += ["", "## Memory while streaming", "",
                f"One step printing {STREAM_BYTES // 1024 // 1024} MiB (about 2 million "
                "100-byte lines) through `deployer run`, its stdout to /dev/null (the full "
                "redacted log is still written to .deployer/runs/). Peak RSS is the "
                "process's ru_maxrss; 1 MiB = 1.048576 MB.", "",
                f"- peak RSS, median of {len(mem['peak_rss_runs_mib'])} runs: "
                f"{mem['peak_rss_mib']:.0f} MiB ({mem['peak_rss_mib'] * MIB_TO_MB:.0f} MB)",
                f"- peak RSS, largest single run: "
                f"{max(mem['peak_rss_runs_mib']):.0f} MiB (runs: "
                + ", ".join(f"{x:.0f}" for x in mem["peak_rss_runs_mib"]) + " MiB)",
                f"- a 1-step run for comparison (median): {mem['one_step_rss_mib']:.0f} MiB",
                f"- wall {fmt_s(mem['stream_wall_s'])} (median), "
                f"{mem['throughput_mib_s']:.0f} MiB/s"]
    notes = list(r["notes"])
    start = r.get("load", {}).get("start")
    if start and float(start.split()[0]) >= 0.75 * int(m.get("cores") or 1):
        # Before the first section the benchmark has done nothing heavy yet, so this
        # load is other work sharing the cores (later figures include the benchmark's).
        notes.append(f"the machine was shared: the 1-minute load average was "
                     f"{start.split()[0]} on {m.get('cores')} cores when the run started, "
                     "so walls include waiting for CPU taken by other work; ratios "
                     "measured side by side are affected less than absolute times")
    if notes:
        out += ["", "## Notes from this run", ""] + [f"- {n}" for n in notes]
    out += render_analysis(r, target_rows)
    return "\n".join(out) + "\n"


# -- main -------------------------------------------------------------------------------


SECTIONS = ("steps", "heavy", "fanout", "plan", "memory", "latency")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="deployer benchmark (see bench/README.md)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--steps", type=int, default=100, help="steps per per-step figure")
    parser.add_argument("--hosts", type=int, default=50, help="hosts in the fan-out")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--rtts", default="10,50",
                        help="round-trip times (ms) of the latency section's relays")
    parser.add_argument("--fleet-hosts", default="50,200",
                        help="fleet sizes the latency section runs behind relays")
    parser.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    parser.add_argument("--json", default=str(BENCH / "results.json"))
    parser.add_argument("--setup-venv", action="store_true",
                        help="(re)install ansible-core and pyinfra into bench/.venv")
    parser.add_argument("--no-venv", action="store_true",
                        help="do not install ansible/pyinfra; skip them if absent")
    parser.add_argument("--no-tools", action="store_true",
                        help="leave ansible-playbook and pyinfra out (quick runs)")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite --out from --json (e.g. after editing ANALYSIS.md)")
    args = parser.parse_args(argv)
    if args.render_only:
        results = json.loads(Path(args.json).read_text())
        Path(args.out).write_text(render(results))
        log(f"rewrote {args.out} from {args.json}")
        return 0
    global NO_TOOLS, LAUNCHER
    NO_TOOLS = args.no_tools
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.repeat < 5:
        log("note: fewer than 5 runs per figure; the issue asks for medians of >= 5")
    notes: list[str] = []
    if not args.no_venv and not args.no_tools:
        note = setup_venv(force=args.setup_venv)
        if "failed" in note or "could not" in note:
            notes.append(note)
    results: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine_info(),
        "tools": {"ansible": tool_version("ansible-playbook").replace("[", "").replace(
            "]", ""), "pyinfra": tool_version("pyinfra")},
        "command": "python bench/run.py " + " ".join(argv if argv is not None
                                                     else sys.argv[1:]),
        "repeat": args.repeat,
        "steps": args.steps,
        "notes": notes,
        "checkout": checkout_info(),
        "load": {"start": load_avg()},
    }
    results["command"] = results["command"].strip()
    if args.no_tools:
        notes.append("ansible-playbook and pyinfra were left out of this run (--no-tools)")
    else:
        if not tool("ansible-playbook"):
            notes.append("ansible-playbook is not installed in bench/.venv: its figures are "
                         "missing (run `python bench/run.py --setup-venv`)")
        if not tool("pyinfra"):
            notes.append("pyinfra is not installed in bench/.venv: its figures are missing")
    work = Path(tempfile.mkdtemp(prefix="deployer-bench-"))
    LAUNCHER = write_launcher(work)
    lab = None
    try:
        fleets = [int(x) for x in args.fleet_hosts.split(",") if x.strip()]
        hosts = args.hosts if only & {"fanout", "latency"} else 1
        if "latency" in only:
            hosts = max([hosts, *fleets])
        lab = Lab(work, hosts, fan_group=args.hosts)
        results["rc_loops"] = lab.rc_loops
        sections: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
            "steps": ("light", lambda: per_step_section(lab, lab.light, "light", "light",
                                                        args.steps, args.repeat, notes)),
            "heavy": ("heavy", lambda: per_step_section(lab, lab.heavy, "heavy", "heavy",
                                                        args.steps, args.repeat, notes)),
            "fanout": ("fanout", lambda: fanout_section(lab, args.repeat, notes)),
            "plan": ("plan", lambda: plan_section(lab, args.repeat, notes)),
            "memory": ("memory", lambda: memory_section(lab, args.repeat)),
            "latency": ("latency", lambda: latency.latency_section(
                sys.modules[__name__], lab, [float(x) for x in args.rtts.split(",")],
                args.steps, args.repeat, notes, fleets=fleets)),
        }
        for section in SECTIONS:
            if section in only:
                key, measure = sections[section]
                results[key] = measure()
                results["load"][section] = load_avg()
    finally:
        if lab is not None:
            lab.stop()
        shutil.rmtree(work, ignore_errors=True)
    Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = render(results)
    Path(args.out).write_text(text)
    print(text)
    missed = [t for t in targets(results) if t.met is False]
    log(f"wrote {args.out}; {len(missed)} target(s) missed")
    return 0


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard:
        # Fan-out holds many connections and pipes at once.
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    sys.exit(main())
