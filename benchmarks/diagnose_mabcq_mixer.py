"""Diagnosis: why MABCQ ended below its untrained self, and MACQL's seeds spread, on CN.

SIT's appendix B writes their value decomposition "Q(τ, a) = w_i Q_i(τ_i, a_i) + b" and says it
"follows Yang et al. (2021)", whose reference mixer normalises the state-conditioned weights
k_i(s) to sum to 1 over the agents. Read without that normalisation, the weights are free to
grow; each one multiplies agent i's overestimation in the max of the target, so the critic
feeds on itself. This script trains both learners with and without the normalisation
(`normalise_mixer`) on the CN_3ls3l data of the offline learners' tests (50%[all e] +
50%[all r], 300 episodes), and reports per run: the critic loss per tenth of training, the
mixer's Σ_i k_i(s) and the mean Q_tot on the data's steps against the data's discounted
returns-to-go, and the greedy policy's return (200 episodes per seed), beside the untrained
policy's and BC's.

    python benchmarks/diagnose_mabcq_mixer.py [--updates 3000] [--seeds 3] [--overwrite]

Writes benchmarks/results/mabcq-mixer-<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from teamsift.algos import bc, mabcq, macql
from teamsift.algos import offline_common as oc
from teamsift.collect.datasets import generate_from_spec
from teamsift.collect.pools import load_pools
from teamsift.data import load_dataset
from teamsift.engine import RunConfig, fit
from teamsift.envs import make
from teamsift.evaluate import evaluate
from teamsift.fileio import atomic_write_text
from teamsift.machine import describe, machine
from teamsift.nets.mixer import mix, mixing_weights

ROOT = Path(__file__).resolve().parents[1]
ENV, COMPOSITION, EPISODES = "CN_3ls3l", "50%[all e] + 50%[all r]", 300
BEHAVIOUR_UPDATES = 1000  # MABCQ's μ


def returns_to_go(batch: dict, gamma: float) -> np.ndarray:
    """Discounted returns-to-go [B, T] of the data's episodes (zero past their ends)."""
    reward, mask = np.asarray(batch["reward"]), np.asarray(batch["mask"], bool)
    out, running = np.zeros_like(reward), np.zeros(reward.shape[0])
    for t in reversed(range(reward.shape[1])):
        running = reward[:, t] + gamma * running * mask[:, t]
        out[:, t] = running
    return out


def critic_on_data(module, config, params, dataset) -> dict:
    """Σ_i k_i(s) and Q_tot at the data's steps and actions, seed by seed, against G_t."""
    net, mixer = module.net_config(config, dataset.spec), module.mixer_config(config, dataset.spec)
    batch = oc.episode_batch(jax.tree.map(jnp.asarray, oc.episode_data(dataset)), jnp.arange(dataset.num_episodes),
                             int(dataset.lengths.max()), config.bootstrap_truncated)
    mask = np.asarray(batch["mask"], bool)
    g = returns_to_go(batch, config.gamma)[mask]
    rows = []
    for seed in range(jax.tree.leaves(params)[0].shape[0]):
        p = jax.tree.map(lambda x: x[seed], params)  # noqa: B023
        q_taken = oc.taken(oc.unroll(net, p["agent"], batch["obs"]), batch["actions"])
        k_sum = np.asarray(jnp.sum(mixing_weights(mixer, p["mixer"], q_taken, batch["state"]), axis=-1))[mask]
        q_tot = np.asarray(mix(mixer, p["mixer"], q_taken, batch["state"]))[mask]
        rows.append({"k_sum": float(k_sum.mean()), "q_tot": float(q_tot.mean()),
                     "q_corr": float(np.corrcoef(q_tot, g)[0, 1])})
    return {"k_sum": [r["k_sum"] for r in rows], "q_tot": [r["q_tot"] for r in rows],
            "q_corr": [r["q_corr"] for r in rows], "returns_to_go": float(g.mean())}


def tenths(losses: np.ndarray) -> list[float]:
    """Mean over seeds of each tenth of training's loss."""
    return [float(np.mean(part)) for part in np.array_split(np.asarray(losses, np.float64), 10, axis=1)]


