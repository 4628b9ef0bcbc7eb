"""`teamsift demo`: the whole pipeline on a small built-in default, in a few minutes on a CPU.

Tragedy of the Commons, groups of 3 drawn from four scripted consumption types
(sustainable, adaptive, greedy, erratic — two good, two bad). The dataset mixes them,
so plain behaviour cloning imitates the greedy and erratic agents too. Cloning only the
agents known to be good (here from the ground-truth labels; the valuation methods of
`teamsift.value` estimate this from the team score alone) shows what selection buys.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from teamsift import envs
from teamsift.algos import bc
from teamsift.collect import COMMONS_TYPES, collect, commons_policy, random_policy
from teamsift.data import load_dataset, plot_summary, summarize
from teamsift.evaluate import evaluate
from teamsift.nets import PolicyBank, save_policy
from teamsift.progress import STDERR

GOOD_TYPES = ("sustainable", "adaptive")


def run_demo(out: Path, *, quick: bool = False, progress: bool = True, seed: int = 0) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(seed)
    env = envs.make("commons")
    num_episodes = 300 if quick else 2000
    updates = 300 if quick else 3000
    eval_episodes = 50 if quick else 200

    say = STDERR.print if progress else (lambda *a, **k: None)
    say(f"[bold]1/4[/] generating {num_episodes} episodes of mixed groups on {env.spec.env_id}")
    bank = PolicyBank(tuple(commons_policy(kind) for kind in COMMONS_TYPES))
    assignment = np.asarray(jax.random.randint(jax.random.fold_in(key, 1), (num_episodes, env.spec.num_agents),
                                               0, len(COMMONS_TYPES)))
    behaviour = np.asarray(COMMONS_TYPES)[assignment]
    path = collect(env, bank, jax.random.fold_in(key, 2), num_episodes, out / "commons-mixed",
                   assignment=assignment, behaviour=behaviour, policy_ids=behaviour, overwrite=True,
                   provenance={"command": "demo", "types": list(COMMONS_TYPES), "seed": seed}, progress=progress)
    dataset = load_dataset(path)

    say("[bold]2/4[/] inspecting the dataset")
    summary = summarize(dataset)
    plot_summary(dataset, out / "commons-mixed-summary.png")

    say(f"[bold]3/4[/] behaviour cloning ({updates} updates): all agents, and only the good agents")
    config = dataclasses.replace(bc.BCConfig(), num_updates=updates, log_every=max(1, updates // 10))
    bc_all, _ = bc.train(config, dataset, jax.random.fold_in(key, 3), progress=progress)
    step_behaviour = np.asarray(list(dataset.episodes["behaviour"]))[dataset.episode_index]  # [N, A]
    good = np.isin(step_behaviour, GOOD_TYPES).astype(np.float32)
    bc_good, _ = bc.train(config, dataset, jax.random.fold_in(key, 3), weights=good, progress=progress)
    save_policy(bc_all, out / "bc_all.msgpack", spec=env.spec, extra={"algo": "bc"})
    save_policy(bc_good, out / "bc_good_agents.msgpack", spec=env.spec, extra={"algo": "bc", "filter": "ground truth"})

    say(f"[bold]4/4[/] evaluating ({eval_episodes} episodes each)")
    contenders = {
        "random": random_policy(env.spec),
        "bc (all data)": bc_all,
        "bc (good agents only)": bc_good,
        "scripted sustainable": commons_policy("sustainable"),
    }
    results = {name: evaluate(env, policy, jax.random.fold_in(key, 4), eval_episodes) for name, policy in contenders.items()}
    table = {name: {score: round(s.mean, 2) for score, s in r.scores.items()} for name, r in results.items()}
    if progress:
        from rich.console import Console
        from rich.table import Table

        view = Table(title=f"commons: mean score over {eval_episodes} episodes (higher is better)")
        view.add_column("policy")
        for score in env.spec.scores:
            view.add_column(score)
        for name, scores in table.items():
            view.add_row(name, *(f"{scores[s]:.1f}" for s in env.spec.scores))
        Console().print(view)
        STDERR.print(f"files in {out}/: dataset, summary plot, two policies")
    return {
        "dataset": str(path),
        "episodes": summary["episodes"],
        "dataset_return_mean": summary["return"]["mean"],
        "results": {name: r.to_dict() for name, r in results.items()},
        "table": table,
    }
