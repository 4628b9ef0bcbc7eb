"""Coordination failure of BRUD on polynomial games, and PJAP (Tilbury et al. 2024; methods.md §2).

For each game (sign agreement R = xy, twin peaks R = −(x²+y²) − 4(xy)² + 5xy) and each
dataset spread σ, a dataset of one-step episodes is drawn around a point of the action
square; MADDPG starts from the joint policy (−0.5, 0.5) and learns from it with
  * MADDPG          — BRUD policy updates, uniform sampling (the failing baseline),
  * MADDPG+PJAP     — BRUD policy updates, proximal joint-action prioritised sampling,
  * MADDPG (current actions) — the other agents' *current* policy actions in the
    policy update instead of their dataset actions (the comparison the paper discusses).
Each method trains `--seeds` seeds as one vmapped program (`teamsift.bench.poly`).

Datasets (our choice of points, `teamsift.bench.poly.CENTRES`): sign agreement around
the initial joint policy (−0.5, 0.5); twin peaks around (0.5, 0.5).
The same study runs as `teamsift bench pjap`.

    python benchmarks/run_poly_pjap.py                 # full study
    python benchmarks/run_poly_pjap.py --quick         # one broad twin-peaks dataset, 2 methods

Writes benchmarks/results/poly-pjap-<device>.{md,json,png}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from teamsift.bench import poly


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one broad twin-peaks dataset, MADDPG vs MADDPG+PJAP")
    parser.add_argument("--updates", type=int, default=6000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--cql-weight", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    command = ("python benchmarks/run_poly_pjap.py " + " ".join(sys.argv[1:])).strip()
    report = poly.run_study(quick=args.quick, num_updates=args.updates, num_seeds=args.seeds, episodes=args.episodes,
                            cql_weight=args.cql_weight, seed=args.seed, out_dir=args.out, command=command)
    print("wrote " + ", ".join(report["files"]))


if __name__ == "__main__":
    main()
