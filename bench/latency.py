"""The benchmark's real-latency section: the same hosts reached through bench/relay.py at
fixed round-trip times, so fixed and per-step costs can be stated in round trips (RTT).

A cost in RTT is (wall through the relay - the same wall direct on loopback) / RTT: the
number of round trips the tool waits for, independent of this machine's CPU speed. Every
figure of a tool is taken in the same run, side by side with the floors (raw paramiko,
OpenSSH ControlMaster), each on its own connection through the same relay.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType
from typing import Any

from relay import Mapping, Relay, start_relay


class RelayedServer:
    """An sshd as seen through a relay port: the attributes bench/run.py's measuring
    functions use (address, port, user, client_key, known_hosts, ssh_argv)."""

    def __init__(self, server: Any, address: str, port: int, work: Path) -> None:
        self.inner = server
        self.address = address
        self.port = port
        self.user = server.user
        self.client_key = server.client_key
        self.pid = server.pid
        self.known_hosts = str(work / f"known_hosts-{address}-{port}")
        # The host key is the sshd's; only the [address]:port the client asks for differs.
        Path(self.known_hosts).write_text(f"[{address}]:{port} {server.host_key_line}\n")

    def ssh_argv(self, address: str | None = None) -> list[str]:
        argv = self.inner.ssh_argv(address or self.address)
        argv[argv.index("-p") + 1] = str(self.port)
        for i, item in enumerate(argv):
            if item.startswith("UserKnownHostsFile="):
                argv[i] = f"UserKnownHostsFile={self.known_hosts}"
        return argv


class LatencyLab:
    """Relays in front of the lab's light sshd (one per RTT) and, at the fleet RTT, in
    front of every fan-out address; registers them as inventory hosts."""

    def __init__(self, lab: Any, rtts: list[float], fleet_rtt: float | None) -> None:
        self.lab = lab
        self.relays: list[Relay] = []
        self.single: dict[float, tuple[str, RelayedServer]] = {}
        self.fleet_names: list[str] = []
        self.fleet_rtt = fleet_rtt
        hosts: dict[str, dict[str, Any]] = {}
        for rtt in rtts:
            relay = self._start([Mapping("127.0.0.1", 0, "127.0.0.1", lab.light.port)], rtt)
            server = RelayedServer(lab.light, "127.0.0.1", relay.ports[0], lab.work)
            name = f"rtt{rtt:g}"
            self.single[rtt] = (name, server)
            hosts[name] = lab.host_entry(server, "127.0.0.1", [])
        if fleet_rtt is not None and lab.fan_addresses:
            # 127.0.3.x listens for 127.0.1.x, so every fleet host has its own address
            # and relay connection, as distinct VPSs would.
            maps = [Mapping(a.replace("127.0.1.", "127.0.3.", 1), 0, a, lab.fan[a].port)
                    for a in lab.fan_addresses]
            relay = self._start(maps, fleet_rtt)
            for i, (m, port) in enumerate(zip(maps, relay.ports, strict=True), start=1):
                server = RelayedServer(lab.fan[m.target_host], m.listen_host, port, lab.work)
                name = f"lfan{i:03d}"
                self.fleet_names.append(name)
                hosts[name] = lab.host_entry(server, m.listen_host, ["lfan"])
        lab.add_hosts(hosts, groups=["lfan"])

    def _start(self, maps: list[Mapping], rtt: float) -> Relay:
        relay = start_relay(maps, rtt / 2)
        self.relays.append(relay)
        return relay

    def stop(self) -> None:
        for relay in self.relays:
            relay.stop()


def _connect_one_ms(m: ModuleType, server: Any, repeat: int) -> float:
    """Raw paramiko from nothing to one command's exit status: the floor of a 1-step run."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        client = m._paramiko_client(server, nodelay=True)
        _, out, _ = client.exec_command("true")
        out.channel.recv_exit_status()
        client.close()
        runs.append((time.perf_counter() - start) * 1000)
    return m.median(runs)


def _per_rtt(m: ModuleType, lab: Any, rtt: float, name: str, server: Any, steps: int,
             tool_steps: int, repeat: int, notes: list[str]) -> dict[str, Any]:
    m.log(f"latency {rtt:g} ms: deployer")
    out: dict[str, Any] = {"rtt_ms": rtt,
                           "deployer": m.deployer_marginal_ms(lab, server, name, steps,
                                                              repeat)}
    m.log(f"latency {rtt:g} ms: paramiko, openssh")
    out["paramiko_nodelay_ms"] = m.raw_paramiko_ms(server, steps, repeat, nodelay=True)
    out["openssh_cm_ms"] = m.openssh_cm_ms(server, lab.work, steps, repeat)
    out["paramiko_connect_one_ms"] = _connect_one_ms(m, server, repeat)
    for tool, fn in (("ansible", m.ansible_marginal_ms), ("pyinfra", m.pyinfra_marginal_ms)):
        if m.tool(f"{tool}-playbook" if tool == "ansible" else tool):
            m.log(f"latency {rtt:g} ms: {tool}")
            try:
                out[tool] = fn(lab, server, f"rtt{rtt:g}", tool_steps, repeat)
            except RuntimeError as exc:
                notes.append(f"{tool} at {rtt:g} ms RTT failed: {exc}")
    return out


