"""Coordination failure of BRUD on polynomial games, and PJAP (Tilbury et al. 2024; methods.md §2).

For each game (sign agreement R = xy, twin peaks R = −(x²+y²) − 4(xy)² + 5xy) and each
dataset spread σ, a dataset of one-step episodes is drawn around a point of the action
square; MADDPG starts from the joint policy (−0.5, 0.5) and learns from it with
  * MADDPG          — BRUD policy updates, uniform sampling (the failing baseline),
  * MADDPG+PJAP     — BRUD policy updates, proximal joint-action prioritised sampling,
  * MADDPG (current actions) — the other agents' *current* policy actions in the
    policy update instead of their dataset actions (the comparison the paper discusses).
Each method trains `--seeds` seeds as one vmapped program (`teamsift.bench.poly`).

Datasets (our choice of points): sign agreement around the initial joint policy
(−0.5, 0.5) — data from the behaviour the learner starts from; twin peaks around
(0.5, 0.5), whose best response is the optimum 0.61 when the data is narrow.

    python benchmarks/run_poly_pjap.py                 # full study
    python benchmarks/run_poly_pjap.py --quick         # one broad twin-peaks dataset, 2 methods

Writes benchmarks/results/poly-pjap-<device>.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_foundation import machine  # noqa: E402

from teamsift.bench import poly  # noqa: E402

CENTRES = {"poly_sign": (-0.5, 0.5), "poly_twin_peaks": (0.5, 0.5)}
SPREADS = (0.1, 0.5, 1.0)


def run(args) -> list[dict]:
    games = ("poly_twin_peaks",) if args.quick else tuple(CENTRES)
    spreads = (1.0,) if args.quick else SPREADS
    methods = ("MADDPG", "MADDPG+PJAP") if args.quick else tuple(poly.METHODS)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for g, env_id in enumerate(games):
            for s, spread in enumerate(spreads):
                key = jax.random.fold_in(jax.random.key(args.seed), 100 * g + s)
                dataset = poly.poly_dataset(env_id, CENTRES[env_id], spread, args.episodes, key, f"{tmp}/{env_id}-{s}")
                for method in methods:
                    start = time.perf_counter()
                    out = poly.run_method(env_id, dataset, method, jax.random.fold_in(key, 1), num_updates=args.updates,
                                          num_seeds=args.seeds, cql_weight=args.cql_weight)
                    seconds = time.perf_counter() - start
                    final = out["final_reward"]
                    print(f"{env_id:16s} σ={spread:<4} {method:26s} R = {final.mean():+.3f} ± {final.std():.3f} "
                          f"({seconds:.0f} s)", flush=True)
                    results.append({
                        "env_id": env_id, "centre": CENTRES[env_id], "spread": spread, "method": method,
                        "dataset_mean_reward": float(dataset.returns.mean()),
                        "final_reward": final.tolist(), "final_joint_action": out["trajectory"][:, -1].tolist(),
                        "mean_distance_last_10pct": float(out["distance"][:, -args.updates // 10:].mean()),
                        "seconds": seconds, "trajectory": out["trajectory"][:, ::max(1, args.updates // 200)],
                    })
    return results


def write(results: list[dict], args, out: Path) -> None:
    device = jax.devices()[0].platform
    m = machine()
    stem = out / f"poly-pjap-{device}"
    poly.plot_trajectories(results, stem.with_suffix(".png"), columns=len({r["method"] for r in results}))
    command = "python benchmarks/run_poly_pjap.py " + " ".join(sys.argv[1:])
    payload = {"command": command.strip(), "machine": m, "updates": args.updates, "seeds": args.seeds,
               "episodes": args.episodes, "cql_weight": args.cql_weight, "optimum": poly.OPTIMA,
               "results": [{**r, "trajectory": np.asarray(r["trajectory"]).tolist()} for r in results]}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    lines = ["# BRUD coordination failure and PJAP on polynomial games", "",
             f"Command: `{command.strip()}`",
             f"Machine: {m['cpu']}, {m['cores']} cores, JAX {m['jax']} on {m['device']}", "",
             f"{args.updates} updates (batch 64 one-step windows), {args.seeds} seeds per method (vmapped), "
             f"{args.episodes} episodes per dataset, CQL weight {args.cql_weight}; initial joint policy "
             f"(−0.5, 0.5); PJAP κ = 4, ρ_min = 1e-3, exponent 0.99, ramp over the first quarter of the updates.", "",
             "| game | data centre | spread σ | data mean R | method | final R (mean ± sd over seeds) | "
             "final (x, y) per seed | mean d (last 10%) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        final = np.asarray(r["final_reward"])
        xy = ", ".join(f"({x:+.2f}, {y:+.2f})" for x, y in r["final_joint_action"])
        lines.append(f"| {r['env_id']} | {tuple(r['centre'])} | {r['spread']} | {r['dataset_mean_reward']:+.3f} | "
                     f"{r['method']} | {final.mean():+.3f} ± {final.std():.3f} | {xy} | "
                     f"{r['mean_distance_last_10pct']:.3f} |")
    lines += ["", f"Optima: sign agreement R = 1 at ±(1, 1); twin peaks R = 0.5625 at ±(0.61, 0.61).",
              f"Trajectories: `{stem.with_suffix('.png').name}` (one panel per game × spread × method; "
              "white dashed circle = dataset centre ± σ; ○ start, × end of every seed)."]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.{{md,json,png}}")


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
    write(run(args), args, args.out)


if __name__ == "__main__":
    main()
