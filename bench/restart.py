"""The wall time of a code-only `restart` of each example app, broken down step by step.

On the sandbox VPS (`scripts/sandbox up` of this checkout), for each example app
(examples/app, examples/django, examples/fastapi-form): deploy it with `first-time`,
then, ``--restarts`` times, change its code (the version string only: no migration, no
dependency) and time `deployer run restart`. Every run goes through the real CLI of
this checkout (a launcher importing ``deployer`` from here), with the inventories the
e2e tests use (tests/e2e/test_examples.py ``make_example``: what `deployer init` writes,
plus this checkout's names and ports).

Per restart it reports the wall time of the CLI process and the time of each step from
the run record (``duration`` of every step), summed into groups: build, one-off
containers (``compose run --rm``), migrations, up, waits, checks (verification), other
steps, and what is outside the steps (start-up, connect, lock, preflight of the
executor, summary). Figures are medians over the restarts.

Results: ``bench/restart.json`` (every raw number, one entry per ``--label``: a later
run with the same label replaces it, others stay) and the section of ``bench/RESULTS.md``
between ``<!-- restart:start -->`` and ``<!-- restart:end -->`` (only that section is
rewritten). It asserts nothing; it reports.

    python bench/restart.py --label before
    python bench/restart.py --label after --restarts 3 --apps app,django,fastapi-form
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from tests.e2e import test_examples as examples  # noqa: E402
from tests.e2e.conftest import STATE, Sandbox  # noqa: E402

START, END = "<!-- restart:start -->", "<!-- restart:end -->"
APPS = ("app", "django", "fastapi-form")
GROUPS = ("build", "one-off", "migrations", "up", "waits", "checks", "other steps",
          "outside steps")
# Steps of the shipped restart runbook by group; anything else goes by its kind.
GROUP_OF = {
    "build": "build",
    "check_image": "one-off", "db_revision": "one-off", "seed_admin": "one-off",
    "seed_update": "one-off", "oneoff": "one-off", "app_checks": "one-off",
    "migration": "one-off",  # release.migration: the revision after the release
    "migrate": "migrations",
    "postgres_up": "up", "up": "up",
    "postgres_ready": "waits",
}
KIND_GROUP = {"http": "checks", "wait": "waits"}


def log(msg: str) -> None:
    print(f"[restart-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def group_of(step: dict[str, Any]) -> str:
    sid = str(step["id"])
    leaf = sid.rsplit(".", 1)[-1].rsplit("/", 1)[-1]
    if sid in GROUP_OF or leaf in GROUP_OF:
        return GROUP_OF.get(sid) or GROUP_OF[leaf]
    if "migrate" in leaf and step.get("kind") in ("compose", "run"):
        return "migrations"
    return KIND_GROUP.get(str(step.get("kind")), "other steps")


def write_launcher(directory: Path, checkout: Path = ROOT, name: str = "deployer") -> Path:
    """A `deployer` console script importing the package (and so its packaged
    runbooks) from ``checkout``."""
    path = directory / name
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(checkout)!r})\n"
                    "from deployer.cli.main import main\nsys.exit(main())\n")
    path.chmod(0o755)
    return path


def load_sandbox() -> Sandbox:
    inventory = STATE / "inventory.yml"
    if not inventory.is_file():
        raise SystemExit(f"no {inventory}: run scripts/sandbox up in this checkout first")
    host = yaml.safe_load(inventory.read_text())["hosts"]["sandbox"]
    secrets = {}
    for line in (STATE / "secrets.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            secrets[name.strip()] = value.strip()
    return Sandbox(inventory=inventory, secrets_file=STATE / "secrets.env", host=host,
                   secrets=secrets)


def timed_run(ex: examples.Example, runbook: str) -> tuple[float, dict[str, Any]]:
    before = ex.cli.run_ids()
    t0 = time.monotonic()
    result = ex.run(runbook)
    wall = time.monotonic() - t0
    if result.returncode != 0:
        raise SystemExit(f"{ex.name}: {runbook} failed:\n{result.describe()}")
    return wall, ex.cli.new_record(before)


def breakdown(wall: float, record: dict[str, Any]) -> dict[str, Any]:
    steps = []
    groups = dict.fromkeys(GROUPS, 0.0)
    for step in record["steps"]:
        duration = float(step.get("duration") or 0.0)
        group = group_of(step)
        steps.append({"id": step["id"], "kind": step.get("kind"), "state": step["state"],
                      "group": group, "duration": round(duration, 3)})
        groups[group] += duration
    groups["outside steps"] = max(0.0, wall - sum(groups[g] for g in GROUPS[:-1]))
    return {"wall": round(wall, 3), "record_duration": record.get("duration"),
            "run_id": record["id"], "groups": {k: round(v, 3) for k, v in groups.items()},
            "steps": steps}


def bench_app(name: str, sandbox: Sandbox, tmp: Path, exes: dict[str, str], restarts: int
              ) -> dict[str, dict[str, Any]]:
    """First-time with the first checkout, then ``restarts`` rounds: in each, one
    code-only restart per checkout (label), in turn, on the same stack."""
    labels = list(exes)
    ex = examples.make_example(name, sandbox, tmp / name, exes[labels[0]])
    ex.remove()
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    n = 0
    try:
        log(f"{name}: first-time ({labels[0]})")
        first_wall, _ = timed_run(ex, "first-time")
        for round_ in range(1, restarts + 1):
            for label in labels:
                n += 1
                version = f"1.0.{n}"
                examples.set_version(ex, version)
                ex.cli.executable = exes[label]
                wall, record = timed_run(ex, "restart")
                examples.wait_serving(ex, version)  # the new code is what answers
                runs[label].append(breakdown(wall, record))
                log(f"{name}: restart {round_}/{restarts} ({label}): {wall:.2f}s")
    finally:
        ex.remove()
    out = {}
    for label in labels:
        got = runs[label]
        median = {g: round(statistics.median(r["groups"][g] for r in got), 3) for g in GROUPS}
        ids = [s["id"] for s in got[0]["steps"]]
        per_step = {sid: round(statistics.median(
            next((s["duration"] for s in r["steps"] if s["id"] == sid), 0.0) for r in got), 3)
            for sid in ids}
        out[label] = {"app": name, "first_time_wall": round(first_wall, 3),
                      "wall_median": round(statistics.median(r["wall"] for r in got), 3),
                      "groups_median": median, "steps_median": per_step, "runs": got}
    return out


def checkout(root: Path = ROOT) -> str:
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                            "deployer", "runbooks", "templates"],
                           capture_output=True, text=True).stdout.strip()
    return head + (" (with uncommitted changes)" if dirty else "")


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown(data: dict[str, Any]) -> str:
    labels = list(data["labels"])
    out = [START, "## Restart of each example app, step by step (issue 15)", ""]
    for label in labels:
        meta = data["labels"][label]["meta"]
        out.append(f"- `{label}`: {meta['date']}; commit {meta['commit']}; command: "
                   f"`{meta['command']}`; {meta['restarts']} restart(s) per app, "
                   f"load {meta['load']}"
                   + ("; restarts interleaved with the other label's on the same stacks"
                      if meta.get("interleaved") else ""))
    out += ["- code-only change: the app's version string; wall = the `deployer run "
            "restart` process; groups are sums of the steps' durations from the run "
            "record; \"outside steps\" = wall minus the steps (start-up, connect, lock, "
            "record, summary); medians", "",
            "| app | run | wall (s) | " + " | ".join(GROUPS) + " |",
            "|---|---|---|" + "---|" * len(GROUPS)]
    apps = [a for a in APPS if any(a in data["labels"][lb]["apps"] for lb in labels)]
    for app in apps:
        for label in labels:
            res = data["labels"][label]["apps"].get(app)
            if not res:
                continue
            out.append(f"| {app} | {label} | {fmt(res['wall_median'])} | "
                       + " | ".join(fmt(res["groups_median"][g]) for g in GROUPS) + " |")
    if "before" in data["labels"] and len(labels) > 1:
        last = labels[-1]
        out += ["", f"Ratio `{last}` / `before` (wall): " + ", ".join(
            f"{app} {data['labels'][last]['apps'][app]['wall_median'] / data['labels']['before']['apps'][app]['wall_median']:.2f}x"  # noqa: E501
            for app in apps if app in data["labels"][last]["apps"]
            and app in data["labels"]["before"]["apps"]) + ". Goal: examples/app "
            "(`app`) under 0.5x."]
    out += ["", "Slowest steps (median seconds) of each app's last run label:", ""]
    for app in apps:
        label = next(lb for lb in reversed(labels) if app in data["labels"][lb]["apps"])
        steps = data["labels"][label]["apps"][app]["steps_median"]
        top = sorted(steps.items(), key=lambda kv: -kv[1])[:8]
        out.append(f"- {app} (`{label}`): " + ", ".join(f"{k} {v:.2f}" for k, v in top))
    if data.get("notes"):
        out += ["", data["notes"].strip()]
    out.append(END)
    return "\n".join(out) + "\n"


def splice(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="after", help="name of this run (before, after...)")
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                        help="also time this other checkout (e.g. a clone of main), as "
                        "label `before`, its restarts interleaved with this one's on the "
                        "same stacks: both see the same load")
    parser.add_argument("--restarts", type=int, default=3, help="restarts per app (median)")
    parser.add_argument("--apps", default=",".join(APPS), help="comma-separated example apps")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "restart.json")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the RESULTS.md section from --json")
    args = parser.parse_args(argv)
    data: dict[str, Any] = (json.loads(args.json.read_text()) if args.json.exists()
                            else {"labels": {}})
    if not args.render_only:
        apps = [a.strip() for a in args.apps.split(",") if a.strip()]
        unknown = sorted(set(apps) - set(APPS))
        if unknown:
            parser.error(f"unknown app(s) {', '.join(unknown)}: choose from {', '.join(APPS)}")
        sandbox = load_sandbox()
        checkouts = {args.label: ROOT}
        if args.baseline:
            checkouts = {"before": args.baseline.resolve(), **checkouts}
        results: dict[str, dict[str, Any]] = {label: {} for label in checkouts}
        with tempfile.TemporaryDirectory(prefix="restart-bench-") as tmp:
            exes = {label: str(write_launcher(Path(tmp), root, f"deployer-{label}"))
                    for label, root in checkouts.items()}
            for app in apps:
                for label, res in bench_app(app, sandbox, Path(tmp), exes,
                                            args.restarts).items():
                    results[label][app] = res
        for label, root in checkouts.items():
            meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    "commit": checkout(root), "restarts": args.restarts,
                    "command": "python bench/restart.py " + " ".join(
                        argv if argv is not None else sys.argv[1:]),
                    "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                    "interleaved": len(checkouts) > 1}
            entry = data["labels"].setdefault(label, {"meta": meta, "apps": {}})
            entry["meta"] = meta
            entry["apps"].update(results[label])
        args.json.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    splice(args.out, markdown(data))
    log(f"wrote {args.json} and the restart section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
