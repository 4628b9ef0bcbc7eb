"""Pools benchmark: training time and returns of the committed pools, and dataset
generation throughput against raw environment throughput.

    python benchmarks/run_pools.py [--pools pools] [--envs a,b] [--episodes 2000]

For every environment with pools: the recorded MAPPO training time and timesteps, the
evaluated return of the random / medium / expert pools (each slot drawn from the pool,
200 episodes, 95% CI), and throughput in transitions/s of
  * raw: the environment stepped under jit + vmap + scan with uniformly random actions;
  * generation: `generate_from_spec` with SIT's low-quality composition (or [all e]),
    rollouts, packing and the atomic dataset write included.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).parent))
from run_foundation import machine  # noqa: E402

from teamsift import envs  # noqa: E402
from teamsift.collect.datasets import generate_from_spec  # noqa: E402
from teamsift.collect.pools import list_pools, load_pools  # noqa: E402
from teamsift.collect.suites import SIT_SUITE  # noqa: E402
from teamsift.data import load_dataset  # noqa: E402


def raw_throughput(env, num_envs: int = 256) -> float:
    steps = env.spec.episode_length

    @jax.jit
    def run(key):
        first = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def body(env_states, step_key):
            if env.spec.discrete:
                actions = jax.random.randint(step_key, (num_envs, env.spec.num_agents), 0, env.spec.num_actions)
            else:
                actions = jax.random.uniform(step_key, (num_envs,) + env.spec.action_shape, minval=-1, maxval=1)
            out = jax.vmap(env.step)(jax.random.split(step_key, num_envs), env_states, actions)
            return out.env_state, out.reward

        return jax.lax.scan(body, first.env_state, jax.random.split(key, steps))[1]

    jax.block_until_ready(run(jax.random.key(0)))
    start = time.perf_counter()
    jax.block_until_ready(run(jax.random.key(1)))
    return num_envs * steps / (time.perf_counter() - start)


def generation_throughput(env, pools, spec: str, episodes: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        generate_from_spec(env, pools, spec, episodes, jax.random.key(0), Path(tmp) / "warm")  # compile once
        start = time.perf_counter()
        path = generate_from_spec(env, pools, spec, episodes, jax.random.key(1), Path(tmp) / "ds")
        seconds = time.perf_counter() - start
        steps = load_dataset(path).num_steps
    return steps / seconds, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pools", type=Path, default=Path("pools"))
    parser.add_argument("--envs", default=None)
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    names = args.envs.split(",") if args.envs else list_pools(args.pools)
    rows = {}
    for env_id in names:
        pools = load_pools(env_id, args.pools)
        env = envs.make(env_id, **pools.env_kwargs)
        spec = SIT_SUITE.get(env_id, {}).get("low", "100%[all e]")
        gen, steps = generation_throughput(env, pools, spec, args.episodes)
        rows[env_id] = {
            "train_seconds": pools.info.get("train_seconds"), "timesteps": pools.info.get("timesteps"),
            "random_policy_return": pools.random_return["mean"],
            "pool_returns": pools.info.get("level_returns", {}),
            "checkpoints_per_pool": {lvl: int(len(pools.members(lvl))) for lvl in ("random", "medium", "expert")},
            "raw_steps_per_s": raw_throughput(env), "generation_spec": spec,
            "generation_transitions_per_s": gen, "generation_transitions": steps,
        }
        print(json.dumps({env_id: rows[env_id]}), file=sys.stderr)
    report = {"command": "python " + " ".join(sys.argv), "machine": machine(), "pools": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    tag = report["machine"]["device"].split(":")[0]
    (args.out / f"pools-{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"pools-{tag}.md").write_text(render(report))
    print(render(report))


def render(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Pools benchmark", "",
        f"Command: `{report['command']}`",
        f"Machine: {m['cpu']}, {m['cores']} cores, JAX {m['jax']} on {m['device']}", "",
        "| env | MAPPO steps | train time | random policy | random pool | medium pool | expert pool | raw env steps/s | generation transitions/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for env_id, row in report["pools"].items():
        pooled = row["pool_returns"]

        def cell(level):
            if level not in pooled:
                return "(empty)"
            s = pooled[level]
            return f"{s['mean']:.2f} [{s['ci95_low']:.2f}, {s['ci95_high']:.2f}] ({row['checkpoints_per_pool'][level]})"

        lines.append(
            f"| {env_id} | {row['timesteps']:,} | {row['train_seconds']:.0f} s | {row['random_policy_return']:.2f} | "
            f"{cell('random')} | {cell('medium')} | {cell('expert')} | {row['raw_steps_per_s']:,.0f} | "
            f"{row['generation_transitions_per_s']:,.0f} ({100 * row['generation_transitions_per_s'] / row['raw_steps_per_s']:.0f}%) |"
        )
    lines += ["", "Pool returns: mean [95% CI] with every slot drawn from the pool, 200 episodes (number of checkpoints).",
              "Generation: SIT's low-quality composition for the environment (else [all e]), rollouts, packing and "
              "the atomic write included."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
