"""Evaluation with its episodes split over 1, 2 and 4 devices (`teamsift.evaluate.rollout`).

    python benchmarks/run_sharded_envs.py            # results/sharded-envs-<device>.{json,md}
    python benchmarks/run_sharded_envs.py --quick    # 128 episodes, one round (a smoke run, not recorded)

Each device count runs in its own process (the count is fixed when JAX starts; on a CPU,
XLA_FLAGS=--xla_force_host_platform_device_count=D forces D host devices): it evaluates a
stochastic MLP policy (untrained, hidden 64-64) on CN_3ls3l for N episodes, once to compile,
then `rounds` times, and reports the fastest. With forced host devices on a machine of C cores
the D devices share those C cores: this shows the mechanism, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "CN_3ls3l"


def child(episodes: int, rounds: int) -> dict:
    import jax

    import teamsift  # noqa: F401  (XLA flags before JAX starts)
    from teamsift.envs import make
    from teamsift.evaluate import evaluate, rollout
    from teamsift.nets.agent import AgentNetConfig, init_params
    from teamsift.nets.policy import NetworkPolicy

    env = make(ENV_ID)
    spec = env.spec
    net = AgentNetConfig(num_agents=spec.num_agents, obs_dim=spec.obs_dim, num_actions=spec.num_actions,
                         discrete=spec.discrete, hidden=(64, 64), agent_ids=True)
    policy = NetworkPolicy(init_params(net, jax.random.key(0)), net, deterministic=False)
    start = time.perf_counter()
    first = evaluate(env, policy, jax.random.key(1), episodes, chunk=episodes)
    compile_and_run = time.perf_counter() - start
    times = []
    for index in range(rounds):
        start = time.perf_counter()
        result = evaluate(env, policy, jax.random.key(1), episodes, chunk=episodes)
        times.append(time.perf_counter() - start)
        assert (result.per_episode["return"] == first.per_episode["return"]).all()
    layout = rollout(env, policy, jax.random.key(1), episodes, record=False).reward.sharding
    return {"devices": jax.device_count(), "episodes": episodes, "episode_length": spec.episode_length,
            "seconds": min(times), "all_seconds": times, "first_call_seconds": compile_and_run,
            "episode_devices": len(layout.device_set), "layout": str(getattr(layout, "spec", layout)),
            "mean_return": float(first.team_return.mean)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.episodes, args.rounds = 128, 1
    if args.child:
        print(json.dumps(child(args.episodes, args.rounds)))
        return

    rows = []
    for devices in args.devices:
        env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "TEAMSIFT_KEEP_XLA_FLAGS")}
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
        done = subprocess.run([sys.executable, __file__, "--child", "--episodes", str(args.episodes),
                               "--rounds", str(args.rounds)], env=env, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{devices} device(s): {row['seconds']:.3f} s for {row['episodes']} episodes "
              f"(episodes on {row['episode_devices']} device(s), {row['layout']})", flush=True)
        rows.append(row)
    if args.quick:
        return

    import teamsift  # noqa: F401
    from teamsift.fileio import atomic_write_text
    from teamsift.machine import describe, machine

    info = machine()
    device = info["device"].split(":")[0]
    out = ROOT / "benchmarks" / "results" / f"sharded-envs-{device}"
    record = {"machine": info, "env": ENV_ID, "episodes": args.episodes, "rounds": args.rounds, "rows": rows}
    atomic_write_text(out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    base = rows[0]["seconds"]
    lines = [
        "# Evaluation with its episodes split over devices",
        "",
        f"Machine: {describe(info)}",
        "",
        "Command: `python benchmarks/run_sharded_envs.py`",
        "",
        f"`teamsift.evaluate.evaluate` of a stochastic MLP policy (untrained, hidden 64-64) on {ENV_ID}, "
        f"{args.episodes} episodes of {rows[0]['episode_length']} steps in one jitted chunk; each device count "
        f"in its own process with `XLA_FLAGS=--xla_force_host_platform_device_count=D`, compiled first, "
        f"the fastest of {args.rounds} calls.",
        "",
        "| devices | episodes per device | seconds | episodes/s | vs 1 device |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['devices']} | {row['episodes'] // row['episode_devices']} | {row['seconds']:.3f} | "
                     f"{row['episodes'] / row['seconds']:.0f} | {base / row['seconds']:.2f}× |")
    lines += [
        "",
        f"- Forced host devices share this machine's {info['cores']} cores (teamsift's XLA:CPU flags also turn "
        "off Eigen's multi-threading): the table shows the mechanism — "
        "the episode arrays come back split over every device (`episodes per device`), each device running its "
        "slice — not the speed-up of real accelerators.",
        "- The per-episode returns agree across device counts (checked by tests/test_sharded_envs.py).",
        "",
    ]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines))
    print(f"wrote {out}.md")


if __name__ == "__main__":
    main()
