"""The shipped `restart`'s orchestration cost behind a real-latency link: its wall time
minus the time its commands took on the host, and the round trips it waited for.

On the sandbox VPS of this checkout (`scripts/sandbox up`; the app of
``.sandbox/inventory.yml``, deployed with `first-time` first if it is not yet), it runs
`deployer run restart --host sandbox` ``--runs`` times directly and ``--runs`` times
through bench/relay.py at each ``--rtts`` (a copy of the inventory points at the relay;
host keys are checked as usual). Each run is the real CLI, in this process, so every
command can be timed:

- **host**: the seconds each remote command took on the host, by the host's own clock
  (``RunResult.host_seconds``: the agent's ``$EPOCHREALTIME`` around each command,
  posted ones included);
- **local**: commands that run on this machine (the HTTP checks of the verification,
  local processes), which wait for the app, not for the link;
- **orchestration** = wall - host - local: connecting, the lock, the preflight, the
  records, the round trips between commands, deployer's own CPU;
- **round trips** counted at the relay (``relay.round_trips``), immune to CPU load.

The peers' figure for the same restart is derived, not run: the restart's number of
remote commands times each tool's per-command cost at that RTT from bench/run.py's
latency section (``bench/results.json``), plus its connect cost, because replaying a
deploy's commands through another tool would take the lock and write the host state
a second time.

    python bench/orchestration.py --rtts 50 --runs 3
    python bench/orchestration.py --render-only   # after a new bench/run.py results.json

Writes ``bench/orchestration.json`` and the section of bench/RESULTS.md between
``<!-- orchestration:start -->`` and ``<!-- orchestration:end -->``. It asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import yaml  # noqa: E402
from relay import Mapping, round_trips, start_relay  # noqa: E402

START, END = "<!-- orchestration:start -->", "<!-- orchestration:end -->"
WHY = ("Where the round trips are: the connection and the remote shell (6-7), the "
       "preflight with the lock and the facts posted ahead of it (1), then one per remote "
       "command of the restart's steps (checkpoints, captures and host state writes ride "
       "along, uploads of up to 64 KiB cost one), and the release with the last snapshot "
       "(1). What would close the gap: fewer commands per restart (the runbook's own "
       "preflight steps repeat the executor's probes of docker, compose and the disk, and "
       "each verification check is a command of its own), and sending the next step's "
       "frame before the previous one's answer when nothing in it depends on that answer "
       "(guarded on the previous frame's exit code in the remote shell). The latter needs "
       "the record to know the step started before its frame leaves, so a killed run still "
       "resumes exactly; it is not done.")


class Clock:
    """Sums what a run's commands took: on the host, and locally."""

    def __init__(self) -> None:
        self.host = 0.0
        self.local = 0.0
        self.remote_commands = 0
        self.untimed = 0  # remote commands whose host gave no time (bash < 5)

    def heard(self, result: Any) -> None:
        if result is None:
            return
        self.remote_commands += 1
        if result.host_seconds is None:
            self.untimed += 1
        else:
            self.host += result.host_seconds


