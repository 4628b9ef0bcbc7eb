"""How far RMSProp lets each network of finished ICQ runs move: where its ε goes matters.

ICQ, SIT, MABCQ and MACQL have used RMSProp with decay 0.99 and ε = 1e-5 under the root
(`teamsift.nets.optim`, "rmsprop_eps_in_root": a step is lr·g/√(ν + ε)); PyMARL, the code
ICQ and SIT were published with, adds ε to the root (lr·g/(√ν + ε), "rmsprop_pymarl"). Where
a parameter's RMS gradient √ν is far below √ε ≈ 3.2·10⁻³, the first takes about √ν/√ε of the
second's step, and its steps grow with the loss's scale like plain SGD's.

For every run directory given (with the dataset it trained on), at its last checkpoint,
for the actor and for the critic (with its mixer) over all seeds, from the optimiser's own
running average ν of the squared gradient (parameters whose ν is 0, e.g. weights of input
features that are always 0, left out):

* the 5th / 50th / 95th percentile of √ν;
* the share of parameters with √ν < √ε;
* the mean step factor √ν/√(ν + ε) (1: the step of a well-scaled RMSProp) and PyMARL's
  √ν/(√ν + ε) on the same ν.

    python benchmarks/diagnose_optimiser_steps.py \\
        --run smax_2s3z-x1=/tmp/teamsift-smax-ev2bc/runs/smax_2s3z-icq_x1-u1000-s5:/tmp/teamsift-smax-ev2bc/smax_2s3z-p30-a40

writes benchmarks/results/optimiser-steps-<device>.{json,md} (a rerun adds its runs).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import jax
import numpy as np

from teamsift.bench.report import write_report
from teamsift.data import load_dataset
from teamsift.machine import describe
from teamsift.machine import machine as host

ROOT = Path(__file__).resolve().parents[1]
EPS = 1e-5  # ICQ's RMSProp ε (both placements)


def second_moments(opt_state) -> np.ndarray:
    """Every RMSProp ν in an optax state, flattened (all seeds)."""
    found = [leaf for leaf in jax.tree.leaves(opt_state, is_leaf=lambda x: hasattr(x, "nu")) if hasattr(leaf, "nu")]
    if not found:
        raise SystemExit("the run's optimiser keeps no RMSProp ν (not an RMSProp run)")
    return np.concatenate([np.ravel(np.asarray(x)) for state in found for x in jax.tree.leaves(state.nu)])


def step_statistics(nu: np.ndarray) -> dict:
    rms = np.sqrt(nu[nu > 0])
    return {"parameters": int(rms.size), "rms_p5": float(np.percentile(rms, 5)),
            "rms_p50": float(np.percentile(rms, 50)), "rms_p95": float(np.percentile(rms, 95)),
            "share_below_sqrt_eps": float(np.mean(rms < np.sqrt(EPS))),
            "step_factor_eps_in_root": float(np.mean(rms / np.sqrt(rms ** 2 + EPS))),
            "step_factor_pymarl": float(np.mean(rms / (rms + EPS)))}


def diagnose(run_dir: Path, dataset_dir: Path) -> dict:
    from diagnose_sit import restore_icq  # the one restore of an ICQ run for diagnosis

    config, _, state, step, seeds = restore_icq(run_dir, load_dataset(dataset_dir))
    return {"run_dir": str(run_dir), "dataset": str(dataset_dir), "step": int(step), "seeds": int(seeds),
            "optimizer": getattr(config, "optimizer", "rmsprop_eps_in_root"),
            "reward_scale": config.reward_scale, "beta": config.beta,
            "actor": step_statistics(second_moments(state.actor_opt_state)),
            "critic": step_statistics(second_moments(state.critic_opt_state))}


def render(report: dict) -> str:
    lines = ["# How far RMSProp lets ICQ's networks move (ε under the root against PyMARL's)", "",
             f"Machine: {report['machine']}", "", "Commands: " + ", ".join(f"`{c}`" for c in report["commands"]), "",
             "At each run's last checkpoint, from its optimiser's running average ν of the squared gradient "
             "(parameters with ν = 0 left out), over all seeds. Step factor: the mean over parameters of √ν/√(ν + ε) "
             "(ε under the root, the runs' optimiser) and of √ν/(√ν + ε) (PyMARL's, on the same ν); 1 is a "
             f"well-scaled RMSProp's step. ε = {EPS:g}, √ε = {np.sqrt(EPS):.1e}.", "",
             "| run | update | reward scale, β | network | √ν 5th / 50th / 95th pct | share √ν < √ε "
             "| step factor, ε under the root | PyMARL's |", "|---|---|---|---|---|---|---|---|"]
    for name, r in report["runs"].items():
        for net in ("actor", "critic"):
            s = r[net]
            lines.append(f"| {name} | {r['step']:,} | × {r['reward_scale']:.3g}, {r['beta']:g} | {net} | "
                         f"{s['rms_p5']:.1e} / {s['rms_p50']:.1e} / {s['rms_p95']:.1e} | "
                         f"{s['share_below_sqrt_eps']:.2f} | {s['step_factor_eps_in_root']:.2f} | "
                         f"{s['step_factor_pymarl']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR:DATASET",
                        help="an ICQ run directory and the dataset it trained on, under a name (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.run:
        name, _, paths = spec.partition("=")
        run_dir, _, dataset = paths.partition(":")
        if not (name and run_dir and dataset):
            raise SystemExit(f"--run {spec!r}: expected NAME=RUN_DIR:DATASET")
        for path, what in ((Path(run_dir) / "config.json", "a run directory"), (Path(dataset) / "meta.json", "a dataset")):
            if not path.is_file():
                raise SystemExit(f"--run {name}: {path} not found (not {what})")
        runs[name] = (Path(run_dir), Path(dataset))
    stem = f"optimiser-steps-{jax.devices()[0].platform}"
    json_path = args.out / f"{stem}.json"
    report = json.loads(json_path.read_text()) if json_path.is_file() else {"runs": {}, "commands": []}
    command = "python benchmarks/diagnose_optimiser_steps.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    report.update(machine=describe(host()), commands=list(dict.fromkeys([*report["commands"], command])))
    for name, (run_dir, dataset) in runs.items():
        report["runs"][name] = diagnose(run_dir, dataset)
    print(write_report(report, render(report), args.out, stem)[1].read_text())


if __name__ == "__main__":
    main()
