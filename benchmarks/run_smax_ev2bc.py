"""EV2BC vs BC, group-BC and ICQ on SMAX populations (Select to Perfect, the StarCraft experiment).

A population of individuals, each a checkpoint drawn from the committed pools of an
environment (levels random, medium, expert in turn; `collect.datasets.pool_population`),
plays in groups of the map's size; every episode records who played (ids known, not
anonymised, as in the paper's StarCraft experiment) and the team return, the DVF here.
EV2BC values the individuals by their Exchange Values on the return (`teamsift.value`,
Definition 4.5) and clones those above 0; group-BC clones the top half of episodes by
return; BC clones everything; ICQ (offline RL) learns from everything, at SMAC's reward scale
(its default rule on SMAX: × 10) and, as "ICQ reward×1" with the same key, at SMAX's own (the
default before the reward-scale study of `teamsift bench sit`); five diagnostic ICQ variants
(`DIAGNOSTIC`: β, then β_c, then the gradient clip scaled with the reward; the critic's
learning rate × 10, with β × 10 and alone) run only when
`--learners` names them, and the table shows them where they ran. Each learner trains
5 seeds as one vmapped program (`teamsift.engine.fit`, through `algos.pipeline.train`), and
each seed's policy is evaluated in the environment (its policy in every slot): win rate
and return, mean and 95% interval over seeds (`evaluate.stats`).

The paper's population size and appearances are not in our sources (the seed text is a
summary; methods.md records none for StarCraft), so the population is ours: 30
individuals (10 per level), each in 40 episodes, as the smax_3m population of
benchmarks/results/valuation-cpu.md.

Resumable: every finished (env, learner) cell is written into the results file at once,
and a rerun with the same budget skips the cells it holds; a cell trains in a run directory
under `--data-dir`/runs and resumes there from its last checkpoint (every tenth of its
updates).

    taskset -c 0 python benchmarks/run_smax_ev2bc.py            # both maps, every learner
    python benchmarks/run_smax_ev2bc.py --envs smax_3m --learners bc,ev2bc --updates 200
    python benchmarks/run_smax_ev2bc.py --render-only            # the markdown from the json

Writes benchmarks/results/smax-ev2bc-<device>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from teamsift.algos import pipeline
from teamsift.bench.report import budget_differences, joined_commands, named_key, write_report
from teamsift.bench.seeds import evaluate_seeds, over_seeds
from teamsift.collect.datasets import generate_population, pool_population
from teamsift.collect.pools import load_pools
from teamsift.collect.suites import ENV_KWARGS
from teamsift.data import load_dataset
from teamsift.engine import RunConfig
from teamsift.envs import make
from teamsift.machine import describe, machine
from teamsift.value.accuracy import ground_truth_levels
from teamsift.value.exchange import dataset_ev_from
from teamsift.value.report import accuracy_report

ROOT = Path(__file__).resolve().parents[1]
ENVS = ("smax_3m", "smax_2s3z")
LEARNERS = {"bc": "BC", "ev2bc": "EV2BC", "group_bc": "group-BC", "icq": "ICQ", "icq_x1": "ICQ reward×1",
            "icq_beta_x10": "ICQ β×10", "icq_temps_x10": "ICQ β, β_c×10", "icq_scaled_x10": "ICQ β, β_c, clip×10",
            "icq_critic_lr_x10": "ICQ β, critic lr×10", "icq_lr_only_x10": "ICQ critic lr×10"}
#: cells that train another learner with some settings changed: (learner, overrides); the key is the learner's.
#: The temperature ones scale β (and β_c) with the reward, so that the filters softmax(Q/β) of ICQ's
#: actor (and softmax(Q/β_c) of its critic) are as sharp as at reward × 1 while Q is × 10: they tell
#: the filter's sharpness apart from Q's size (the smax_2s3z collapse of docs/benchmarks.md). The critic
#: learning-rate one asks whether the critic's fit is to blame: RMSProp's steps do not grow with the
#: loss, so a critic whose outputs must be ten times larger moves as far per step as at reward × 1.
VARIANTS = {"icq_x1": ("icq", {"reward_scale": 1.0}),
            "icq_beta_x10": ("icq", {"beta": 1.0}),
            "icq_temps_x10": ("icq", {"beta": 1.0, "critic_beta": 10000.0}),
            "icq_scaled_x10": ("icq", {"beta": 1.0, "critic_beta": 10000.0, "max_grad_norm": 200.0}),
            "icq_critic_lr_x10": ("icq", {"beta": 1.0, "critic_learning_rate": 1e-3}),
            "icq_lr_only_x10": ("icq", {"critic_learning_rate": 1e-3})}
#: variants run for a diagnosis: not in the default `--learners`, and shown only where they ran
DIAGNOSTIC = ("icq_beta_x10", "icq_temps_x10", "icq_scaled_x10", "icq_critic_lr_x10", "icq_lr_only_x10")
DEFAULT_LEARNERS = tuple(name for name in LEARNERS if name not in DIAGNOSTIC)
BUDGET_FIELDS = ("updates", "seeds", "population", "appearances", "eval_episodes", "score")


def population_dataset(env_id: str, config: dict, key, data_dir: Path) -> Path:
    """The population's dataset (regenerated from its keys when not already in `data_dir`)."""
    env = make(env_id, **ENV_KWARGS.get(env_id, {}))
    path = data_dir / f"{env_id}-p{config['population']}-a{config['appearances']}"
    if (path / "meta.json").is_file():
        return path
    bank, policy, levels = pool_population(load_pools(env_id, ROOT / "pools"), config["population"],
                                           jax.random.fold_in(key, 0))
    return generate_population(env, bank, policy, levels, jax.random.fold_in(key, 1), path,
                               appearances=config["appearances"], overwrite=True,
                               provenance={"individuals": "checkpoints drawn from pools",
                                           "policy_of_individual": list(map(int, policy))})


