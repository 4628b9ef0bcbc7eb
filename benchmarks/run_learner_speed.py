"""Offline learners' speed: updates/s of every learner of `teamsift bench sit`, for 1 seed
and for 5 seeds trained as one vmapped program, and SIT's stages.

    python benchmarks/run_learner_speed.py [--updates 200] [--ardnem-updates 500]
        [--envs CN_3ls3l,halfcheetah_2x3] [--episodes 500] [--data-dir /tmp/ts/speed-data]
        [--methods BC,TD3+BC]

With --methods only those learners are timed; the other rows of an earlier result of the
same budget (updates, ARDNEM updates, episodes) are kept.

Every learner trains through `teamsift.engine.fit` (via the bench's `Trainer`, i.e.
`teamsift.algos.pipeline.train`). For every learner and seed count the same call runs
twice with the same config: the first compiles (the engine caches its programs per
learner config, sampler and chunk size) and runs, the second only runs. What is timed is
the `fit` call of the learner (`FitResult.seconds`: moving the data to the device,
initialising every seed, all the updates in their jitted chunks and the host side of the
loop — logs every min(500, updates) updates; no checkpoints, no evaluation). Valuation
weights, samplers and the making of the spec are outside it. updates/s = updates /
(second call's seconds); compile ≈ first − second. SIT is timed on its main fit (Stage
III); its Stage I (ARDNEM: a `fit` of `ardnem.learner`, then `ardnem.result`'s
decomposition of the dataset) and Stage II (building DPER's buffers) are timed once per
dataset, Stage I on the second of two identical calls. MABCQ's time is the sum of its two
fits: the behaviour model μ, trained for the same number of updates (its bench setting),
and the Q learner, so its rate counts a μ update and a Q update.
Datasets are SIT's low-quality compositions (`teamsift.bench.sit.SIT_SUITE`), drawn from
the committed pools. Results go to OUT/learner-speed-<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax

from teamsift.algos import pipeline, registry
from teamsift.bench import sit as sit_bench
from teamsift.machine import describe, machine
from teamsift.bench.report import merge_previous, named_key, write_report
from teamsift.data import dper
from teamsift.engine import RunConfig


def fit_seconds(result: pipeline.TrainResult) -> float:
    """The seconds of the method's `fit` calls: the learner's, and MABCQ's behaviour model's."""
    behaviour = result.stages.get("behaviour")
    return result.fit.seconds + (behaviour.seconds if behaviour is not None else 0.0)


def time_method(trainer: sit_bench.Trainer, method: str, dataset, key: jax.Array) -> dict:
    """Two identical calls: (compile + run) seconds and run seconds of their `fit`s."""
    seconds = []
    for _ in range(2):
        # No run directory: fresh=True, as a Trainer without runs_dir asks to resume (which needs one)
        result = trainer(method, dataset, key, fresh=True)
        jax.block_until_ready(result.fit.state)
        seconds.append(fit_seconds(result))
    updates = int(result.fit.updates)
    return {"updates": updates, "first_seconds": seconds[0], "run_seconds": seconds[1],
            "updates_per_s": updates / seconds[1], "compile_seconds": max(0.0, seconds[0] - seconds[1])}


def time_stages_1_2(bench: sit_bench.SITBenchConfig, dataset) -> dict:
    """SIT Stage I (ARDNEM: its `fit` and the decomposition of the dataset) and Stage II
    (DPER's buffers). Stage I runs twice with the bench's Stage I key and schedule (the
    Trainer's: a log point every min(500, updates)), the first compiling, the second timed;
    the SIT cells timed later train (or load) their own Stage I, outside their timing."""
    spec = sit_bench.method_spec("SIT", bench)
    config = spec.ardnem
    updates = bench.ardnem_updates or registry.get("ardnem").updates
    run = RunConfig(updates=updates, log_every=min(500, updates), progress=False, label="Stage I (ARDNEM)")
    for _ in range(2):  # compile + run, then run
        started = time.perf_counter()
        result = pipeline.run_stage1(config, dataset, sit_bench.stage1_key(bench), run, updates)
        stage1 = time.perf_counter() - started
    started = time.perf_counter()
    jax.block_until_ready(dper.build_dper(result, dataset, spec.sampler_config))
    stage2 = time.perf_counter() - started
    return {"stage1_updates": updates, "stage1_seconds": stage1,
            "stage1_updates_per_s": updates / stage1, "stage2_seconds": stage2}


BUDGET = ("updates", "ardnem_updates", "episodes")


def replace_row(rows: list[dict], row: dict) -> None:
    same = [i for i, old in enumerate(rows) if (old["env"], old["method"]) == (row["env"], row["method"])]
    if same:
        rows[same[0]] = row
    else:
        rows.append(row)


def run(args) -> dict:
    info = machine()
    device = info["device"].split(":")[0]
    report = {"machine": describe(info), "command": "python benchmarks/run_learner_speed.py " + " ".join(sys.argv[1:]),
              "config": {"updates": args.updates, "ardnem_updates": args.ardnem_updates, "episodes": args.episodes},
              "rows": []}
    chosen = tuple(m.strip() for m in args.methods.split(",")) if args.methods else None
    if chosen is not None:
        report = merge_previous(report, Path(args.out) / f"learner-speed-{device}.json", BUDGET, ("rows", "notes"))
    root = jax.random.key(0)
    for env_id in args.envs.split(","):
        base = sit_bench.SITBenchConfig(envs=(env_id,), episodes=args.episodes, num_seeds=1, updates=args.updates,
                                        ardnem_updates=args.ardnem_updates, data_dir=args.data_dir)
        spec = sit_bench.SIT_SUITE[env_id]["low"]
        dataset = sit_bench.ensure_dataset(base, env_id, "low", spec, named_key(root, env_id, "data"), progress=True)
        methods = sit_bench.DISCRETE_METHODS if dataset.spec.discrete else sit_bench.CONTINUOUS_METHODS
        methods = tuple(m for m in methods if m != "SIT*" and (chosen is None or m in chosen))  # SIT* = SIT's program
        if "SIT" in methods:
            stages = time_stages_1_2(base, dataset)
            print(f"{env_id}: Stage I {stages['stage1_updates_per_s']:.0f} updates/s, Stage II "
                  f"{stages['stage2_seconds']:.1f} s", file=sys.stderr)
        for method in methods:
            row = {"env": env_id, "method": method, "dataset_episodes": dataset.num_episodes}
            for seeds in (1, 5):
                trainer = sit_bench.Trainer(dataclasses.replace(base, num_seeds=seeds), progress=False)
                row[f"seeds_{seeds}"] = time_method(trainer, method, dataset, named_key(root, env_id, method))
                print(f"{env_id} {method} x{seeds}: {row[f'seeds_{seeds}']['updates_per_s']:.1f} updates/s",
                      file=sys.stderr)
            if method == "SIT":
                row["stages"] = stages
            replace_row(report["rows"], row)
            save(report, Path(args.out), device)
    return report


def render(report: dict) -> str:
    lines = ["# Offline learners: updates per second, 1 seed vs 5 vmapped seeds", "",
             f"Machine: {report['machine']}", "",
             "Commands: " + ", ".join(f"`{c}`" for c in report.get("commands", [report["command"]])), "",
             f"Each learner's `fit` with {report['config']['updates']} updates, timed on its second identical "
             "call (compiled programs are cached per config); 5 seeds run as one vmapped program. "
             "\"5 seeds, per seed\" is the 5-seed rate × 5: the seed-updates per second. SIT: Stage III only; "
             "MABCQ: its behaviour model's fit and its Q learner's.", "",
             "| env | learner | 1 seed: updates/s | 5 seeds: updates/s | 5 seeds, per seed | cost of 5 seeds vs 1 "
             "| compile, 1 seed |", "|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        one, five = row["seeds_1"], row["seeds_5"]
        lines.append(f"| {row['env']} | {row['method']} | {one['updates_per_s']:.1f} | {five['updates_per_s']:.1f} "
                     f"| {5 * five['updates_per_s']:.1f} | {one['updates_per_s'] / five['updates_per_s']:.2f}× "
                     f"| {one['compile_seconds']:.0f} s |")
    stage_rows = [row for row in report["rows"] if "stages" in row]
    if stage_rows:
        lines += ["", "## SIT's stages", "", "| env | Stage I (ARDNEM) updates/s | Stage I at Table 10's 20 000 "
                  "updates (est.) | Stage II (DPER build) | Stage III, 15 000 updates, 1 seed (est.) |",
                  "|---|---|---|---|---|"]
        for row in stage_rows:
            stages = row["stages"]
            lines.append(f"| {row['env']} | {stages['stage1_updates_per_s']:.1f} "
                         f"| {20_000 / stages['stage1_updates_per_s'] / 60:.1f} min "
                         f"| {stages['stage2_seconds']:.1f} s | {15_000 / row['seeds_1']['updates_per_s'] / 60:.1f} min |")
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def save(report: dict, out_dir: Path, device: str) -> None:
    write_report(report, render(report), out_dir, f"learner-speed-{device}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", default="CN_3ls3l,halfcheetah_2x3")
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--ardnem-updates", type=int, default=500)
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--data-dir", default="/tmp/ts/speed-data")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--methods", default=None, help="comma-separated learners to (re)time; the others are kept")
    report = run(parser.parse_args())
    print(render(report))


if __name__ == "__main__":
    main()
