"""What the training engine costs: `fit` (with metrics rows, TensorBoard events, checkpoints
and the run record) against a bare jitted loop of the same learner's update.

    python benchmarks/run_engine_overhead.py                 # every learner, results/engine-overhead-<device>.{json,md}
    python benchmarks/run_engine_overhead.py --quick         # tiny budgets (a smoke run, not recorded)

For each learner, on a dataset from the committed pools:
  * bare: `jax.jit(vmap over seeds(lax.scan over U updates of learner.update))`, drawing
    uniform batches exactly as the engine's Uniform sampler does, collecting the per-update
    metrics — the update's own arithmetic and nothing else;
  * fit:  `engine.fit` for the same U updates and seeds, logging a metrics row every U/20
    updates (metrics.csv and TensorBoard) and checkpointing every U/4 with orbax, timed from
    its first update to its last checkpoint on disk (the one-time set-up before — device
    arrays, initial states, run record — and the policy files after are not counted: the
    bare loop has neither).
Both are compiled first, then timed in alternating rounds (bare, fit, bare, fit, ...); the
ratio is the fastest fit's updates/s over the fastest bare loop's, in one process.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import teamsift  # noqa: F401  (XLA flags before JAX starts)
from teamsift.algos import pipeline, registry
from teamsift.collect.datasets import generate_from_spec
from teamsift.collect.pools import load_pools
from teamsift.data import Uniform, item_space, load_dataset
from teamsift.engine import RunConfig, fit
from teamsift.engine.fit import draw_items
from teamsift.envs import make
from teamsift.fileio import atomic_write_text
from teamsift.machine import describe, machine

ROOT = Path(__file__).resolve().parents[1]
#: name, dataset (env, composition) or None for an online learner, updates (full / quick), seeds
CASES = (
    ("bc", ("CN_3ls3l", "50%[r,r,r] + 50%[r,r,m]"), (500, 20), 5),
    ("icq", ("CN_3ls3l", "50%[r,r,r] + 50%[r,r,m]"), (150, 6), 5),
    ("sit", ("CN_3ls3l", "50%[r,r,r] + 50%[r,r,m]"), (150, 6), 5),  # Stage III, w/o decomposition (no Stage I)
    ("td3bc", ("halfcheetah_2x3", "100%[r,e]"), (500, 50), 5),
    ("maddpg_cql", ("halfcheetah_2x3", "100%[r,e]"), (20, 4), 5),
    ("mappo", None, (30_000, 10_000), 5),  # the pool trainer on CN_3ls3l; budget in env steps
)


def build(name: str, dataset, budget: int):
    """(learner, inputs) of a case: the registry's learner with its paper defaults."""
    if name == "mappo":  # `budget` env steps shape the learning-rate schedule
        from teamsift.collect import ppo

        env_id = "CN_3ls3l"
        return ppo.make_learner(ppo.config_for(env_id, total_timesteps=budget), make(env_id)), {}
    overrides = {"decomposition": False} if name == "sit" else {}
    spec = pipeline.make_spec(name, overrides=overrides)
    learner = registry.get(name).learner(spec.hyperparameters, dataset)
    if name == "sit":
        from teamsift.algos import sit

        return learner, sit.stage_inputs(spec.hyperparameters, dataset)
    return learner, {}


def dataset_for(env_id: str, spec: str, episodes: int, data_dir: Path):
    path = data_dir / f"{env_id}-{episodes}"
    if not (path / "meta.json").is_file():
        pools = load_pools(env_id, ROOT / "pools")
        env = make(env_id, **pools.env_kwargs)
        generate_from_spec(env, pools, spec, episodes, jax.random.key(0), path, overwrite=True, progress=False)
    return load_dataset(path)


def bare_program(learner, updates: int):
    sampler = Uniform()

    def run(states, update_keys, arrays, sampler_arrays):
        def one_seed(state, seed_key):
            def body(s, i):
                key = jax.random.fold_in(seed_key, i)
                items = draw_items(learner, sampler, sampler_arrays, None, key)
                out = (learner.update(s, key, arrays, items, i) if learner.takes_step
                       else learner.update(s, key, arrays, items))
                return out[0], out[1]

            return jax.lax.scan(body, state, jnp.arange(updates, dtype=jnp.int32))

        return jax.vmap(one_seed)(states, update_keys)

    return jax.jit(run)