def policy_return(env, result, seeds: int, key) -> list[float]:
    return [float(evaluate(env, result.policy(s), key, 200).scores["return"].mean) for s in range(seeds)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--overwrite", action="store_true", help="replace results this device already has")
    args = parser.parse_args(argv)
    info = machine()
    out = ROOT / "benchmarks" / "results" / f"mabcq-mixer-{jax.devices()[0].platform}"
    if out.with_suffix(".json").exists() and not args.overwrite:
        parser.error(f"{out.with_suffix('.json')} exists; pass --overwrite to replace it")
    env = make(ENV)
    key, eval_key = jax.random.key(1), jax.random.key(2)
    run = RunConfig(updates=args.updates, seeds=args.seeds, log_every=max(1, args.updates // 100), progress=False)
    report = {"command": shlex.join(["python", "benchmarks/diagnose_mabcq_mixer.py", *(argv or sys.argv[1:])]),
              "machine": describe(info), "updates": args.updates, "seeds": args.seeds,
              "data": f"{ENV} {COMPOSITION}, {EPISODES} episodes", "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = generate_from_spec(env, load_pools(ENV, ROOT / "pools"), COMPOSITION, EPISODES, jax.random.key(0),
                                  Path(tmp) / "cn")
        dataset = load_dataset(path)
        report["behavior"] = float(np.mean(np.asarray(dataset.episodes["return"])))
        behaviour_key, q_key = jax.random.split(key)
        behaviour_run = RunConfig(updates=BEHAVIOUR_UPDATES, seeds=args.seeds, log_every=100, progress=False)
        behaviour = fit(bc.learner(mabcq.behaviour_config(mabcq.MABCQConfig()), dataset), dataset, behaviour_key,
                        behaviour_run)
        report["bc"] = policy_return(env, behaviour, args.seeds, eval_key)
        for name, module, config_class in (("MABCQ", mabcq, mabcq.MABCQConfig), ("MACQL", macql, macql.MACQLConfig)):
            for normalised in (False, True):
                config = config_class(normalise_mixer=normalised)
                learner = module.learner(config, dataset)
                start = behaviour.state.params if name == "MABCQ" else None
                began = time.perf_counter()
                untrained = fit(learner, dataset, q_key, RunConfig(updates=0, seeds=args.seeds, progress=False),
                                start=start)
                result = fit(learner, dataset, q_key, run, start=start)
                row = {"learner": name, "normalise_mixer": normalised, "loss_tenths": tenths(result.history["loss"]),
                       "untrained": policy_return(env, untrained, args.seeds, eval_key),
                       "return": policy_return(env, result, args.seeds, eval_key),
                       **critic_on_data(module, config, result.state.params, dataset),
                       "seconds": time.perf_counter() - began}
                print(json.dumps(row), flush=True)
                report["rows"].append(row)
    atomic_write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write_text(out.with_suffix(".md"), render(report))
    print(render(report))


def mean_std(values) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def render(report: dict) -> str:
    lines = ["# MABCQ and MACQL: the mixer's weights, normalised or not", "",
             f"Command: `{report['command']}`", f"Machine: {report['machine']}", "",
             f"Data: {report['data']} (the offline learners' test data; mean return {report['behavior']:.2f}). "
             f"{report['updates']:,} updates, {report['seeds']} seeds (one vmapped program); MABCQ's μ: "
             f"{BEHAVIOUR_UPDATES:,} BC updates, whose greedy policy returns {mean_std(report['bc'])}. Returns: mean ± "
             "std over seeds of 200 evaluation episodes each. Σ k: the mixer's weights summed over the agents, mean "
             "over the data's steps; Q_tot: the critic at the data's steps and actions (the data's discounted "
             "returns-to-go average {:.2f}; the critic bootstraps past the time limit, so it should sit below them); "
             "corr: Pearson correlation of the two.".format(report["rows"][0]["returns_to_go"]), "",
             "| learner | mixer weights | untrained | trained | loss, first → last tenth | Σ k | Q_tot | corr |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        loss = r["loss_tenths"]
        lines.append(f"| {r['learner']} | {'normalised' if r['normalise_mixer'] else 'unnormalised'} | "
                     f"{mean_std(r['untrained'])} | {mean_std(r['return'])} | {loss[0]:.3g} → {loss[-1]:.3g} | "
                     f"{np.mean(r['k_sum']):.3g} | {np.mean(r['q_tot']):.4g} | {np.mean(r['q_corr']):.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
