"""Suites benchmark: build every ready-made dataset at full size and record how long it took.

    python benchmarks/run_suites.py [--envs a,b] [--out-data DIR] [--keep]

`teamsift suite sit` (SIT Tables 7–9: 10 000 episodes per dataset, low and medium quality)
and `teamsift suite expert` (≈100k expert transitions) for every suite environment whose
pools are committed. Per dataset: episodes, transitions, mean return, wall clock
(rollouts, packing and the atomic write included, compilation too) and transitions/s.
The datasets go to a temporary directory unless --out-data is given.
Writes benchmarks/results/suites-<device>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from teamsift.machine import describe, machine
from teamsift.collect.datasets import expert_dataset, generate_from_spec
from teamsift.collect.pools import PoolError, load_pools
from teamsift.collect.suites import EXPERT_SUITE, EXPERT_TRANSITIONS, SIT_EPISODES, SIT_SUITE
from teamsift.data import load_dataset
from teamsift.envs import make


def build(kind: str, env_id: str, quality: str, spec: str, out: Path, key) -> dict:
    pools = load_pools(env_id)
    env = make(env_id, **pools.env_kwargs)
    started = time.perf_counter()
    if kind == "sit":
        path = generate_from_spec(env, pools, spec, SIT_EPISODES, key, out / f"{env_id}-{quality}", overwrite=True)
    else:
        path = expert_dataset(env, pools, EXPERT_TRANSITIONS, key, out / f"{env_id}-expert", overwrite=True)
    seconds = time.perf_counter() - started
    ds = load_dataset(path)
    return {"suite": kind, "env": env_id, "dataset": quality, "spec": spec, "episodes": ds.num_episodes,
            "transitions": ds.num_steps, "return_mean": float(np.mean(ds.episodes["return"])), "seconds": seconds,
            "transitions_per_s": ds.num_steps / seconds}


def render(report: dict) -> str:
    lines = ["# Ready-made suites at full size", "", f"Machine: {report['machine']} (shared with other jobs)", "",
             f"Command: `{report['command']}`", "",
             "| suite | env | dataset | composition | episodes | transitions | mean return | wall clock | transitions/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['suite']} | {r['env']} | {r['dataset']} | `{r['spec']}` | {r['episodes']:,} | "
                     f"{r['transitions']:,} | {r['return_mean']:.2f} | {r['seconds']:.0f} s | {r['transitions_per_s']:,.0f} |")
    if report.get("missing"):
        lines += ["", "No committed pools (not built): " + ", ".join(report["missing"])]
    lines += ["", "Wall clock includes the jit compilation of the rollout (one per environment and policy bank), "
              "the per-slot checkpoint evaluation, packing and the atomic write; compare the raw environment "
              "throughput in pools-cpu.md."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", default=None, help="comma-separated subset")
    parser.add_argument("--out-data", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    wanted = set(args.envs.split(",")) if args.envs else None
    plan = [("sit", e, q, s) for e, qs in SIT_SUITE.items() for q, s in qs.items()]
    plan += [("expert", e, "expert", s) for e, s in EXPERT_SUITE.items()]
    plan = [p for p in plan if wanted is None or p[1] in wanted]
    info = machine()
    report = {"machine": describe(info), "command": "python " + " ".join(sys.argv), "rows": [], "missing": []}
    stem = args.out / f"suites-{info['device'].split(':')[0]}"
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out_data or Path(tmp)
        for index, (kind, env_id, quality, spec) in enumerate(plan):
            try:
                row = build(kind, env_id, quality, spec, out, jax.random.key(args.seed + index))
            except PoolError:
                if env_id not in report["missing"]:
                    report["missing"].append(env_id)
                continue
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
            stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
            stem.with_suffix(".md").write_text(render(report))
    print(render(report))


if __name__ == "__main__":
    main()