def describe_dataset(dataset, score: str) -> dict:
    """Size, the data's own return and win rate, and how well the EVs recover the levels."""
    values = dataset_ev_from(dataset, score)
    return {"episodes": dataset.num_episodes, "transitions": dataset.num_steps,
            "individuals": len(values.ids),
            "behaviour": {"return": float(np.mean(dataset.score("return"))),
                          "win": float(np.mean(dataset.score("win")))},
            "ev_accuracy": accuracy_report(values.ids, np.asarray(values.values, np.float64),
                                           ground_truth_levels(dataset))}


def run_cell(learner: str, dataset, env, config: dict, key, run_dir: Path) -> dict:
    """One learner, `config['seeds']` seeds in one program, each evaluated in `env`. It trains
    in `run_dir`, checkpointed every tenth of its updates: an interrupted cell resumes there."""
    run = RunConfig(updates=config["updates"], seeds=config["seeds"], log_every=max(1, config["updates"] // 10),
                    progress=False, run_dir=str(run_dir), resume=True,
                    checkpoint_every=max(1, config["updates"] // 10))
    algorithm, overrides = VARIANTS.get(learner, (learner, {}))
    if algorithm in ("ev2bc", "group_bc"):
        overrides = {**overrides, "selection.score": config["score"]}
    start = time.perf_counter()
    result = pipeline.train(algorithm, dataset, named_key(key, algorithm), run, overrides=overrides)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scores = evaluate_seeds(env, result.fit.policies(), named_key(key, "evaluation"), config["eval_episodes"],
                            ("return", "win"))
    cell = {name: over_seeds(values) for name, values in scores.items()}
    cell.update(train_seconds=train_seconds, eval_seconds=time.perf_counter() - start)
    if result.weights is not None:
        cell["kept_fraction"] = result.weights.kept_fraction
    return cell


def interval(summary: dict, percent: bool = False) -> str:
    scale = 100.0 if percent else 1.0
    low, high = (scale * x for x in summary["ci95"])
    unit = "%" if percent else ""
    return f"{scale * summary['mean']:.{0 if percent else 2}f}{unit} [{low:.{0 if percent else 2}f}, " \
           f"{high:.{0 if percent else 2}f}]"


def render(report: dict) -> str:
    config = report["config"]
    lines = ["# EV2BC on SMAX populations (Select to Perfect, StarCraft)", "",
             "Commands: " + ", ".join(f"`{c}`" for c in report["commands"]), f"Machine: {report['machine']}", "",
             f"Population: {config['population']} individuals, checkpoints drawn from the committed pools (levels "
             f"random, medium, expert in turn), each in {config['appearances']} episodes, ids known. DVF: the team "
             f"{config['score']}. Every learner: {config['updates']:,} updates, {config['seeds']} seeds in one "
             f"vmapped program; each seed evaluated over {config['eval_episodes']} episodes with its policy in "
             "every slot. Cells: mean [95% interval] over seeds (normal interval, `evaluate.stats`).", ""]
    missing = []
    for env_id in dict.fromkeys(list(ENVS) + config["envs"]):  # every map of the benchmark, run or not
        row = report["rows"].get(env_id)
        if row is None:
            missing += [f"{env_id}/{learner}" for learner in dict.fromkeys(list(DEFAULT_LEARNERS) + config["learners"])
                        if learner not in DIAGNOSTIC]
            continue
        data = row["dataset"]
        accuracy = data["ev_accuracy"]
        lines += [f"## {env_id}: {data['episodes']} episodes, {data['transitions']:,} steps", "",
                  f"Data: return {data['behaviour']['return']:.2f}, won {100 * data['behaviour']['win']:.0f}%. "
                  f"Exchange Values against the checkpoints' levels: Spearman {accuracy.get('spearman', 0):.2f}, "
                  f"expert vs random AUC {accuracy.get('auc_expert_vs_random', 0):.2f}; mean EV per level "
                  + ", ".join(f"{level} {stats['mean_value']:.3f}" for level, stats in accuracy["per_level"].items())
                  + ".", "",
                  "| learner | win rate | return | decisions kept | train s |", "|---|---|---|---|---|"]
        best = max((c["win"]["mean"], name) for name, c in row["cells"].items())[1] if row["cells"] else None
        for learner in config["learners"]:
            cell = row["cells"].get(learner)
            if cell is None and learner in DIAGNOSTIC:
                continue
            if cell is None:
                missing.append(f"{env_id}/{learner}")
                lines.append(f"| {LEARNERS[learner]} | not run | not run | | |")
                continue
            win = interval(cell["win"], percent=True)
            win = f"**{win}**" if learner == best else win
            kept = f"{cell['kept_fraction']:.0%}" if "kept_fraction" in cell else "100%"
            lines.append(f"| {LEARNERS[learner]} | {win} | {interval(cell['return'])} | {kept} | "
                         f"{cell['train_seconds']:.0f} |")
        lines.append("")
    if missing:
        lines += ["**Partial**: cells not run yet: " + ", ".join(missing) + ".", ""]
    lines += report.get("notes", [])
    return "\n".join(lines).rstrip() + "\n"


def load_previous(path: Path, report: dict) -> dict:
    """The earlier results at `path` when they ran with the same budget (their cells are kept)."""
    if not path.is_file():
        return report
    previous = json.loads(path.read_text())
    different = budget_differences(report, previous, BUDGET_FIELDS)
    if different:
        raise SystemExit(f"{path}: holds results of another budget ({', '.join(different)} differ); "
                         "pass --out to write elsewhere, or remove it")
    report["commands"] = joined_commands(previous, report)
    report["rows"] = previous.get("rows", {})
    report["notes"] = previous.get("notes", [])
    for name in ("envs", "learners"):
        report["config"][name] = list(dict.fromkeys(previous["config"].get(name, []) + report["config"][name]))
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument("--learners", default=",".join(DEFAULT_LEARNERS),
                        help=f"of {list(LEARNERS)} (default: all but the diagnostic {list(DIAGNOSTIC)})")
    parser.add_argument("--updates", type=int, default=1000, help="per learner (SMAX offline cells of "
                        "imitation-cpu.md: 1,000)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--population", type=int, default=30)
    parser.add_argument("--appearances", type=int, default=40)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/teamsift-smax-ev2bc"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--render-only", action="store_true", help="rewrite the markdown from the json")
    args = parser.parse_args(argv)
    stem = f"smax-ev2bc-{jax.devices()[0].platform}"
    json_path = args.out / f"{stem}.json"
    if args.render_only:
        report = json.loads(json_path.read_text())
        write_report(report, render(report), args.out, stem)
        print(render(report))
        return
    learners = args.learners.split(",")
    unknown = sorted(set(learners) - set(LEARNERS))
    if unknown:
        parser.error(f"--learners: expected names of {list(LEARNERS)}, got {unknown}")
    config = {"envs": args.envs.split(","), "learners": learners, "updates": args.updates, "seeds": args.seeds,
              "population": args.population, "appearances": args.appearances,
              "eval_episodes": args.eval_episodes, "score": "return"}
    command = "python benchmarks/run_smax_ev2bc.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    report = load_previous(json_path, {"commands": [command], "machine": describe(machine()), "machine_info": machine(),
                                       "config": config, "rows": {}, "notes": []})
    report["machine"] = describe(machine())
    root = jax.random.key(0)
    for env_id in args.envs.split(","):
        row = report["rows"].setdefault(env_id, {"cells": {}})
        todo = [learner for learner in learners if learner not in row["cells"]]
        if not todo:
            print(f"{env_id}: every cell done", file=sys.stderr)
            continue
        env_key = named_key(root, env_id)
        start = time.perf_counter()
        dataset = load_dataset(population_dataset(env_id, config, env_key, args.data_dir))
        row["dataset"] = {**describe_dataset(dataset, config["score"]),
                          "generate_seconds": time.perf_counter() - start}
        env = make(env_id, **ENV_KWARGS.get(env_id, {}))
        for learner in todo:
            run_dir = args.data_dir / "runs" / f"{env_id}-{learner}-u{config['updates']}-s{config['seeds']}"
            row["cells"][learner] = run_cell(learner, dataset, env, config, env_key, run_dir)
            cell = row["cells"][learner]
            print(f"{env_id} {learner}: won {cell['win']['mean']:.2f}, return {cell['return']['mean']:.2f}, "
                  f"{cell['train_seconds']:.0f} s", file=sys.stderr, flush=True)
            write_report(report, render(report), args.out, stem)
    write_report(report, render(report), args.out, stem)
    print(render(report))


if __name__ == "__main__":
    main()
