"""SIT Fig. 1(f)'s "alternative" (claim S27 of docs/claims.md): on an agent-wise imbalanced
dataset, randomly exchanging the agents' local observations and actions performs about
like ICQ on the data as it is, "since the proportion of the medium-quality individual data
in the data replay does not change under the constraint of the total reward".

The exchange: in every episode the individual trajectories of agents of one type (their
observations, available actions and actions, the final ones included) are permuted among
those agents' slots by a permutation drawn per episode from an explicit key; the global
state and the team reward stay. ICQ then trains on the exchanged data with the `teamsift
bench sit` settings (its paper defaults, 5 seeds in one vmapped program) and is evaluated
as the bench evaluates it (greedy, 100 episodes per seed), beside ICQ on the data as it is
with the same keys.

    python benchmarks/run_sit_exchange.py [--env CN_3ls3l] [--quality low] [--updates 1500]

Writes benchmarks/results/sit-exchange-<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import jax
import numpy as np

from teamsift.bench import sit as sit_bench
from teamsift.collect.suites import SIT_SUITE
from teamsift.data import load_dataset
from teamsift.data.format import Dataset
from teamsift.envs import make
from teamsift.fileio import atomic_write_text
from teamsift.machine import describe
from teamsift.machine import machine as host  # `machine` names the report's field

AGENT_STEP_FIELDS = ("obs", "actions", "avail")  # [N, A, ...]
AGENT_FINAL_FIELDS = ("final_obs", "final_avail")  # [E, A, ...]
AGENT_EPISODE_COLUMNS = ("agent_ids", "behaviour", "policy_ids")  # [E, A]


def exchange_permutations(key: jax.Array, num_episodes: int, agent_types) -> np.ndarray:
    """[E, A]: slot a of episode e takes the trajectory of slot perm[e, a]; one permutation
    per episode and agent type (keys split from fold_in(key, type index))."""
    types = np.asarray(agent_types)
    perm = np.tile(np.arange(len(types)), (num_episodes, 1))
    for n, t in enumerate(np.unique(types)):
        slots = np.flatnonzero(types == t)
        if len(slots) > 1:
            keys = jax.random.split(jax.random.fold_in(key, n), num_episodes)
            order = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, len(slots)))(keys))
            perm[:, slots] = slots[order]
    return perm


def exchanged(dataset: Dataset, key: jax.Array) -> tuple[Dataset, np.ndarray]:
    """The dataset with every episode's same-type agents' trajectories permuted (in memory)."""
    perm = exchange_permutations(key, dataset.num_episodes, dataset.spec.agent_types)
    step_perm = perm[dataset.episode_index]  # [N, A]
    steps = dict(dataset.steps)
    for name in AGENT_STEP_FIELDS:
        if name in steps:
            steps[name] = np.take_along_axis(np.asarray(steps[name]), _expand(step_perm, steps[name].ndim), axis=1)
    for name in AGENT_FINAL_FIELDS:
        if name in steps:
            steps[name] = np.take_along_axis(np.asarray(steps[name]), _expand(perm, steps[name].ndim), axis=1)
    episodes = dict(dataset.episodes)
    for name in AGENT_EPISODE_COLUMNS:
        if name in episodes:
            episodes[name] = np.take_along_axis(np.asarray(episodes[name]), perm, axis=1)
    return Dataset(dataset.path, dataset.meta, dataset.spec, episodes, steps), perm


def _expand(index: np.ndarray, ndim: int) -> np.ndarray:
    return index.reshape(index.shape + (1,) * (ndim - index.ndim))


def slot_level_shares(dataset: Dataset) -> dict:
    levels = np.asarray(dataset.episodes["behaviour"]).astype(str)
    return {f"slot {a}": {str(level): float(np.mean(levels[:, a] == level)) for level in np.unique(levels)}
            for a in range(levels.shape[1])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="CN_3ls3l")
    parser.add_argument("--quality", default="low")
    parser.add_argument("--updates", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0, help="the bench seed (dataset and keys)")
    parser.add_argument("--data-dir", type=Path, default=Path("datasets/bench-sit"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    bench = sit_bench.SITBenchConfig(envs=(args.env,), qualities=(args.quality,), updates=args.updates,
                                     data_dir=str(args.data_dir), seed=args.seed)
    spec = SIT_SUITE[args.env][args.quality]
    root = jax.random.key(args.seed)
    path = sit_bench.dataset_path(bench, args.env, args.quality)
    if not path.is_dir():
        parser.error(f"{path}: no dataset; `teamsift bench sit --envs {args.env} --quality {args.quality} "
                     f"--data-dir {args.data_dir}` builds it")
    dataset = load_dataset(path)
    env = make(args.env)
    trainer = sit_bench.Trainer(bench, progress=True)
    cell_key = jax.random.fold_in(root, 1)  # the same training and evaluation keys for both cells
    variants = {"ICQ": dataset}
    variants["ICQ, agents exchanged"], perm = exchanged(dataset, jax.random.fold_in(root, 2))
    report = {"command": shlex.join(["python", "benchmarks/run_sit_exchange.py", *(argv or sys.argv[1:])]),
              "machine": describe(host()),
              "dataset": f"{args.env} {args.quality} ({spec}, {dataset.num_episodes:,} episodes)",
              "behavior": float(np.mean(dataset.returns)), "updates": args.updates, "cells": {},
              "slot_levels": {name: slot_level_shares(d) for name, d in variants.items()},
              "episodes_permuted": float(np.mean(np.any(perm != np.arange(perm.shape[1]), axis=1)))}
    for name, data in variants.items():
        started = time.perf_counter()
        cell = sit_bench.run_cell(trainer, "ICQ", env, data, cell_key)
        cell["seconds"] = time.perf_counter() - started
        report["cells"][name] = cell
        print(name, cell["mean"], cell["std"], file=sys.stderr, flush=True)
    device = jax.devices()[0].platform
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sit-exchange-{device}.json"
    atomic_write_text(path, json.dumps(report, indent=1) + "\n")
    atomic_write_text(path.with_suffix(".md"), render(report))
    print(render(report))


def render(report: dict) -> str:
    lines = ["# SIT Fig. 1(f): ICQ on the data as it is and with the agents' trajectories exchanged (claim S27)", "",
             f"Command: `{report['command']}`", f"Machine: {report['machine']}", "",
             f"Dataset: {report['dataset']}; behavior (the data's mean return) {report['behavior']:.2f}. ICQ at "
             f"{report['updates']:,} updates, the `teamsift bench sit` settings: 5 seeds, greedy evaluation, 100 "
             "episodes per seed, the same training and evaluation keys for both rows. Exchanged: every episode's "
             "same-type agents' observations, available actions and actions permuted among their slots "
             f"({report['episodes_permuted']:.0%} of the episodes changed); state and team reward unchanged.", "",
             "| data | ICQ return (mean ± std over seeds) | sampled actions | seconds | behaviour levels per slot |",
             "|---|---|---|---|---|"]
    for name, cell in report["cells"].items():
        shares = "; ".join(f"{slot}: " + ", ".join(f"{lv} {s:.0%}" for lv, s in levels.items() if s > 0)
                           for slot, levels in report["slot_levels"][name].items())
        other = cell.get("other_mode", {})
        lines.append(f"| {name} | {cell['mean']:.2f} ± {cell['std']:.2f} | "
                     f"{other.get('mean', float('nan')):.2f} ± {other.get('std', float('nan')):.2f} | "
                     f"{cell['seconds']:.0f} | {shares} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