@contextlib.contextmanager
def clocked(clock: Clock) -> Iterator[None]:
    """Wrap the transport and the performer's local primitives for one run."""
    from deployer import perform
    from deployer.ssh import posted, transport

    saved = [(transport.SSHTransport, "run", transport.SSHTransport.run),
             (posted, "notify", posted.notify),
             (transport, "notify", transport.notify)]
    for name in ("local_process", "http", "poll"):
        saved.append((perform.Performer, name, getattr(perform.Performer, name)))

    def run(self: Any, *a: Any, **kw: Any) -> Any:
        result = saved[0][2](self, *a, **kw)
        clock.heard(result)
        return result

    def notify(p: Any, result: Any) -> None:
        clock.heard(result)
        saved[1][2](p, result)

    def local(original: Any) -> Any:
        def timed(self: Any, *a: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(self, *a, **kw)
            finally:
                clock.local += time.perf_counter() - start
        return timed

    transport.SSHTransport.run = run  # type: ignore[method-assign]
    posted.notify = notify
    transport.notify = notify  # type: ignore[attr-defined]
    for owner, name, original in saved[3:]:
        setattr(owner, name, local(original))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def deployer(args: list[str]) -> tuple[int, str]:
    from deployer.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(args)
    return code, out.getvalue()


def relayed_inventory(inventory: Path, port: int, work: Path) -> Path:
    """The sandbox inventory with its host behind the relay's ``port``."""
    data = yaml.safe_load(inventory.read_text())
    host = data["hosts"]["sandbox"]
    key = Path(host["known_hosts"]).read_text().split(None, 1)[1]
    known = work / f"known_hosts-{port}"
    known.write_text(f"[127.0.0.1]:{port} {key}")
    host.update(port=port, known_hosts=str(known))
    out = work / f"inventory-{port}.yml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def measure(inventory: Path, trace: Path | None) -> dict[str, float]:
    """One `restart`: wall, host, local and orchestration seconds, round trips."""
    clock = Clock()
    if trace is not None:
        trace.write_text("")
    start = time.perf_counter()
    with clocked(clock):
        code, output = deployer(["-C", str(ROOT), "-i", str(inventory), "run", "restart",
                                 "--host", "sandbox", "--yes"])
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"restart exited {code}:\n{output[-3000:]}")
    time.sleep(0.05)
    counted = round_trips(trace.read_text().splitlines()) if trace is not None else 0
    return {"wall_s": wall, "host_s": clock.host, "local_s": clock.local,
            "orchestration_s": wall - clock.host - clock.local,
            "remote_commands": clock.remote_commands, "untimed": clock.untimed,
            "round_trips": counted}


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def peers(results: Path, rtt: float, commands: float) -> list[tuple[str, float]]:
    """(tool, seconds) the same number of remote commands costs each tool at ``rtt``,
    from bench/run.py's latency section: per-command cost x commands + its connect."""
    try:
        lat = json.loads(results.read_text())["latency"]
    except (OSError, ValueError, KeyError):
        return []
    row = next((r for r in lat["by_rtt"] if r["rtt_ms"] == rtt), None)
    if row is None:
        return []
    connect = row["paramiko_connect_one_ms"] / 1000
    out = [("raw paramiko exec_command", connect + commands * row["paramiko_nodelay_ms"] / 1000),
           ("OpenSSH ControlMaster", connect + commands * row["openssh_cm_ms"] / 1000)]
    for tool in ("ansible", "pyinfra"):
        if tool in row:
            out.append((tool, connect + commands * row[tool]["marginal_ms"] / 1000))
    return out


def render(data: dict[str, Any]) -> str:
    lines = [START, "## The restart's orchestration behind real latency (issue 15)", "",
             f"`python bench/orchestration.py {data['command']}` on {data['date']}, "
             f"commit {data['commit']}, load {data['load']}. The sandbox's app, "
             f"`restart` with nothing changed (the build is cached), {data['runs']} runs "
             "per row, medians. *host*: the commands' time on the host by its own clock; "
             "*local*: the verification's HTTP checks and local processes; "
             "*orchestration* = wall - host - local.", "",
             "| link | wall | host | local | orchestration | remote commands | "
             "round trips (counted) |", "|---|---|---|---|---|---|---|"]
    for row in data["rows"]:
        m = row["median"]
        lines.append(f"| {row['label']} | {m['wall_s']:.2f} s | {m['host_s']:.2f} s | "
                     f"{m['local_s']:.2f} s | **{m['orchestration_s']:.2f} s** | "
                     f"{m['remote_commands']:.0f} | {m['round_trips']:.0f} |")
    for row in data["rows"]:
        if row.get("rtt_ms"):
            m, rtt = row["median"], row["rtt_ms"]
            waits = m["round_trips"] * rtt / 1000
            verdict = "met" if m["orchestration_s"] <= 1.5 else "**missed**"
            lines += ["", f"Target, orchestration <= 1.5 s at {rtt:g} ms RTT: {verdict} in "
                      f"this run ({m['orchestration_s']:.2f} s). Of it, the "
                      f"{m['round_trips']:.0f} round trips counted are {waits:.2f} s of "
                      "waiting on the link; the rest is deployer's own work (start-up, "
                      "rendering, records) and the relay's. " + WHY]
    for row in data["rows"]:
        if row.get("rtt_ms") and row.get("peers"):
            direct = data["rows"][0]["median"]["orchestration_s"]
            added = row["median"]["orchestration_s"] - direct
            lines += ["", f"At {row['rtt_ms']:g} ms RTT the link added {added:.2f} s "
                      f"({added * 1000 / row['rtt_ms']:.1f} RTT) to the orchestration. "
                      f"The same {row['median']['remote_commands']:.0f} remote commands, "
                      "each one command of the tool, would cost (per-command figures of "
                      "bench/run.py's latency section, plus one connect):", "",
                      "| tool | the restart's commands at this RTT |", "|---|---|"]
            lines += [f"| {tool} | {secs:.2f} s |" for tool, secs in row["peers"]]
    lines += ["", END]
    return "\n".join(lines)