def _fleet(m: ModuleType, lab: Any, latency: LatencyLab, repeat: int) -> dict[str, Any]:
    env = m.clean_env()
    n = len(latency.fleet_names)
    one = lab.deployer("run", "fan20", "--host", latency.fleet_names[0])
    fleet = lab.deployer("run", "fan20", "--host", "lfan", "--parallel", str(n),
                         "--max-fail", "100%")
    m.log(f"latency fleet: 1 and {n} hosts at {latency.fleet_rtt:g} ms RTT")
    m.timed(one, env)
    m.timed(fleet, env)
    singles, fleets = [], []
    for _ in range(repeat):
        singles.append(m.timed(one, env))
        fleets.append(m.timed(fleet, env))
    return {"rtt_ms": latency.fleet_rtt, "hosts": n, "steps": 20,
            "single_s": m.median(singles), "fleet_s": m.median(fleets)}


def latency_section(m: ModuleType, lab: Any, rtts: list[float], steps: int, repeat: int,
                    notes: list[str]) -> dict[str, Any]:
    """Direct loopback figures first, then the same figures through each relay."""
    fleet_rtt = max(rtts) if lab.fan_addresses else None
    latency = LatencyLab(lab, rtts, fleet_rtt)
    tool_steps = max(5, steps // 5)  # Ansible pays seconds per task behind a long link
    try:
        m.log("latency: direct loopback baseline")
        direct = _per_rtt(m, lab, 0, "light", lab.light, steps, tool_steps, repeat, notes)
        out: dict[str, Any] = {"direct": direct, "steps": steps, "tool_steps": tool_steps,
                               "by_rtt": [_per_rtt(m, lab, rtt, *latency.single[rtt], steps,
                                                   tool_steps, repeat, notes)
                                          for rtt in rtts]}
        if fleet_rtt is not None:
            out["fleet"] = _fleet(m, lab, latency, repeat)
        return out
    finally:
        latency.stop()


def in_rtt(ms_relayed: float, ms_direct: float, rtt: float) -> float:
    """Round trips a cost waits for: the time latency added, divided by one RTT."""
    return (ms_relayed - ms_direct) / rtt


def rows(sec: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, in RTT) rows for RESULTS.md, per RTT; the value column also gives
    the plain value / RTT, the measure that counts local CPU time as round trips."""
    d = sec["direct"]
    table: list[tuple[str, str, str]] = []
    for r in sec["by_rtt"]:
        rtt = r["rtt_ms"]
        tag = f"{rtt:g} ms RTT"
        dep, ddep = r["deployer"], d["deployer"]
        table.append((f"{tag}: deployer, one more trivial step", f"{dep['marginal_ms']:.1f} ms",
                      f"{in_rtt(dep['marginal_ms'], ddep['marginal_ms'], rtt):.2f}"))
        table.append((f"{tag}: raw paramiko exec_command (TCP_NODELAY), per step",
                      f"{r['paramiko_nodelay_ms']:.1f} ms",
                      f"{in_rtt(r['paramiko_nodelay_ms'], d['paramiko_nodelay_ms'], rtt):.2f}"))
        table.append((f"{tag}: OpenSSH ControlMaster, per step", f"{r['openssh_cm_ms']:.1f} ms",
                      f"{in_rtt(r['openssh_cm_ms'], d['openssh_cm_ms'], rtt):.2f}"))
        for tool in ("ansible", "pyinfra"):
            if tool in r and tool in d:
                table.append((f"{tag}: {tool}, per step", f"{r[tool]['marginal_ms']:.1f} ms",
                              f"{in_rtt(r[tool]['marginal_ms'], d[tool]['marginal_ms'], rtt):.2f}"))
        wall, dwall = dep["wall_1_s"] * 1000, ddep["wall_1_s"] * 1000
        table.append((f"{tag}: deployer 1-step run, whole wall", f"{wall:.0f} ms",
                      f"{in_rtt(wall, dwall, rtt):.1f}"))
        one, done = r["paramiko_connect_one_ms"], d["paramiko_connect_one_ms"]
        table.append((f"{tag}: raw paramiko connect + 1 command", f"{one:.0f} ms",
                      f"{in_rtt(one, done, rtt):.1f}"))
    return [(name, f"{value} ({_plain(value, rtt_of(name))} RTT plain)", added)
            for name, value, added in table]


def rtt_of(name: str) -> float:
    return float(name.split(" ms RTT", 1)[0])


def _plain(value: str, rtt: float) -> str:
    return f"{float(value.split()[0]) / rtt:.2f}"
