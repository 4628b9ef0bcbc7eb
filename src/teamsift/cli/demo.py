"""`teamsift demo`: the whole pipeline on small built-in defaults, in about a minute on a CPU.

Two mixed-quality datasets, each with ground-truth labels per slot:

1. Tragedy of the Commons, groups of 3 drawn from four scripted consumption types
   (sustainable and adaptive are good; greedy and erratic are not);
2. MPE cooperative navigation with partial observations (SIT's CN_3ls3l), each seeker
   either scripted (heads for its nearest landmark) or random.

Plain behaviour cloning imitates the bad agents too. Cloning only the agents known to be
good (here from the ground-truth labels; `teamsift.value` estimates this from the team
score alone) shows what selecting the right agents buys.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from teamsift import envs
from teamsift.algos import bc
from teamsift.collect import behaviours, collect, random_policy
from teamsift.data import load_dataset, plot_summary, summarize
from teamsift.engine import RunConfig, fit
from teamsift.evaluate import evaluate
from teamsift.nets import PolicyBank, save_policy
from teamsift.progress import STDERR

# env id, behaviour tokens, which of them are good, (episodes, BC updates, eval episodes) full / quick
PARTS = (
    ("commons", ("scripted:sustainable", "scripted:adaptive", "scripted:greedy", "scripted:erratic"),
     ("scripted:sustainable", "scripted:adaptive"), (2000, 3000, 200), (300, 300, 50)),
    ("CN_3ls3l", ("scripted:nearest", "random"), ("scripted:nearest",), (1000, 1500, 500), (200, 200, 100)),
)


def run_part(env_id, tokens, good, sizes, out: Path, key, progress: bool) -> dict:
    num_episodes, updates, eval_episodes = sizes
    env = envs.make(env_id)
    say = STDERR.print if progress else (lambda *a, **k: None)
    resolved = [behaviours.resolve(token, env) for token in tokens]
    labels = np.asarray([label for _, label in resolved])

    say(f"[bold]{env_id}[/]: generating {num_episodes} episodes, each slot drawn from {', '.join(labels)}")
    assignment = np.asarray(jax.random.randint(jax.random.fold_in(key, 1), (num_episodes, env.spec.num_agents),
                                               0, len(tokens)))
    path = collect(env, PolicyBank(tuple(p for p, _ in resolved)), jax.random.fold_in(key, 2), num_episodes,
                   out / f"{env_id}-mixed", assignment=assignment, behaviour=labels[assignment],
                   policy_ids=labels[assignment], overwrite=True, progress=progress,
                   provenance={"command": "demo", "behaviours": list(tokens)})
    dataset = load_dataset(path)
    summary = summarize(dataset)
    plot_summary(dataset, out / f"{env_id}-summary.png")

    kind = "GRU" if bc.default_recurrent(env.spec) else "MLP"
    say(f"[bold]{env_id}[/]: behaviour cloning, {kind} agents, {updates} updates — all agents, then good agents only")
    learner = bc.learner(bc.BCConfig(), dataset)
    run = RunConfig(updates=updates, log_every=max(1, updates // 10), progress=progress)
    bc_all = fit(learner, dataset, jax.random.fold_in(key, 3), dataclasses.replace(run, label="BC (all)")).policy()
    good_slots = np.isin(dataset.episodes["behaviour"], good).astype(np.float32)  # [E, A]
    bc_good = fit(learner, dataset, jax.random.fold_in(key, 3), dataclasses.replace(run, label="BC (good)"),
                  weights=good_slots).policy()
    save_policy(bc_all, out / f"{env_id}-bc-all.msgpack", spec=env.spec, extra={"algo": "bc"})
    save_policy(bc_good, out / f"{env_id}-bc-good.msgpack", spec=env.spec,
                extra={"algo": "bc", "filter": "ground-truth good agents"})

    contenders = {"random": random_policy(env.spec), "bc (all agents)": bc_all, "bc (good agents only)": bc_good,
                  good[0]: dict(resolved_pairs(resolved, labels))[good[0]]}
    say(f"[bold]{env_id}[/]: evaluating ({eval_episodes} episodes each)")
    results = {name: evaluate(env, policy, jax.random.fold_in(key, 4), eval_episodes)
               for name, policy in contenders.items()}
    if progress:
        render(env, results, summary, eval_episodes)
    return {
        "dataset": str(path),
        "episodes": summary["episodes"],
        "dataset_return_mean": summary["return"]["mean"],
        "results": {name: r.to_dict() for name, r in results.items()},
    }


def resolved_pairs(resolved, labels):
    return [(label, policy) for (policy, _), label in zip(resolved, labels)]


def render(env, results, summary, eval_episodes) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{env.spec.env_id}: mean ± 95% interval over {eval_episodes} episodes "
                        f"(dataset mean return {summary['return']['mean']:.1f})")
    table.add_column("policy")
    scores = [s for s in env.spec.scores]
    for score in scores:
        table.add_column(score + (" (lower better)" if score in env.spec.lower_is_better else ""), justify="right")
    for name, result in results.items():
        table.add_row(name, *(f"{result.scores[s].mean:.1f} ±{result.scores[s].ci95_high - result.scores[s].mean:.1f}"
                              for s in scores))
    Console().print(table)


def run_demo(out: Path, *, quick: bool = False, progress: bool = True, seed: int = 0) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(seed)
    report = {}
    for index, (env_id, tokens, good, full, small) in enumerate(PARTS):
        report[env_id] = run_part(env_id, tokens, good, small if quick else full, out,
                                  jax.random.fold_in(key, index), progress)
    if progress:
        STDERR.print(f"datasets, summary plots and policies are in {out}/ "
                     f"(try: teamsift inspect {out}/commons-mixed)")
    return report
