"""Foundation benchmarks: environment throughput, dataset writing, behaviour-cloning updates.

    python benchmarks/run_foundation.py [--quick] [--out benchmarks/results]

Measures
  1. raw JaxMARL simple_spread steps/s vs the same environment through teamsift's
     interface (jit + vmap over 1024 envs + lax.scan over 100 steps; target >= 90%);
  2. dataset write throughput (transitions/s) of `teamsift.data.write_dataset`;
  3. BC updates/s for 1 and for 5 vmapped seeds, against a bare jitted `lax.scan` loop of
     the same network (MLP 64-64 with agent ids), optimiser and batch (target >= 80%).
     teamsift's rate is one whole `teamsift.engine.fit` call (BC's learner, one log point
     at the end): moving the data to the device, init, the chunked updates and the host
     side of the loop; its programs are compiled by the warm-up call, not timed.

Results go to OUT/foundation-<device>.json and .md with the command line and the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from teamsift import envs
from teamsift.algos import bc
from teamsift.engine import RunConfig, fit
from teamsift.machine import machine  # noqa: F401  (imported by the other benchmark scripts)
from teamsift.collect import collect_arrays, random_policy
from teamsift.data import load_dataset, write_dataset
from teamsift.envs._jaxmarl import import_jaxmarl
from teamsift.nets import AgentNetConfig, apply_step, init_params


def timed(fn, repeats: int = 3) -> float:
    """Best wall-clock seconds of `fn()` over `repeats` runs (after one warm-up run)."""
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


# --- 1. environment throughput -------------------------------------------------------------

def env_throughput(num_envs: int, num_steps: int) -> dict:
    spread = import_jaxmarl("jaxmarl.environments.mpe.simple_spread")
    raw = spread.SimpleSpreadMPE(num_agents=3, action_type="Discrete")
    agents = raw.agents

    @jax.jit
    def run_raw(key):
        keys = jax.random.split(key, num_envs)
        _, states = jax.vmap(raw.reset)(keys)

        def body(carry, step_key):
            states = carry
            act_keys = jax.random.split(step_key, num_envs)
            actions = jax.vmap(lambda k: {a: jax.random.randint(jax.random.fold_in(k, i), (), 0, 5)
                                          for i, a in enumerate(agents)})(act_keys)
            step_keys = jax.random.split(jax.random.fold_in(step_key, 1), num_envs)
            obs, states, rewards, dones, infos = jax.vmap(raw.step_env)(step_keys, states, actions)
            return states, rewards[agents[0]].sum()

        return jax.lax.scan(body, states, jax.random.split(key, num_steps))[1]

    env = envs.make("mpe_spread", episode_length=10**9)

    @jax.jit
    def run_ours(key):
        keys = jax.random.split(key, num_envs)
        first = jax.vmap(env.reset)(keys)

        def body(carry, step_key):
            env_states = carry
            actions = jax.random.randint(step_key, (num_envs, env.spec.num_agents), 0, env.spec.num_actions)
            step_keys = jax.random.split(jax.random.fold_in(step_key, 1), num_envs)
            out = jax.vmap(env.step)(step_keys, env_states, actions)
            return out.env_state, out.reward.sum()

        return jax.lax.scan(body, first.env_state, jax.random.split(key, num_steps))[1]

    key = jax.random.key(0)
    raw_s = timed(lambda: run_raw(key))
    ours_s = timed(lambda: run_ours(key))
    steps = num_envs * num_steps
    return {"num_envs": num_envs, "num_steps": num_steps, "raw_jaxmarl_steps_per_s": steps / raw_s,
            "teamsift_steps_per_s": steps / ours_s, "ratio": raw_s / ours_s}


# --- 2. dataset writing --------------------------------------------------------------------

def write_throughput(num_episodes: int) -> dict:
    env = envs.make("CN_3ls3l")
    arrays = collect_arrays(env, random_policy(env.spec), jax.random.key(1), num_episodes)
    scores = {k: v for k, v in arrays.pop("scores").items() if k != "return"}
    num_steps = int(arrays["reward"].shape[0])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = write_dataset(Path(tmp) / "ds", spec=env.spec, scores=scores, **arrays)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        load_dataset(path)
        load_s = time.perf_counter() - start
        size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return {"env": env.spec.env_id, "episodes": num_episodes, "transitions": num_steps,
            "write_transitions_per_s": num_steps / write_s, "write_s": write_s,
            "validating_load_s": load_s, "bytes": size}


# --- 3. BC update throughput ---------------------------------------------------------------

def bare_bc_loop(data: dict, net: AgentNetConfig, config: bc.BCConfig, updates: int):
    """The same network, loss, optimiser and batch, written as one plain jitted scan."""
    optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.rmsprop(config.learning_rate))
    batch_size = config.batch_size * 8
    length = data["obs"].shape[0]

    def loss_fn(params, obs, actions, avail):
        logits = apply_step(net, params, obs, None)[0]
        logits = jnp.where(avail, logits, -1e9)
        log_probs = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_probs, actions[..., None], axis=-1))

    @jax.jit
    def run(params, key, obs, actions, avail):
        opt_state = optimizer.init(params)

        def body(carry, k):
            params, opt_state = carry
            index = jax.random.randint(k, (batch_size,), 0, length)
            loss, grads = jax.value_and_grad(loss_fn)(params, obs[index], actions[index], avail[index])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        return jax.lax.scan(body, (params, opt_state), jax.random.split(key, updates))[1]

    params = init_params(net, jax.random.key(0))
    return lambda: run(params, jax.random.key(1), data["obs"], data["actions"], data["avail"])


def bc_throughput(updates: int, batch_size: int) -> dict:
    env = envs.make("mpe_spread")
    with tempfile.TemporaryDirectory() as tmp:
        arrays = collect_arrays(env, random_policy(env.spec), jax.random.key(2), 400)
        arrays.pop("scores")
        dataset = load_dataset(write_dataset(Path(tmp) / "ds", spec=env.spec, **arrays))
        config = dataclasses.replace(bc.BCConfig(), batch_size=batch_size, recurrent=False)
        learner = bc.learner(config, dataset)
        result = {"batch_transitions": batch_size * 8, "network": "MLP 64-64 + agent id", "updates": updates}
        for seeds in (1, 5):
            run = RunConfig(updates=updates, seeds=seeds, log_every=updates, progress=False)
            seconds = timed(lambda: fit(learner, dataset, jax.random.key(3), run).state, repeats=3)
            result[f"teamsift_{seeds}_seed_updates_per_s"] = updates / seconds
        net = bc.net_config(config, env.spec)
        data = bc.prepare(dataset, {})  # obs, actions, avail on the device
        bare = bare_bc_loop(data, net, config, updates)
        result["bare_scan_updates_per_s"] = updates / timed(bare, repeats=3)
    result["ratio_1_seed_vs_bare"] = result["teamsift_1_seed_updates_per_s"] / result["bare_scan_updates_per_s"]
    result["cost_5_seeds_vs_1"] = result["teamsift_1_seed_updates_per_s"] / result["teamsift_5_seed_updates_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    sizes = dict(envs=256, steps=50, episodes=500, updates=500) if args.quick else \
        dict(envs=1024, steps=100, episodes=20_000, updates=5_000)
    report = {"command": "python " + " ".join(sys.argv), "machine": machine(), "sizes": sizes}
    report["env_throughput"] = env_throughput(sizes["envs"], sizes["steps"])
    print(json.dumps(report["env_throughput"]), file=sys.stderr)
    report["dataset_write"] = write_throughput(sizes["episodes"])
    print(json.dumps(report["dataset_write"]), file=sys.stderr)
    report["bc_updates"] = bc_throughput(sizes["updates"], batch_size=12)
    print(json.dumps(report["bc_updates"]), file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    tag = report["machine"]["device"].split(":")[0] + ("-quick" if args.quick else "")
    (args.out / f"foundation-{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"foundation-{tag}.md").write_text(render(report))
    print(render(report))


def render(report: dict) -> str:
    env, write, upd, m = report["env_throughput"], report["dataset_write"], report["bc_updates"], report["machine"]
    return f"""# Foundation benchmark

