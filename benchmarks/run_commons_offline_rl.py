"""Offline RL against EV2BC on the Tragedy of the Commons (Select to Perfect, claim E11 of
docs/claims.md: "EV2BC outperforms offline RL" there; methods.md names OMAR as the paper's
offline-RL baseline).

OMAR is a continuous-action learner (`teamsift.algos.omar`), and the commons' consumption
levels are discrete, so the offline-RL learner here is ICQ (`teamsift.algos.icq`, the
discrete offline MARL baseline of SIT's tables), with its paper defaults. It is told what
to optimise the only way offline RL can be: through the reward.

* v_total: the commons' own team reward (the group's consumption each step), whose
  return is v_total;
* v_final and v_min: episode-level scores with no per-step form, given as a terminal
  reward (the episode's score on its last step, 0 elsewhere), so that the return of every
  episode is its score.

Every episode's last step is marked terminal (`finite_horizon_dataset`): the commons ends
at its horizon and observes t / T, so there is nothing beyond it to bootstrap from. (Kept
as a time-limit truncation, ICQ's critic bootstrapped from the unseen t = T observations
and diverged: critic loss 3.4e13 after 500 updates on v_final.)

The datasets are those of `run_commons_ev2bc.py` (the same populations, keys and
generator: the script checks that the behaviour's mean scores equal those its result
file records), with its seeds and evaluation: 5 seeds as one vmapped program, 200
evaluation episodes per seed with the learned policy in every slot. BC, group-BC and
EV2BC are read from that result file (5,000 updates) and set beside ICQ.

    python benchmarks/run_commons_offline_rl.py --updates 1000          # the 12-in-3 mixed population
    python benchmarks/run_commons_offline_rl.py --settings all --mixes mixed,greedy-majority

Writes benchmarks/results/commons-offline-rl-<device>.{json,md}, a population at a time
(a rerun keeps the populations it has). Resumable: the datasets and ICQ's run directories
live under `--work-dir` (checkpoints every tenth of the updates), and an interrupted run
resumes there; a rerun reuses the datasets it finds, after checking them against the
recorded EV2BC table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from run_commons_ev2bc import MIXES, SCORES, SETTINGS
from teamsift.algos import pipeline
from teamsift.bench.seeds import evaluate_seeds
from teamsift.collect import scripted
from teamsift.collect.datasets import generate_population, scripted_population
from teamsift.data import load_dataset, write_dataset
from teamsift.data.tools import episode_arrays
from teamsift.engine import RunConfig
from teamsift.envs import make
from teamsift.evaluate import evaluate
from teamsift.fileio import atomic_write_text
from teamsift.machine import describe
from teamsift.machine import machine as host
from teamsift.nets import FunctionPolicy

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DENSE = "v_total"  # the commons' team reward sums to it


def finite_horizon_dataset(dataset, score: str, out: Path) -> object:
    """`dataset` as the finite-horizon task its scores describe: the last step of every
    episode terminates it (the commons stops at T and its observation holds t / T, so there
    is nothing to bootstrap from), and the reward is the commons' own for v_total, else the
    episode's `score` on its last step and 0 before. Written once: a rerun reads it back (its
    fingerprint is what a resumed ICQ run checks)."""
    if (out / "meta.json").is_file():
        return load_dataset(out)
    arrays = episode_arrays(dataset, np.arange(dataset.num_episodes))
    last = np.cumsum(np.asarray(arrays["episode_lengths"], np.int64)) - 1
    arrays["terminated"] = np.zeros_like(np.asarray(arrays["terminated"]))
    arrays["terminated"][last] = True
    arrays["truncated"] = np.zeros_like(np.asarray(arrays["truncated"]))
    if score != DENSE:
        reward = np.zeros_like(np.asarray(arrays["reward"], np.float32))
        reward[last] = np.asarray(dataset.score(score), np.float32)
        arrays["reward"] = reward
    prov = {"tool": "run_commons_offline_rl.finite_horizon_dataset", "score": score,
            "source": dataset.meta.get("provenance", {})}
    write_dataset(out, spec=dataset.spec, env_kwargs=dataset.meta.get("env_kwargs", {}), discount=dataset.discount,
                  provenance=prov, notes=f"finite horizon; return: the episode's {score}", overwrite=True, **arrays)
    return load_dataset(out)


def reference_scores(env, kinds, key, episodes: int) -> dict:
    """The scores when every slot plays one scripted type of the population, or consumes a
    constant level c: what a policy that collapses to one rule reaches."""
    rules = {f"all {kind}": scripted.commons_policy(kind) for kind in dict.fromkeys(kinds)}
    rules.update({f"all consume {c}": FunctionPolicy(lambda k, obs, avail, c=c: jnp.full(obs.shape[:1], c, jnp.int32))
                  for c in range(env.spec.num_actions)})
    out = {}
    for name, policy in rules.items():
        scores = evaluate(env, policy, key, episodes).scores
        out[name] = {s: float(scores[s].mean) for s in SCORES}
    return out


def population_dataset(name: str, setting: dict, kinds, key, recorded: dict | None, workdir: Path):
    """(env, dataset) of `run_commons_ev2bc.run_setting` for this population, checked against
    the behaviour its result file records."""
    env = make("commons", num_agents=setting["group_size"])
    path = workdir / name.replace(" ", "_").replace(",", "")
    if not (path / "meta.json").is_file():  # written once (see `finite_horizon_dataset`)
        bank, policy_index, levels = scripted_population(env, setting["population"], kinds)
        path = generate_population(env, bank, policy_index, levels, jax.random.fold_in(key, 0), path,
                                   appearances=setting["appearances"], overwrite=True)
    dataset = load_dataset(path)
    if recorded is not None:
        have = {s: float(np.mean(dataset.score(s))) for s in SCORES}
        want = {s: recorded["table"]["behaviour"][s]["mean"] for s in SCORES}
        if not all(np.isclose(have[s], want[s], rtol=1e-5) for s in SCORES):
            raise SystemExit(f"{name}: the regenerated data's behaviour {have} differs from the recorded EV2BC "
                             f"table's {want}: not the same dataset")
    return env, dataset


def finite_horizon_datasets(dataset, workdir: Path) -> dict:
    """{DVF: `finite_horizon_dataset` for it}, written once per population."""
    return {score: finite_horizon_dataset(dataset, score, workdir / f"{Path(dataset.path).name}-{score}")
            for score in SCORES}


def icq_scores(env, datasets: dict, key, *, updates: int, seeds: int, eval_episodes: int,
               run_dirs: dict | None = None) -> tuple[dict, dict]:
    """ICQ trained on each DVF's dataset (`finite_horizon_datasets`; key fold_in(key, 50 + i)),
    every seed evaluated on every DVF. With `run_dirs` ({DVF: directory}) each training is
    checkpointed every tenth of its updates there and resumes from its last checkpoint."""
    icq, seconds = {}, {}
    for i, score in enumerate(SCORES):
        run = RunConfig(updates=updates, seeds=seeds, log_every=max(1, updates // 10), progress=updates > 1)
        if run_dirs is not None:
            run = dataclasses.replace(run, run_dir=str(run_dirs[score]), resume=True,
                                      checkpoint_every=max(1, updates // 10))
        started = time.perf_counter()
        result = pipeline.train("icq", datasets[score], jax.random.fold_in(key, 50 + i), run)
        policies = result.policies()
        seconds[score] = time.perf_counter() - started + result.fit.earlier_seconds
        icq[score] = evaluate_seeds(env, policies, jax.random.fold_in(key, 60 + i), eval_episodes, SCORES)
        print(f"ICQ at {updates} updates on {score}: {np.mean(icq[score][score]):.1f} ± "
              f"{np.std(icq[score][score]):.1f} ({seconds[score]:.0f} s)", file=sys.stderr)
    cells = {s: {"mean": float(np.mean(icq[s][s])), "std": float(np.std(icq[s][s])), "per_seed": icq[s][s],
                 "all_scores": {t: float(np.mean(v)) for t, v in icq[s].items()}} for s in SCORES}
    return cells, seconds


def run_population(name: str, setting: dict, kinds, key, *, updates: int, seeds: int, eval_episodes: int,
                   recorded: dict | None, workdir: Path) -> dict:
    env, dataset = population_dataset(name, setting, kinds, key, recorded, workdir)
    references = reference_scores(env, kinds, jax.random.fold_in(key, 70), eval_episodes)
    datasets = finite_horizon_datasets(dataset, workdir)
    slug = name.replace(" ", "_").replace(",", "")
    run_dirs = {score: workdir / "runs" / f"{slug}-{score}-u{updates}-s{seeds}" for score in SCORES}
    icq, seconds = icq_scores(env, datasets, key, updates=updates, seeds=seeds, eval_episodes=eval_episodes,
                              run_dirs=run_dirs)
    return {"population": name, "episodes": dataset.num_episodes,
            "behaviour": {s: float(np.mean(dataset.score(s))) for s in SCORES}, "icq": icq,
            "icq_one_update": one_update(env, datasets, key, seeds, eval_episodes),
            "recorded": None if recorded is None else {m: {s: recorded["table"][m][s] for s in SCORES}
                                                       for m in ("bc", "group_bc", "ev2bc")},
            "references": references, "train_seconds": seconds}


def one_update(env, datasets: dict, key, seeds: int, eval_episodes: int) -> dict:
    """The same ICQ runs (same keys) stopped after one update: what the actors' initial
    greedy choices already score."""
    return icq_scores(env, datasets, key, updates=1, seeds=seeds, eval_episodes=eval_episodes)[0]


def render(report: dict) -> str:
    lines = ["# Offline RL (ICQ) against EV2BC on the Tragedy of the Commons (claim E11)", "",
             f"Machine: {report['machine']}", "", "Commands: " + ", ".join(f"`{c}`" for c in report["commands"]), "",
             f"ICQ at {report['updates']:,} updates, {report['seeds']} seeds, {report['eval_episodes']} evaluation "
             "episodes per seed with the policy in every slot; its reward: the commons' own for v_total (whose return "
             "it is), the episode's score as a terminal reward for v_final and v_min. BC, group-BC and EV2BC: "
             "[commons-ev2bc-cpu](commons-ev2bc-cpu.md) (the same data, 5 seeds and evaluation, 5,000 updates; "
             "each EV2BC and group-BC cell selected on that column's DVF). Cells: mean ± std over seeds of the "
             "evaluated DVF; bold: the best learner of the column. 'ICQ after 1 update': the same runs (same keys) "
             "stopped after their first update, which shows what the initial actors' greedy choices already score; "
             "it is not a contender for bold.", ""]
    for row in report["rows"].values():
        lines += [f"## {row['population']} ({row['episodes']} episodes)", "",
                  "| method | " + " | ".join(SCORES) + " |", "|---|" + "---|" * len(SCORES)]
        table = {"behaviour": {s: {"mean": row["behaviour"][s], "std": 0.0} for s in SCORES}}
        table.update(row["recorded"] or {})
        table["ICQ (offline RL)"] = row["icq"]
        if "icq_one_update" in row:
            table["ICQ after 1 update (same keys)"] = row["icq_one_update"]
        learners = [m for m in table if m != "behaviour" and not m.startswith("ICQ after")]
        best = {s: max(learners, key=lambda m: table[m][s]["mean"]) for s in SCORES}
        for method, cells in table.items():
            text = [f"{cells[s]['mean']:.1f} ± {cells[s]['std']:.1f}" for s in SCORES]
            text = [f"**{t}**" if best[s] == method else t for t, s in zip(text, SCORES)]
            lines.append(f"| {method} | " + " | ".join(text) + " |")
        lines += ["", "ICQ's other scores (what its policy trained for one DVF does to the others): "
                  + "; ".join(f"on {s}: " + ", ".join(f"{t} {v:.1f}" for t, v in row["icq"][s]["all_scores"].items())
                              for s in SCORES),
                  "", "ICQ training: " + ", ".join(f"{s} {v:.0f} s" for s, v in row["train_seconds"].items()), "",
                  "Every slot playing one rule (the population's scripted types, and constant consumption levels), "
                  "for reference:", "", "| every slot plays | " + " | ".join(SCORES) + " |",
                  "|---|" + "---|" * len(SCORES)]
        lines += [f"| {name} | " + " | ".join(f"{v[s]:.1f}" for s in SCORES) + " |"
                  for name, v in row.get("references", {}).items()]
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=5000, help="ICQ updates (the recorded EV2BC table's)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--settings", default="12 in groups of 3", help=f"'all' or a comma list of {list(SETTINGS)}")
    parser.add_argument("--mixes", default="mixed", help=f"a comma list of {list(MIXES)}")
    parser.add_argument("--recorded", default=str(RESULTS / "commons-ev2bc-cpu.json"),
                        help="the EV2BC result file whose data and numbers are set beside ICQ")
    parser.add_argument("--out", default=str(RESULTS / "commons-offline-rl-cpu"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/teamsift-commons-offline-rl"),
                        help="the populations' datasets and ICQ's run directories (an interrupted run resumes there)")
    args = parser.parse_args(argv)
    names = list(SETTINGS) if args.settings == "all" else args.settings.split(",")
    for name in names:
        if name not in SETTINGS:
            raise SystemExit(f"--settings: {name!r} is not one of {list(SETTINGS)}")
    recorded_runs = json.loads(Path(args.recorded).read_text())
    if recorded_runs["command"].split("--updates")[-1].split()[0] != str(args.updates):
        print(f"note: {args.recorded} was run as `{recorded_runs['command']}`, ICQ here at {args.updates} updates",
              file=sys.stderr)
    recorded = {r["setting"]: r for r in recorded_runs["results"]}
    out = Path(args.out)
    json_path = out.with_suffix(".json")
    report = json.loads(json_path.read_text()) if json_path.is_file() else {}
    budget = {"updates": args.updates, "seeds": args.seeds, "eval_episodes": args.eval_episodes}
    differ = [f"{k} {report[k]} (asked: {v})" for k, v in budget.items() if report.get("rows") and report.get(k) != v]
    if differ:
        raise SystemExit(f"{json_path} holds rows of another budget: {', '.join(differ)}; give another --out")
    command = "python benchmarks/run_commons_offline_rl.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    earlier = report.pop("commands", [report.pop("command")] if "command" in report else [])  # files of one command
    report.update(machine=describe(host()), updates=args.updates, seeds=args.seeds, eval_episodes=args.eval_episodes,
                  commands=list(dict.fromkeys([*earlier, command.rstrip()])))  # every command whose rows it holds
    report.setdefault("rows", {})
    key = jax.random.key(0)  # run_commons_ev2bc's root key: population i's key is fold_in(key, i)
    workdir = args.work_dir
    for mix in args.mixes.split(","):
        for i, (name, setting) in enumerate(SETTINGS.items()):
            full = f"{name}, {mix} population"
            if name not in names:
                continue
            population_key = jax.random.fold_in(key, i)
            if full in report["rows"]:
                row = report["rows"][full]
                if "icq_one_update" not in row:  # a row from before this reference was taken
                    env, dataset = population_dataset(full, setting, MIXES[mix], population_key,
                                                      recorded.get(full), workdir)
                    row["icq_one_update"] = one_update(env, finite_horizon_datasets(dataset, workdir),
                                                       population_key, args.seeds, args.eval_episodes)
                    atomic_write_text(json_path, json.dumps(report, indent=1) + "\n")
                    atomic_write_text(out.with_suffix(".md"), render(report))
                continue
            report["rows"][full] = run_population(full, setting, MIXES[mix], population_key,
                                                  updates=args.updates, seeds=args.seeds,
                                                  eval_episodes=args.eval_episodes, recorded=recorded.get(full),
                                                  workdir=workdir)
            atomic_write_text(json_path, json.dumps(report, indent=1) + "\n")
            atomic_write_text(out.with_suffix(".md"), render(report))
    print(render(report))


if __name__ == "__main__":
    main()
