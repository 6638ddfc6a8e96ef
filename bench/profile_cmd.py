"""Profile one deployer command against the benchmark's lab (to find where time goes).

    python bench/profile_cmd.py run steps101 --host light      # cProfile of `deployer run`
    python bench/profile_cmd.py plan big2000 --host light
    python bench/profile_cmd.py --sort tottime --top 40 run steps101 --host light

Starts the same sshd instances and project as bench/run.py (fan-out hosts excluded),
runs the deployer CLI in-process under cProfile (stdout to /dev/null), and prints the
top functions. Use it when a target in RESULTS.md is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import Lab, clean_env  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="deployer arguments")
    ns = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="deployer-profile-"))
    lab = Lab(work, 0)
    try:
        os.environ.update(clean_env())
        os.environ.pop("SSH_AUTH_SOCK", None)
        from deployer.cli.main import main as deployer_main

        argv = ["-C", str(lab.project), *ns.args]
        # Warm run: file caches, host key learning; not profiled.
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            deployer_main(argv)
        prof = cProfile.Profile()
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            prof.enable()
            code = deployer_main(argv)
            prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats(ns.sort).print_stats(ns.top)
        print(f"exit code {code}")
        print(out.getvalue())
    finally:
        lab.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