Command: `{report['command']}`
Machine: {m['cpu']}, {m['cores']} cores, JAX {m['jax']} on {m['device']}, Python {m['python']}

| measure | value |
|---|---|
| raw JaxMARL simple_spread (jit+vmap {env['num_envs']}+scan {env['num_steps']}) | {env['raw_jaxmarl_steps_per_s']:,.0f} steps/s |
| same through teamsift `mpe_spread` | {env['teamsift_steps_per_s']:,.0f} steps/s ({100 * env['ratio']:.0f}% of raw; target >= 90%) |
| dataset write ({write['transitions']:,} transitions of {write['env']}) | {write['write_transitions_per_s']:,.0f} transitions/s ({write['bytes'] / 2**20:.1f} MiB) |
| validating memory-mapped load | {write['validating_load_s']:.3f} s |
| BC, 1 seed (batch {upd['batch_transitions']}, {upd['network']}) | {upd['teamsift_1_seed_updates_per_s']:,.0f} updates/s |
| BC, 5 vmapped seeds | {upd['teamsift_5_seed_updates_per_s']:,.0f} updates/s per seed-program ({upd['cost_5_seeds_vs_1']:.2f}x the time of 1 seed) |
| bare jitted lax.scan, same net and batch | {upd['bare_scan_updates_per_s']:,.0f} updates/s (teamsift 1 seed = {100 * upd['ratio_1_seed_vs_bare']:.0f}%; target >= 80%) |
"""


if __name__ == "__main__":
    main()
