"""MILD²'s Theorem 3 on our runs (claim M23 of docs/claims.md): does the global-dependency
discriminator give the generator's policy gradient a larger joint advantage variance
Σ_k Var[A^k] than the independent one (MILD²-GD), and is that more than the larger reward
variance it already gives (M18) carries through GAE?

Reads the per-seed log rows (`metrics.csv`) that `teamsift bench imitation --name
advantage-variance` left in its run directories; the generators log Σ_k Var[A^k] of their
rollout's GAE advantages as "gen_advantage_var" (`teamsift.collect.onpolicy.advantage_variance`)
and the discriminator reward's variance as "generator_reward_var". MILD² and MILD²-GD share
the generator (MAT), its config and the seeds' keys, so their numbers compare directly.
MAGAIL's generator learns on 0.1 × its rewards' team sum (MAPPO), so its advantages are in
other units: its numbers are in the bench's own result file, not here.

    python benchmarks/summarise_advantage_variance.py [--runs datasets/bench-imitation/runs/advantage-variance-cpu]

Writes benchmarks/results/advantage-variance-summary-<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from teamsift.fileio import atomic_write_text
from teamsift.machine import describe
from teamsift.machine import machine as host

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("MILD2", "MILD2-GD")
LABELS = {"MILD2": "MILD²", "MILD2-GD": "MILD²-GD"}


def read_rows(path: Path) -> dict[str, np.ndarray] | None:
    """[S, L] arrays of the update, Σ_k Var[A^k] and Var[r] from one run's metrics.csv (None
    before its first log row)."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None  # a run that has not logged yet
    if "gen_advantage_var" not in rows[0]:
        raise SystemExit(f"{path}: no column 'gen_advantage_var' (a run from before the generators logged it)")
    seeds = sorted({int(r["seed"]) for r in rows})
    out = {}
    for name, column in (("update", "update"), ("advantage_var", "gen_advantage_var"),
                         ("reward_var", "generator_reward_var")):
        out[name] = np.array([[float(r[column]) for r in rows if int(r["seed"]) == s] for s in seeds])
    return out


def summarise(runs: Path) -> dict:
    report = {}
    for env_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        logs = {m: read_rows(env_dir / m / "metrics.csv") for m in METHODS if (env_dir / m / "metrics.csv").is_file()}
        if len(logs) < len(METHODS) or any(d is None for d in logs.values()):
            continue
        env = env_dir.name.split("-expert-")[0]
        cells = {}
        for method, d in logs.items():
            tail = max(1, d["update"].shape[1] // 10)
            a_end, r_end = d["advantage_var"][:, -tail:].mean(axis=1), d["reward_var"][:, -tail:].mean(axis=1)
            cells[LABELS[method]] = {
                "log_rows": int(d["update"].shape[1]), "updates": int(d["update"][0, -1]),
                "advantage_var_run": d["advantage_var"].mean(axis=1).tolist(),
                "advantage_var_end": a_end.tolist(), "reward_var_end": r_end.tolist(),
                "advantage_per_reward_var_end": (a_end / r_end).tolist()}
        a, b = logs["MILD2"]["advantage_var"], logs["MILD2-GD"]["advantage_var"]
        rows = min(a.shape[1], b.shape[1])
        a_end, b_end = (np.asarray(cells[m]["advantage_var_end"]) for m in ("MILD²", "MILD²-GD"))
        report[env] = {"cells": cells,  # P(MILD² > MILD²-GD) over every pair of seeds (their keys differ)
                       "rows_mild2_above": float(np.mean(a[:, None, :rows] > b[None, :, :rows])),
                       "pairs_mild2_above_end": float(np.mean(a_end[:, None] > b_end[None, :]))}
    return report


def _ms(values) -> str:
    return f"{np.mean(values):.3g} ± {np.std(values):.2g}"


def render(report: dict) -> str:
    lines = ["# The generator's joint advantage variance: MILD² against MILD²-GD (MILD² Theorem 3, claim M23)", "",
             f"Machine: {report['machine']}", "", f"Command: `{report['command']}`", "",
             f"Runs: `{report['runs']}` (written by `teamsift bench imitation --methods MILD²,MILD²-GD,MAGAIL "
             "--timesteps 150000 --name advantage-variance --data-dir datasets/bench-imitation`; its result file "
             "[advantage-variance-cpu](advantage-variance-cpu.md) holds the returns).", "",
             "Σ_k Var[A^k]: for each agent k the variance of the generator's GAE advantages over one rollout's "
             "steps and environments, summed over the agents, in the learning reward's units and before PPO "
             "normalises them per minibatch; logged at every update. Var[r]: the variance of the discriminator's "
             "reward over the same rollout. Cells: mean ± std over the seeds of each seed's mean over the whole run "
             "or over the last tenth of its log rows. The last column is the share of comparisons in which MILD²'s "
             "Σ_k Var[A^k] is the larger: every MILD² seed against every MILD²-GD seed (the methods' keys differ), "
             "at every log row, and (in brackets) on the last-tenth means.", "",
             "| env | method | Σ_k Var[A^k], whole run | Σ_k Var[A^k], last tenth | Var[r], last tenth | "
             "Σ_k Var[A^k] / Var[r], last tenth | MILD² larger: log rows (last tenth) |",
             "|---|---|---|---|---|---|---|"]
    for env, row in report["rows"].items():
        for method, c in row["cells"].items():
            share = (f"{row['rows_mild2_above']:.0%} ({row['pairs_mild2_above_end']:.0%})"
                     if method == "MILD²" else "")
            lines.append(f"| {env} | {method} | {_ms(c['advantage_var_run'])} | {_ms(c['advantage_var_end'])} | "
                         f"{_ms(c['reward_var_end'])} | {_ms(c['advantage_per_reward_var_end'])} | {share} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="datasets/bench-imitation/runs/advantage-variance-cpu")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "advantage-variance-summary-cpu"))
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    if not runs.is_dir():
        raise SystemExit(f"{runs}: no such run directory (run the bench named in this script's doc first)")
    report = {"machine": describe(host()), "runs": str(runs),
              "command": ("python benchmarks/summarise_advantage_variance.py "
                          + shlex.join(sys.argv[1:] if argv is None else argv)).rstrip(),
              "rows": summarise(runs)}
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    text = render(report)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
