"""Trainer coverage: does the online trainer (MAPPO / IPPO, `teamsift.collect.ppo`) beat
the uniform random policy on each environment?

    python benchmarks/run_trainer_coverage.py [--envs a,b] [--timesteps N] [--algo mappo]
        [--set key=value ...] [--episodes 1000] [--select-episodes 100]

For every environment: train with `ppo.config_for(env_id)` (its DEFAULT_CONFIGS entry),
plus `--timesteps` / `--algo` / `--set` overrides, seed 0; then
  * evaluate every checkpoint (stochastic actions, as datasets use them) for
    `--select-episodes` episodes and pick the best;
  * re-evaluate the best and the final checkpoint, and the uniform random policy, for
    `--episodes` fresh episodes each (95% CIs), plus the final checkpoint acting
    deterministically (the number DEFAULT_CONFIGS comments quote);
  * verdict: "beats random" when the best checkpoint's CI low > the random policy's CI high.

Rows are merged into benchmarks/results/trainer-coverage-<device>.{md,json}: running one
environment at a time keeps the others' rows (each row records its own command).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from run_foundation import machine  # noqa: E402

from teamsift import envs  # noqa: E402
from teamsift.collect import ppo  # noqa: E402
from teamsift.evaluate import evaluate  # noqa: E402
from teamsift.nets import CheckpointBank, RandomPolicy  # noqa: E402

# Registered environments whose coverage this script was written to check (the others have
# committed pools or a DEFAULT_CONFIGS comment with numbers; the polynomial games are
# one-step games outside the requirement).
REMAINING = [
    "mpe_tag", "smax_3s5z", "smax_6h_vs_8z", "smax_5m_vs_6m", "overcooked_asymmetric_advantages",
    "overcooked_coordination_ring", "overcooked_forced_coordination", "overcooked_counter_circuit",
]


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        value = _value(value)
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def summary(score) -> dict:
    return dataclasses.asdict(score)


def run_env(env_id: str, overrides: dict, key, episodes: int, select_episodes: int) -> dict:
    env = envs.make(env_id)
    config = ppo.config_for(env_id, **overrides)
    k_train, k_select, k_eval = jax.random.split(jax.random.fold_in(key, 0), 3)
    result = ppo.train(config, env, k_train, progress=False)
    jax.block_until_ready(result.checkpoints)
    train_seconds = result.wall_time
    started = time.perf_counter()
    bank = CheckpointBank(result.checkpoints, result.net)  # stochastic actions
    select = [evaluate(env, bank.checkpoint(i), jax.random.fold_in(k_select, i), select_episodes).team_return
              for i in range(bank.size)]
    best = int(np.argmax([s.mean for s in select]))
    final = bank.size - 1
    k_rand, k_best, k_final, k_det = jax.random.split(k_eval, 4)
    random_eval = evaluate(env, RandomPolicy.for_spec(env.spec), k_rand, episodes).team_return
    best_eval = evaluate(env, bank.checkpoint(best), k_best, episodes).team_return
    final_eval = best_eval if best == final else evaluate(env, bank.checkpoint(final), k_final, episodes).team_return
    det_eval = evaluate(env, result.policy(final, deterministic=True), k_det, episodes).team_return
    log_ret, log_update = result.logs["return"], result.logs["update"]  # one entry per log row
    tail = log_ret[log_update > 0.95 * log_update[-1]]  # rows of the last 5% of updates (at least the last)
    return {
        "algo": config.algo,
        "timesteps": int(result.checkpoint_steps[-1]),
        "train_seconds": train_seconds,
        "evaluate_seconds": time.perf_counter() - started,
        "config_entry": ppo.DEFAULT_CONFIGS.get(env_id, {}),
        "overrides": overrides,
        "random": summary(random_eval),
        "best_checkpoint": best,
        "best_step": int(result.checkpoint_steps[best]),
        "best": summary(best_eval),
        "final": summary(final_eval),
        "final_deterministic": summary(det_eval),
        "checkpoint_means": [s.mean for s in select],
        "checkpoint_steps": [int(s) for s in result.checkpoint_steps],
        "train_return_last5pct": float(np.nanmean(tail)) if np.isfinite(tail).any() else None,
        "beats_random": bool(best_eval.ci95_low > random_eval.ci95_high),
        "final_beats_random": bool(final_eval.ci95_low > random_eval.ci95_high),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", default=",".join(REMAINING), help="comma-separated registry ids")
    parser.add_argument("--timesteps", type=int, default=None, help="override total_timesteps")
    parser.add_argument("--algo", choices=("mappo", "ippo"), default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other PPOConfig override (JSON value), repeatable")
    parser.add_argument("--episodes", type=int, default=1000, help="episodes for the final CIs")
    parser.add_argument("--select-episodes", type=int, default=100, help="episodes per checkpoint to pick the best")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--no-save", action="store_true", help="print only (trying settings)")
    args = parser.parse_args()
    overrides = parse_sets(args.set)
    if args.timesteps is not None:
        overrides["total_timesteps"] = args.timesteps
    if args.algo is not None:
        overrides["algo"] = args.algo
    key = jax.random.key(args.seed)
    info = machine()
    tag = info["device"].split(":")[0]
    json_path = args.out / f"trainer-coverage-{tag}.json"
    report = {"machine": info, "envs": {}}
    if json_path.is_file():
        report = json.loads(json_path.read_text())
        report["machine"] = info
    command = "python " + " ".join(sys.argv)
    for env_id in args.envs.split(","):
        row = run_env(env_id, overrides, key, args.episodes, args.select_episodes)
        row["command"] = command
        row["seed"] = args.seed
        print(json.dumps({env_id: row}, default=list), file=sys.stderr, flush=True)
        if not args.no_save:
            report["envs"][env_id] = json.loads(json.dumps(row, default=list))
            args.out.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(report, indent=2) + "\n")
            (args.out / f"trainer-coverage-{tag}.md").write_text(render(report))
    print(render(report if not args.no_save else {"machine": info, "envs": {}}))


def _ci(s: dict) -> str:
    return f"{s['mean']:.2f} [{s['ci95_low']:.2f}, {s['ci95_high']:.2f}]"


def render(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Trainer coverage: online MAPPO / IPPO against the uniform random policy", "",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared with other jobs), JAX {m['jax']} on {m['device']}", "",
        "| env | algo | timesteps | train time | random policy | best checkpoint (step) | final checkpoint | "
        "final, deterministic | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for env_id, row in report["envs"].items():
        verdict = "**beats random**" if row["beats_random"] else "**does not beat random**"
        lines.append(
            f"| {env_id} | {row['algo']} | {row['timesteps']:,} | {row['train_seconds']:.0f} s | {_ci(row['random'])} | "
            f"{_ci(row['best'])} ({row['best_step']:,}) | {_ci(row['final'])} | {_ci(row['final_deterministic'])} | "
            f"{verdict} |"
        )
    lines += [
        "",
        "Mean team return [95% CI] over the stated number of fresh episodes (seed 0). Checkpoints act "
        "stochastically (as in datasets); the best of the evenly spaced checkpoints is picked on a separate "
        "evaluation, then re-evaluated. Verdict: best checkpoint's CI low > random policy's CI high.",
        "",
        "Commands and settings (DEFAULT_CONFIGS entry, then command-line overrides):", "",
    ]
    for env_id, row in report["envs"].items():
        n = row["random"]["n"]
        lines.append(f"- {env_id}: `{row['command']}` — entry {json.dumps(row['config_entry'])}, "
                     f"overrides {json.dumps(row['overrides'])}, {n} episodes per CI")
    notes = report.get("notes")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {env_id}: {text}" for env_id, text in notes.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