def bare_runner(learner, dataset, inputs: dict, updates: int, seeds: int, start=None):
    """A compiled bare loop; calling the returned function times one run of it. `start`: the
    per-seed pytree of a learner that `needs_start` (leading seed axis)."""
    arrays = learner.prepare(dataset, inputs) if learner.prepare is not None else {}
    sampler_arrays = None
    if learner.unit is not None:
        window_start = arrays.get("window_start")
        sampler_arrays = Uniform().arrays(item_space(dataset, learner.unit, window_start), dataset)
    keys = jax.random.split(jax.random.key(0), (seeds, 2))
    if learner.needs_start:
        states = jax.jit(jax.vmap(lambda k, s: learner.init(k, arrays, s)))(keys[:, 0], start)
    else:
        states = jax.jit(jax.vmap(lambda k: learner.init(k, arrays)))(keys[:, 0])
    program = bare_program(learner, updates)
    jax.block_until_ready(program(states, keys[:, 1], arrays, sampler_arrays))  # compile

    def once() -> float:
        started = time.perf_counter()
        jax.block_until_ready(program(states, keys[:, 1], arrays, sampler_arrays))
        return time.perf_counter() - started

    return once


def fit_runner(learner, dataset, inputs: dict, updates: int, seeds: int, tmp: Path, start=None, env=None):
    """`fit` with logs and checkpoints into a fresh run dir; calling the returned function times one run:
    its updates with their logs and checkpoints (`FitResult.train_seconds`, up to the last checkpoint on
    disk), not the set-up that any run pays once (preparing the dataset's device arrays, initialising the
    states, the run record) nor the policy files at the end."""
    runs = iter(range(10**6))

    def once() -> float:
        run = RunConfig(updates=updates, seeds=seeds, log_every=max(1, updates // 20),
                        checkpoint_every=max(1, updates // 4), run_dir=str(tmp / f"run-{next(runs)}"),
                        progress=False)
        return fit(learner, dataset, jax.random.key(0), run, inputs=inputs, start=start, env=env).train_seconds

    once()  # compile
    return once


def interleaved(bare, fitted, rounds: int) -> tuple[list[float], list[float]]:
    """`rounds` alternating (bare, fit) timings: whatever else the machine does hits both alike."""
    times = [], []
    for _ in range(rounds):
        times[0].append(bare())
        times[1].append(fitted())
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="alternating (bare, fit) timings; the fastest of each")
    parser.add_argument("--only", help="comma-separated learners")
    parser.add_argument("--data-dir", type=Path, default=Path("datasets/bench-engine"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    rows = []
    for name, data, budgets, seeds in CASES:
        if args.only and name not in args.only.split(","):
            continue
        dataset = None if data is None else dataset_for(*data, 100 if args.quick else 1000, args.data_dir)
        budget = budgets[1] if args.quick else budgets[0]
        learner, inputs = build(name, dataset, budget)
        updates = budget
        if data is None:  # an online learner: `budget` env steps make its config's number of updates
            from teamsift.collect import ppo

            updates = ppo.config_for("CN_3ls3l", total_timesteps=budget).num_updates
        with tempfile.TemporaryDirectory() as tmp:
            bare_times, fit_times = interleaved(bare_runner(learner, dataset, inputs, updates, seeds),
                                                fit_runner(learner, dataset, inputs, updates, seeds, Path(tmp)),
                                                args.rounds)
            run_dir = sorted(p.name for p in (Path(tmp) / "run-1").iterdir())
        bare, fitted = min(bare_times), min(fit_times)
        env_id = "CN_3ls3l" if data is None else data[0]
        rows.append({"learner": name, "env": env_id, "updates": updates, "seeds": seeds,
                     "bare_seconds": bare_times, "fit_seconds": fit_times, "bare_updates_per_s": updates / bare,
                     "fit_updates_per_s": updates / fitted, "ratio": bare / fitted, "run_dir": run_dir})
        print(json.dumps(rows[-1]), file=sys.stderr)
    if args.quick:
        return 0
    info = machine()
    report = {"machine": describe(info), "command": "python benchmarks/run_engine_overhead.py" + (f" --rounds {args.rounds}" if args.rounds != 3 else ""), "rows": rows}
    lines = ["# Engine overhead: fit against a bare jitted loop of the same update", "",
             f"Machine: {report['machine']}", "", f"Command: `{report['command']}`", "",
             "fit logs a metrics row every U/20 updates (metrics.csv and TensorBoard events) and checkpoints every U/4 "
             "with orbax, timed from its first update to its last checkpoint on disk (the one-time set-up and the "
             "policy files are not counted); both compiled first, then timed in "
             f"{args.rounds} alternating rounds, the fastest of each.", "",
             "| learner | dataset | updates × seeds | bare updates/s | fit updates/s | fit / bare |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['learner']} | {r['env']} | {r['updates']:,} × {r['seeds']} | {r['bare_updates_per_s']:.1f} "
                     f"| {r['fit_updates_per_s']:.1f} | {r['ratio']:.3f} |")
    stem = f"engine-overhead-{info['device'].split(':')[0]}"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / f"{stem}.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(args.out / f"{stem}.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
