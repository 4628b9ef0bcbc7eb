"""Run the slow test tier: one pytest process per test file, `--jobs` files at a time.

One process per file keeps any process from holding every MaBrax, SMAX and learner
program compiled at once (a single process running them all has aborted XLA's compiler on
the 2-core, 24 GiB CI machine). Two files at a time on 2 cores overlap one file's
single-threaded XLA compiles with another's computation. Each file's output is printed
whole when it finishes, with its slowest tests, and the run fails if any file fails (pytest's exit code 5, "no
test selected", is not a failure: a file may hold only fast tests under this marker).

    python tests/run_slow_tier.py --jobs 2 tests/test_a.py tests/test_b.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

MARKER = "slow and not bench"
NO_TESTS_COLLECTED = 5
#: Files whose learners train for minutes: their programs run far longer than they take to
#: compile, so they compile with XLA's full optimisation (`TEAMSIFT_TEST_FULL_XLA_OPT=1`).
#: Every other file is compile-bound (a few updates per learner, environment rollouts) and
#: compiles as the fast tier does, with LLVM's optimisation off (tests/conftest.py). The
#: per-file measurements behind this split are in docs/development.md.
FULL_XLA_OPT = ("test_offline_learners.py", "test_continuous_learners.py", "test_mat.py")
#: Longest first (cold-cache times, docs/development.md), so that the short files fill the
#: second job at the end; files not named here follow, in name order.
LONGEST_FIRST = ("test_continuous_learners.py", "test_envs_conformance.py", "test_offline_learners.py",
                 "test_mild2.py", "test_bench_sit.py", "test_envs_jaxmarl.py", "test_registry.py", "test_magail.py",
                 "test_mat.py", "test_sharded_envs.py")


def run_file(path: str) -> tuple[str, int, str, float]:
    start = time.monotonic()
    env = dict(os.environ)
    if os.path.basename(path) in FULL_XLA_OPT:
        env["TEAMSIFT_TEST_FULL_XLA_OPT"] = "1"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "--durations=8", "-m", MARKER, path],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return path, done.returncode, done.stdout, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="test files run at once (default 2)")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs: expected a positive integer, got {args.jobs}")
    order = {path: rank for rank, path in enumerate(LONGEST_FIRST)}
    files = sorted(args.files, key=lambda path: (order.get(os.path.basename(path), len(order)), path))
    failed = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for finished in as_completed([pool.submit(run_file, path) for path in files]):
            path, code, output, seconds = finished.result()
            print(f"slow tier: {path} ({seconds:.0f} s)\n{output}", flush=True)
            if code not in (0, NO_TESTS_COLLECTED):
                failed.append(f"{path} (exit code {code})")
    if failed:
        print("slow tier failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
