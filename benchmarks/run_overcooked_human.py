"""EV-Clustering + EV2BC vs BC on the real human–human Overcooked trials (Select to Perfect, Section 5).

For each layout: import the train split (`teamsift import overcooked-human`), value the
one-time player ids by EV-Clustering on the game score, clone the players of clusters
with positive EV (EV2BC) or everyone (BC), 5 seeds each as one vmapped program
(`teamsift.engine.fit` with the valuation's weights, `teamsift.value.weights`), and
evaluate each seed in the JaxMARL Overcooked layout with the full human horizon.
Partner in evaluation: the learned policy plays both cooks (self-play). EV2BC splits its
key into (EV-Clustering key, BC key), as EV2BC always did; EV2BC per slot reuses the
same cluster values and BC key.

    python benchmarks/run_overcooked_human.py [--layouts cramped_room,asymmetric_advantages]

Writes benchmarks/results/overcooked-human-<device>.{md,json}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from teamsift.algos import bc
from teamsift.bench.seeds import evaluate_seeds as evaluate_every_seed
from teamsift.data import import_overcooked_human, load_dataset
from teamsift.engine import RunConfig, fit, step_weights
from teamsift.envs import make
from teamsift.value.weights import SelectionConfig, individual_weights, valuation_weights


def evaluate_seeds(env, policies: list, key, episodes: int) -> list[float]:
    """Soups per game for each seed's policy in self-play."""
    return evaluate_every_seed(env, policies, key, episodes, ("soups",))["soups"]


def kept_fraction(dataset, weights) -> float:
    """The fraction of agent decisions (steps × slots) with a weight above 0."""
    return float((step_weights(dataset, weights) > 0).mean())


def run_layout(layout: str, *, updates: int, seeds: int, clusters: int | None, episodes: int, key, workdir: Path):
    path = import_overcooked_human(layout, "train", workdir / layout, overwrite=True)
    dataset = load_dataset(path)
    env = make(dataset.meta["env_id"], **dataset.meta["env_kwargs"])
    learner = bc.learner(bc.BCConfig(recurrent=False), dataset)
    run = RunConfig(updates=updates, seeds=seeds, log_every=max(1, updates // 10), progress=False)
    timings = {}
    start = time.perf_counter()
    bc_policies = fit(learner, dataset, jax.random.fold_in(key, 1), run).policies()
    timings["bc"] = time.perf_counter() - start
    selection = SelectionConfig(score="soups", num_clusters=clusters)
    value_key, bc_key = jax.random.split(jax.random.fold_in(key, 1))
    start = time.perf_counter()
    valuation = valuation_weights("ev-cluster", dataset, value_key, selection)
    ev_policies = fit(learner, dataset, bc_key, run, weights=valuation.weights).policies()
    timings["ev2bc"] = time.perf_counter() - start
    start = time.perf_counter()
    role_weights = individual_weights(dataclasses.replace(selection, per_slot=True), dataset, valuation.values)
    role_policies = fit(learner, dataset, bc_key, run, weights=role_weights).policies()
    timings["ev2bc_per_slot"] = time.perf_counter() - start
    results = {"bc": evaluate_seeds(env, bc_policies, jax.random.fold_in(key, 2), episodes),
               "ev2bc": evaluate_seeds(env, ev_policies, jax.random.fold_in(key, 2), episodes),
               "ev2bc_per_slot": evaluate_seeds(env, role_policies, jax.random.fold_in(key, 2), episodes)}
    return {
        "layout": layout, "games": dataset.num_episodes, "steps": dataset.num_steps,
        "human_soups_per_game": float(np.mean(dataset.score("soups"))),
        "kept_fraction": kept_fraction(dataset, valuation.weights),
        "kept_fraction_per_slot": kept_fraction(dataset, role_weights),
        "player_values": valuation.values,
        "soups": {m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_seed": v} for m, v in results.items()},
        "train_seconds": timings,
    }


def render(results, command: str, machine: str, seeds: int, episodes: int) -> str:
    lines = ["# EV-Clustering + EV2BC vs BC on human Overcooked data", "", f"Command: `{command}`",
             f"Machine: {machine}", "",
             "| layout | games (train) | human soups/game | BC | EV2BC | EV2BC per slot | decisions kept "
             "(EV2BC / per slot) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["soups"]
        lines.append(f"| {r['layout']} | {r['games']} | {r['human_soups_per_game']:.1f} | "
                     f"{s['bc']['mean']:.2f} ± {s['bc']['std']:.2f} | {s['ev2bc']['mean']:.2f} ± "
                     f"{s['ev2bc']['std']:.2f} | {s['ev2bc_per_slot']['mean']:.2f} ± {s['ev2bc_per_slot']['std']:.2f} | "
                     f"{r['kept_fraction']:.0%} / {r['kept_fraction_per_slot']:.0%} |")
    lines += ["", f"Soups per game (mean ± std over {seeds} seeds; {episodes} evaluation games per seed). "
              "Evaluation partner: the learned policy plays both cooks (self-play) in the JaxMARL layout, "
              "with the human games' horizon. The human column is the train split's own mean.",
              "", "EV2BC keeps the players whose cluster EV is above 0; EV2BC per slot applies that rule within "
              "each role (slot), to the EVs centred on the role's mean, so that both cooks' roles keep data."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layouts", default="cramped_room,asymmetric_advantages")
    parser.add_argument("--updates", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--clusters", type=int, default=3, help="EV-Clustering K (0: chosen by held-out error)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    key = jax.random.key(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, layout in enumerate(args.layouts.split(",")):
            results.append(run_layout(layout, updates=args.updates, seeds=args.seeds,
                                      clusters=args.clusters or None, episodes=args.episodes,
                                      key=jax.random.fold_in(key, i), workdir=Path(tmp)))
            print(json.dumps({k: results[-1][k] for k in ("layout", "soups")}), file=sys.stderr)
    device = jax.devices()[0].platform
    machine = f"{platform.processor() or platform.machine()}, JAX {jax.__version__} on {device}"
    command = "python benchmarks/run_overcooked_human.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    args.out.mkdir(parents=True, exist_ok=True)
    text = render(results, command, machine, args.seeds, args.episodes)
    (args.out / f"overcooked-human-{device}.json").write_text(json.dumps(
        {"command": command, "machine": machine, "results": results}, indent=1))
    (args.out / f"overcooked-human-{device}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