def splice(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    if START in text and END in text:
        text = text[:text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtts", default="50", help="round-trip times (ms) to relay at")
    parser.add_argument("--runs", type=int, default=3, help="restarts per row")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    parser.add_argument("--json", default=str(ROOT / "bench" / "orchestration.json"))
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the section from --json, with the peers' figures "
                             "of the current bench/results.json")
    args = parser.parse_args(argv)
    import os
    import subprocess

    if args.render_only:
        data = json.loads(Path(args.json).read_text())
        for row in data["rows"]:
            if row.get("rtt_ms"):
                row["peers"] = peers(ROOT / "bench" / "results.json", row["rtt_ms"],
                                     row["median"]["remote_commands"])
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        splice(Path(args.out), render(data))
        return 0

    inventory = ROOT / ".sandbox" / "inventory.yml"
    if not inventory.exists():
        print("no sandbox: run `scripts/sandbox up` in this checkout first", file=sys.stderr)
        return 2
    port = int(yaml.safe_load(inventory.read_text())["hosts"]["sandbox"]["port"])
    code, output = deployer(["-C", str(ROOT), "-i", str(inventory), "status", "--host",
                             "sandbox"])
    if code != 0:
        print("the app is not up: deploying it with first-time", file=sys.stderr)
        code, output = deployer(["-C", str(ROOT), "-i", str(inventory), "run", "first-time",
                                 "--host", "sandbox", "--yes"])
        if code != 0:
            print(output[-3000:], file=sys.stderr)
            return 1
    work = Path(tempfile.mkdtemp(prefix="deployer-orchestration-"))
    rows: list[dict[str, Any]] = []
    measure(inventory, None)  # warm-up: caches, the image build's cache
    rows.append({"label": "direct (loopback)", "rtt_ms": 0,
                 "runs": (runs := [measure(inventory, None) for _ in range(args.runs)]),
                 "median": medians(runs)})
    for rtt in [float(x) for x in args.rtts.split(",") if x.strip()]:
        trace = work / f"trace-{rtt:g}.txt"
        relay = start_relay([Mapping("127.0.0.1", 0, "127.0.0.1", port)], rtt / 2,
                            trace=str(trace))
        try:
            relayed = relayed_inventory(inventory, relay.ports[0], work)
            runs = [measure(relayed, trace) for _ in range(args.runs)]
        finally:
            relay.stop()
        median = medians(runs)
        rows.append({"label": f"{rtt:g} ms RTT (relay)", "rtt_ms": rtt, "runs": runs,
                     "median": median,
                     "peers": peers(ROOT / "bench" / "results.json", rtt,
                                    median["remote_commands"])})
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    data = {"command": " ".join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()), "runs": args.runs,
            "rows": rows}
    Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    splice(Path(args.out), render(data))
    print(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
