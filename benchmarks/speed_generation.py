"""Dataset generation speed against the raw environment, and `teamsift generate`'s memory.

    python benchmarks/speed_generation.py [--quick]     # prints the rows

* `generation_rows(quick)`: for CN_3ls3l and smax_3m, dataset steps per second of
  `generate_from_spec` from the committed pools with a low-quality composition (rollouts,
  packing and the atomic write to a temporary directory included) against the raw
  environment (`raw_steps_per_second`) at the same number of parallel environments. Both
  are compiled first, then timed in alternating rounds in one process; the best round of
  each is kept (the machine is shared, so the best round is the least disturbed one).
* `generate_memory_rows(sizes)`: the peak resident memory of `teamsift generate` (a child
  process, `ru_maxrss` of RUSAGE_CHILDREN) at each number of episodes, with the size of
  the dataset it wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
POOLS = ROOT / "pools"

#: Low-quality compositions: SIT's for CN_3ls3l; for smax_3m (not in SIT's suite) the one
#: SIT's suite uses for the other SMAX maps.
SPECS = {"CN_3ls3l": "50%[r,r,r] + 50%[r,r,m]", "smax_3m": "50%[all r] + 50%[all m]"}


def raw_steps_per_second(env, num_envs: int, steps: int, rounds: int = 3) -> float:
    """Steps per second of `env` alone: a jitted `lax.scan` of `steps` steps of `vmap`ped
    `env.step` over `num_envs` environments, with uniformly random available actions (random
    in [-1, 1] for continuous actions), each environment reset as soon as its episode ends
    (the reset is computed every step and selected where done, as JaxMARL's own auto-reset
    does). Returns the best of `rounds` timed calls after one compiling call."""
    return _time_best(make_raw(env, num_envs, steps), rounds)


def make_raw(env, num_envs: int, steps: int):
    """The raw baseline as a function of nothing: one call runs `steps` × `num_envs` steps
    (compiled on its first call) and returns their number."""
    import jax
    import jax.numpy as jnp

    spec = env.spec

    def random_actions(key, avail):
        if spec.discrete:
            logits = jnp.where(avail, 0.0, -jnp.inf)
            return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
        return jax.random.uniform(key, spec.action_shape, minval=-1.0, maxval=1.0)

    def one_step(carry, key):
        env_state, avail = carry
        act_key, step_key, reset_key = jax.random.split(key, 3)
        actions = random_actions(act_key, avail)
        out = env.step(step_key, env_state, actions)
        fresh = env.reset(reset_key)
        env_state, avail = jax.tree.map(lambda r, s: jnp.where(out.done, r, s), (fresh.env_state, fresh.avail),
                                        (out.env_state, out.avail))
        return (env_state, avail), out.reward

    @jax.jit
    def run(key):
        first = jax.vmap(env.reset)(jax.random.split(key, num_envs))
        step_keys = jax.random.split(jax.random.fold_in(key, 1), (steps, num_envs))
        (_, _), rewards = jax.lax.scan(jax.vmap(one_step), (first.env_state, first.avail), step_keys)
        return jnp.sum(rewards)

    counter = iter(range(1 << 30))

    def call() -> int:
        jax.block_until_ready(run(jax.random.key(next(counter))))
        return num_envs * steps

    call()  # compile
    return call


def _time_best(call, rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        steps = call()
        best = max(best, steps / (time.perf_counter() - start))
    return best


def make_generation(env_id: str, episodes: int, slots: int | None = None):
    """Generation as a function of nothing: one call writes a dataset of `episodes` episodes
    (a new seed each call) to a temporary directory and returns its number of steps."""
    import jax

    from teamsift import envs
    from teamsift.collect.datasets import generate_from_spec
    from teamsift.collect.pools import load_pools
    from teamsift.data import load_dataset

    pools = load_pools(env_id, POOLS)
    env = envs.make(env_id, **pools.env_kwargs)
    counter = iter(range(1 << 30))
    kwargs = {} if slots is None else {"slots": slots}

    def call() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            path = generate_from_spec(env, pools, SPECS[env_id], episodes, jax.random.key(next(counter)),
                                      Path(tmp) / "ds", **kwargs)
            return load_dataset(path, check_values=False).num_steps

    call()  # compile
    return env, call


def generation_rows(quick: bool) -> list[dict]:
    """Per environment: generation and raw steps/s at the same number of parallel
    environments, and their ratio (best of alternating rounds, compiled first)."""
    from teamsift.collect import rollouts

    rounds = 2 if quick else 4
    rows = []
    for env_id in SPECS:
        episodes = 4000 if quick else 10000
        env, generate = make_generation(env_id, episodes)
        # The environments generation plays at once: its slots for this many episodes.
        parallel = min(episodes, rollouts.default_slots(episodes))
        raw = make_raw(env, parallel, env.spec.episode_length * (1 if quick else 2))
        best = {"generation": 0.0, "raw": 0.0}
        for _ in range(rounds):
            for name, call in (("generation", generate), ("raw", raw)):
                best[name] = max(best[name], _time_best(call, 1))
        rows.append({"env": env_id, "spec": SPECS[env_id], "episodes": episodes, "parallel_envs": parallel,
                     "generation_steps_per_s": round(best["generation"]), "raw_steps_per_s": round(best["raw"]),
                     "ratio": round(best["generation"] / best["raw"], 3), "rounds": rounds})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _dataset_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def generate_memory_rows(sizes, env_id: str = "CN_3ls3l") -> list[dict]:
    """Peak RSS of `teamsift generate ENV OUT --spec … --episodes N` in a child process
    (each size in a fresh process: RUSAGE_CHILDREN's ru_maxrss is the largest child
    reaped so far, so the sizes run in increasing order, each measured by a fresh
    `python` that runs one command) and the size of the dataset on disk."""
    rows = []
    for episodes in sorted(sizes):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "ds"
            args = [sys.executable, "-c", _PEAK, env_id, str(out), "--spec", SPECS[env_id], "--episodes",
                    str(episodes), "--pools", str(POOLS), "--json"]
            started = time.perf_counter()
            done = subprocess.run(args, env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            peak_kib = int(done.stdout.strip().splitlines()[-1])
            rows.append({"env": env_id, "episodes": episodes, "dataset_mib": round(_dataset_bytes(out) / 2**20, 1),
                         "peak_rss_mib": round(peak_kib / 1024, 1), "seconds": round(seconds, 1)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# One child per command: it runs `teamsift generate` in a grandchild and prints that
# grandchild's peak RSS (KiB), so each size is measured on its own.
_PEAK = """
import resource, subprocess, sys
cmd = [sys.executable, "-c", "from teamsift.cli.main import main; import sys; sys.argv = ['teamsift', 'generate'] + sys.argv[1:]; main()"]
done = subprocess.run(cmd + sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
if done.returncode:
    sys.stderr.write(done.stderr[-2000:]); sys.exit(done.returncode)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and fewer rounds")
    args = parser.parse_args()
    rows = {"generation": generation_rows(args.quick),
            "generate_memory": generate_memory_rows([500, 2000, 8000] if args.quick else [2000, 20000, 80000])}
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
