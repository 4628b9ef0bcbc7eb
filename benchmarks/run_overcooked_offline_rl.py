"""Offline RL against EV2BC on the human Overcooked trials (Select to Perfect, claim E13 of
docs/claims.md: "EV2BC outperforms offline RL" there; methods.md names OMAR as the paper's
offline-RL baseline).

OMAR is a continuous-action learner and Overcooked's six actions are discrete, so the
offline-RL learner is ICQ (`teamsift.algos.icq`, the discrete offline MARL baseline of
SIT's tables), with its paper defaults and the data's team reward (20 per soup, scaled by
ICQ's default rule to a best return of 20). Settings that differ from its defaults, and why:

* the actor is the human benchmark's MLP (64-64, no GRU: every Overcooked observation is
  the whole grid), and it acts by sampling its distribution, as BC's and the human proxy's
  do (an argmax cook that meets another in a corridor can stand still forever), so that
  only the objective differs from BC's;
* a batch is 8 episodes, not 32: a train split holds 8 or 9 games of 1,204 steps, so 32
  episodes are 77,000 steps (40 times SMAC's 32 × 60) and took 27 s per update with
  5 seeds on one EPYC core (8 episodes: 5 s; cramped_room, compiled);
* the critic takes one step per update on the whole batch (`critic_step_per_time_step=
  False`; the reference's step per time step is 1,204 steps per update here, 1.7 times
  the time: 9 s), and its target is renewed every 10 updates, about as often per update
  as the reference's 600 critic steps on SMAC's 60-step episodes.

Everything else is `run_overcooked_human.py`'s (the same layout keys, data splits, human
proxy, evaluation key, 5 seeds, 20 games per seed and condition, bootstrap): the script
retrains the proxy from the same key and checks that its self-play soups equal those the
recorded result file holds, so ICQ meets the same partner BC and EV2BC met, and sets ICQ
beside the recorded learners.

    python benchmarks/run_overcooked_offline_rl.py --layouts cramped_room --updates 1000

Writes benchmarks/results/overcooked-offline-rl-<device>.{json,md} after every layout (a
rerun keeps the layouts it has). Resumable: the imported splits and ICQ's run directories
live under `--work-dir` (checkpoints every tenth of the updates), and an interrupted run
resumes there; the splits are imported once and reused (a new import would record a new
time and so give the data another fingerprint, on which the engine refuses to resume).
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
import optax

from teamsift.algos import bc, icq, pipeline
from teamsift.algos import offline_common as oc
from teamsift.bench import overcooked_human as oh
from teamsift.bench.report import named_key, write_report
from teamsift.bench.seeds import bootstrap_interval, paired_difference
from teamsift.data import load_dataset
from teamsift.engine import RunConfig, fit
from teamsift.envs import make
from teamsift.evaluate import evaluate
from teamsift.fileio import atomic_write_text
from teamsift.machine import describe
from teamsift.machine import machine as host
from teamsift.nets import optim
from teamsift.nets.mixer import mixing_weights

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# ICQ's settings for 1,204-step games and the human benchmark's actor (see the docstring).
OVERRIDES = {"recurrent": False, "hidden": (64, 64), "sample_actions": True, "batch_size": 8,
             "critic_step_per_time_step": False, "target_update_interval": 10}
COMPARED = ("bc", "group_bc", "ev2bc")  # the recorded learners ICQ is set beside
CONDITIONS = ("proxy_seat0", "proxy_seat1", "proxy_both", "self")
FILTER_BATCHES = 4  # batches of the filter's statistics per seed
#: The optimiser grid's RMSProps (`teamsift.nets.optim`): ICQ's default, and the reference's
#: (PyMARL's), which differ in where ε goes.
OPTIMISERS = ("rmsprop_eps_in_root", "rmsprop_pymarl")
OPTIMISER_TITLES = {"rmsprop_eps_in_root": "ε 1e-5 under the root (ICQ's default)",
                    "rmsprop_pymarl": "ε 1e-5 added to the root (PyMARL's, the reference's)"}
#: BC's loss halved under ICQ's default RMSProp: ICQ's actor loss Σ_i k_i(s)·f·log π_i with
#: k_i ≈ ½ and f ≈ 1 (its filter statistics) is BC's halved, which an ε under the root does
#: not ignore.
HALF_LOSS = "rmsprop_eps_in_root_half_loss"


def register_half_loss() -> None:
    """Name `HALF_LOSS` in `nets.optim.OPTIMIZERS` (the loss's gradient halved, then ICQ's RMSProp),
    only when the grid needs it."""
    optim.OPTIMIZERS.setdefault(HALF_LOSS, lambda lr: optax.chain(optax.scale(0.5),
                                                                   optim.OPTIMIZERS["rmsprop_eps_in_root"](lr)))


def splits(layout: str, workdir: Path):
    """The layout's (train, test) splits under `workdir`/data, imported once: an import records
    when it ran, so a second one changes the data's fingerprint, which a resumed run checks."""
    data = workdir / "data"
    if all((data / f"{layout}-{split}" / "meta.json").is_file() for split in ("train", "test")):
        train, test = (load_dataset(data / f"{layout}-{split}") for split in ("train", "test"))
        oh.check_held_apart(train, test)
        return train, test
    return oh.import_splits(layout, data)


def proxy_for(layout: str, key, train, test, recorded: dict, config: dict):
    """The recorded run's human proxy, retrained from its key; refuses one whose self-play
    soups differ from the recorded ones (then it is not the partner the recorded learners met)."""
    proxy = oh.human_proxy(test, named_key(key, "proxy"), updates=config["proxy_updates"] or config["updates"],
                           train=train)
    env = make(train.meta["env_id"], **train.meta["env_kwargs"])
    soups = float(evaluate(env, proxy, named_key(key, "eval"), config["episodes"] * config["seeds"])
                  .scores[oh.SCORE].mean)
    if not np.isclose(soups, recorded["proxy_self_play_soups"], rtol=1e-6):
        raise SystemExit(f"{layout}: the retrained proxy's self-play soups {soups:.4f} differ from the recorded "
                         f"{recorded['proxy_self_play_soups']:.4f}: not the recorded run's proxy")
    return env, proxy


def soups_of(env, policies: list, proxy, key, config: dict) -> dict:
    """Soups per game of each seed's policy in every condition, evaluated as the recorded
    learners were (same key and games), with both seats beside the proxy averaged."""
    soups = oh.evaluate_conditions(env, policies, proxy, named_key(key, "eval"), config["episodes"])
    soups["proxy_both"] = [(a + b) / 2 for a, b in zip(soups["proxy_seat0"], soups["proxy_seat1"])]
    return soups


def bc_soups(env, proxy, train, key, config: dict, bc_config: bc.BCConfig, *, updates: int) -> dict:
    """Soups per game of BC (`bc_config`) trained as the recorded run trains it (same key and
    evaluation) for `updates`, per seed and condition."""
    run = RunConfig(updates=updates, seeds=config["seeds"], log_every=max(1, updates // 10), progress=False)
    return soups_of(env, fit(bc.learner(bc_config, train), train, named_key(key, "train"), run).policies(), proxy,
                    key, config)


def icq_minus(icq_soups: dict, soups: dict, key, name: str) -> dict:
    """ICQ − another learner per seed (both evaluated with the same key), beside the proxy and in self-play."""
    return {c: paired_difference(icq_soups[c], soups[c], named_key(named_key(key, "stats"), "icq-diff", name, c))
            for c in ("proxy_both", "self")}


def bc_control(env, proxy, train, key, config: dict, icq_soups: dict, *, updates: int) -> dict:
    """BC as the recorded run trains it (same key, learner and evaluation) but for ICQ's
    `updates`: whether ICQ's gap to BC is its objective or its shorter budget. Cells as ICQ's,
    and ICQ − this BC, seed-paired."""
    soups = bc_soups(env, proxy, train, key, config, bc.BCConfig(recurrent=False), updates=updates)
    stats = named_key(key, "stats")
    return {"updates": updates, "soups": soups,
            "cells": {c: bootstrap_interval(v, named_key(stats, c)) for c, v in soups.items()},
            "icq_minus_this": icq_minus(icq_soups, soups, key, "bc-control")}


def filter_stats(run_dir: Path, train) -> dict:
    """What ICQ's actor loss −Σ_i k_i(s)·f·log π_i weighs the data by, at the run's last
    checkpoint: the filter f = |B|·softmax_B(A/β) on batches drawn as its run draws them
    (`diagnose_sit.icq_filter`; an effective sample fraction of 1 weighs every decision alike),
    and the mixer's k_0(s) on every step of the data (0.5 everywhere: both cooks alike). Both
    at 1 and 0.5, the loss is BC's, halved."""
    from diagnose_sit import icq_filter, restore_icq  # the one restore of an ICQ run for diagnosis

    beta = json.loads((run_dir / "config.json").read_text())["hyperparameters"]["beta"]
    stats = icq_filter(argparse.Namespace(icq_run_dir=str(run_dir), seed=0, minibatches=FILTER_BATCHES), train,
                       (beta,))
    config, data, state, _, seeds = restore_icq(run_dir, train)
    batch = oc.episode_batch(data.arrays, jnp.arange(train.num_episodes, dtype=jnp.int32), int(train.lengths.max()),
                             config.bootstrap_truncated)
    mixer = icq.mixer_config(config, train.spec)
    steps, mask = batch["actions"].shape[1], np.asarray(batch["mask"], bool)
    k0 = []
    for seed in range(seeds):
        params = jax.tree.map(lambda x, s=seed: x[s], state.critic["mixer"])
        k0.append(np.asarray(mixing_weights(mixer, params, None, batch["state"][:, :steps]))[..., 0][mask])
    k0 = np.concatenate(k0)
    return {"beta": beta, "batches": FILTER_BATCHES, "advantage": stats["advantage"],
            **stats["filter"][f"{beta:g}"],
            "mixer_k0": {f"p{q}": float(np.percentile(k0, q)) for q in (5, 50, 95)}}


def run_dir_of(workdir: Path, layout: str, updates: int, seeds: int, optimizer: str | None = None) -> Path:
    """ICQ's run directory (`optimizer`: a run with another than ICQ's default optimiser)."""
    return workdir / "runs" / f"{layout}-icq{'-' + optimizer if optimizer else ''}-u{updates}-s{seeds}"


def train_icq(env, proxy, train, key, config: dict, *, updates: int, run_dir: Path, overrides: dict):
    """ICQ (`OVERRIDES` and `overrides`) trained in `run_dir` (resumed there) and evaluated as
    the recorded learners were: (training result, soups per seed and condition, train seconds)."""
    run = RunConfig(updates=updates, seeds=config["seeds"], log_every=max(1, updates // 10), progress=True,
                    run_dir=str(run_dir), resume=True, checkpoint_every=max(1, updates // 10))
    started = time.perf_counter()
    result = pipeline.train("icq", train, named_key(key, "train"), run, overrides={**OVERRIDES, **overrides})
    seconds = time.perf_counter() - started + result.fit.earlier_seconds
    return result, soups_of(env, result.policies(), proxy, key, config), seconds


def run_layout(layout: str, key, recorded: dict, config: dict, *, updates: int, workdir: Path) -> dict:
    """ICQ on one layout's train split, evaluated as the recorded learners were."""
    began = time.perf_counter()
    train, test = splits(layout, workdir)
    env, proxy = proxy_for(layout, key, train, test, recorded, config)
    run_dir = run_dir_of(workdir, layout, updates, config["seeds"])
    result, soups, train_seconds = train_icq(env, proxy, train, key, config, updates=updates, run_dir=run_dir,
                                             overrides={})
    stats = named_key(key, "stats")
    cells = {c: bootstrap_interval(v, named_key(stats, c)) for c, v in soups.items()}
    differences = {m: {c: paired_difference(soups[c], recorded["soups"][m][c], named_key(stats, "icq-diff", m, c))
                       for c in ("proxy_both", "self")} for m in COMPARED}
    return {"layout": layout, "icq_config": dataclasses.asdict(result.fit.learner.config),
            "soups": soups, "cells": cells, "difference": differences,
            "recorded_cells": {m: recorded["cells"][m] for m in COMPARED},
            "human_soups_per_game": recorded["human_soups_per_game"],
            "proxy_self_play_soups": recorded["proxy_self_play_soups"],
            "final_metrics": {k: [float(x) for x in np.ravel(v)] for k, v in result.fit.last.items()},
            "bc_at_icq_updates": bc_control(env, proxy, train, key, config, soups, updates=updates),
            "filter": filter_stats(run_dir, train),
            "seconds": {"train": train_seconds, "total": time.perf_counter() - began}}


def grid_batch_steps(icq_config: dict, train) -> int:
    """The steps of ICQ's batch of games (its batch size times the mean game's length)."""
    return icq_config["batch_size"] * int(round(float(np.mean(train.lengths))))


def grid_bc_cell(layout: str, optimizer: str, env, proxy, train, key, config: dict, icq_config: dict, *,
                 batch_steps: int, updates: int, workdir: Path) -> tuple[dict, float]:
    """The optimiser grid's BC under `optimizer` on ICQ's batch size and clip: (soups, train and
    evaluation seconds), kept under `workdir`/grid so that a resumed grid does not train it again
    (recomputed when the recorded BC config differs)."""
    bc_config = bc.BCConfig(recurrent=False, optimizer=optimizer, max_grad_norm=icq_config["max_grad_norm"],
                            batch_size=batch_steps // 8)  # MLP batches: × 8 steps
    path = workdir / "grid" / f"{layout}-bc-{optimizer}-u{updates}-s{config['seeds']}.json"
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    if recorded.get("bc_config") == json.loads(json.dumps(dataclasses.asdict(bc_config))):
        return recorded["soups"], recorded["seconds"]
    began = time.perf_counter()
    soups = bc_soups(env, proxy, train, key, config, bc_config, updates=updates)
    cell = {"bc_config": dataclasses.asdict(bc_config), "soups": soups, "seconds": time.perf_counter() - began}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(cell))
    return soups, cell["seconds"]


def optimiser_grid(row: dict, key, recorded: dict, config: dict, *, updates: int, workdir: Path) -> dict:
    """ICQ's gap to BC at equal updates: objective or optimiser? BC and ICQ on batches of the
    same size (ICQ's 8 games, as steps for BC's MLP) with the same gradient clip, each under
    either RMSProp (`OPTIMISERS`), all at ICQ's `updates` with the same keys and evaluation.
    ICQ under its default is `row`'s run; the other cells are trained here (ICQ resumably)."""
    layout = row["layout"]
    train, test = splits(layout, workdir)
    env, proxy = proxy_for(layout, key, train, test, recorded, config)
    icq_config = row["icq_config"]
    batch_steps = grid_batch_steps(icq_config, train)
    register_half_loss()
    soups, seconds = {}, {}
    default = icq_config.get("optimizer", icq.ICQConfig.optimizer)  # rows recorded before the field: the default
    for optimizer in OPTIMISERS:
        if optimizer == default:
            soups[f"icq/{optimizer}"], seconds[f"icq/{optimizer}"] = row["soups"], row["seconds"]["train"]
        else:
            run_dir = run_dir_of(workdir, layout, updates, config["seeds"], optimizer)
            _, soups[f"icq/{optimizer}"], seconds[f"icq/{optimizer}"] = train_icq(
                env, proxy, train, key, config, updates=updates, run_dir=run_dir, overrides={"optimizer": optimizer})
    for optimizer in (*OPTIMISERS, HALF_LOSS):
        soups[f"bc/{optimizer}"], seconds[f"bc/{optimizer}"] = grid_bc_cell(
            layout, optimizer, env, proxy, train, key, config, icq_config, batch_steps=batch_steps, updates=updates,
            workdir=workdir)
    stats = named_key(key, "stats", "optimiser-grid")
    return {"updates": updates, "batch_steps": batch_steps, "soups": soups, "seconds": seconds,
            "cells": {name: {c: bootstrap_interval(v, named_key(stats, name, c)) for c, v in s.items()}
                      for name, s in soups.items()},
            "icq_minus_bc": {optimizer: icq_minus(soups[f"icq/{optimizer}"], soups[f"bc/{optimizer}"], key,
                                                  f"optimiser-grid/{optimizer}") for optimizer in OPTIMISERS},
            "icq_minus_bc_half_loss": icq_minus(soups["icq/rmsprop_eps_in_root"], soups[f"bc/{HALF_LOSS}"], key,
                                                f"optimiser-grid/{HALF_LOSS}")}


def _cell(point) -> str:
    return f"{point[0]:.2f} [{point[1]:.2f}, {point[2]:.2f}]"


def render(report: dict) -> str:
    rows = [report["layouts"][name] for name in oh.LAYOUTS if name in report["layouts"]]
    titles = [oh.LEARNER_TITLES[m] for m in COMPARED] + ["ICQ (offline RL)", f"BC at {report['updates']:,} updates"]
    lines = ["# Offline RL (ICQ) against EV2BC on human Overcooked data (claim E13)", "",
             f"Machine: {report['machine']}", "", "Commands: " + ", ".join(f"`{c}`" for c in report["commands"]), "",
             f"ICQ at {report['updates']:,} updates ({report['seeds']} seeds as one program), its paper defaults but "
             f"for {', '.join(f'{k}={v}' for k, v in OVERRIDES.items())} (the human benchmark's actor and acting "
             "rule, and a batch and critic schedule for 1,204-step games: see the script's docstring), on the train split's team reward (20 per soup). BC, group-BC and EV2BC: "
             "[overcooked-human-cpu](overcooked-human-cpu.md) at its budget (5,000 updates), the same human proxy "
             "(retrained from its key; its self-play soups checked equal), evaluation key, games and bootstrap. "
             "Cells: mean soups per game over seeds [95% percentile-bootstrap interval over seeds]. "
             f"'BC at {report['updates']:,} updates': the recorded BC (same key, learner, evaluation) stopped at "
             "ICQ's number of updates, a control for ICQ's shorter budget.",
             "", f"Layouts finished: {', '.join(r['layout'] for r in rows)}"
             + (f" (not run: {', '.join(m for m in oh.LAYOUTS if m not in report['layouts'])})"
                if len(rows) < len(oh.LAYOUTS) else ""), "",
             "## Soups per game", "", "| layout | condition | " + " | ".join(titles) + " |",
             "|---|---|" + "---|" * len(titles)]
    for r in rows:
        for c in CONDITIONS:
            lines.append(f"| {r['layout']} | {oh.CONDITION_TITLES[c]} | "
                         + " | ".join(_cell(r["recorded_cells"][m][c]) for m in COMPARED)
                         + f" | {_cell(r['cells'][c])} | "
                         + _cell(r["bc_at_icq_updates"]["cells"][c]) + " |")
    lines += ["", "## ICQ − each learner (seed s of both evaluated with the same key; 95% bootstrap interval)", "",
              "| layout | ICQ − | with proxy, both seats | self-play |", "|---|---|---|---|"]
    for r in rows:
        for m in COMPARED:
            lines.append(f"| {r['layout']} | {oh.LEARNER_TITLES[m]} | {_cell(r['difference'][m]['proxy_both'])} | "
                         f"{_cell(r['difference'][m]['self'])} |")
        control = r["bc_at_icq_updates"]
        lines.append(f"| {r['layout']} | BC at {control['updates']:,} updates | "
                     f"{_cell(control['icq_minus_this']['proxy_both'])} | {_cell(control['icq_minus_this']['self'])} |")
    lines += ["", "ICQ's actor filter at its last checkpoint (`diagnose_sit.icq_filter`, "
              f"{FILTER_BATCHES} batches per seed): effective sample fraction of |B|·softmax_B(A/β) (1: every "
              "decision weighed alike, i.e. BC) and the advantages' spread: "
              + "; ".join(f"{r['layout']} {r['filter']['ess_fraction_mean']:.2f} at β = {r['filter']['beta']:g} "
                          f"(median |A| {r['filter']['advantage']['median_abs']:.3f}, share of a batch's largest "
                          f"weight {r['filter']['max_share_median']:.2f}; the mixer's k_0(s) 5th / 50th / 95th "
                          f"percentile {r['filter']['mixer_k0']['p5']:.2f} / {r['filter']['mixer_k0']['p50']:.2f} / "
                          f"{r['filter']['mixer_k0']['p95']:.2f})"
                          for r in rows if "filter" in r)]
    grids = [r for r in rows if "optimiser_grid" in r]
    if grids:
        lines += ["", "## ICQ's gap to BC at equal updates: objective or optimiser?", "",
                  f"BC and ICQ at {report['updates']:,} updates on batches of the same size (ICQ's "
                  f"{OVERRIDES['batch_size']} games; BC's MLP draws as many steps at random) and the same gradient "
                  "clip, under either RMSProp; same keys and evaluation. ICQ under its default (ε under the root) is the run above.",
                  "", "| layout | optimiser | condition | BC | ICQ | ICQ − BC (seed-paired) |", "|---|---|---|---|---|---|"]
        for r in grids:
            grid = r["optimiser_grid"]
            for optimizer in OPTIMISERS:
                for c in ("proxy_both", "self"):
                    lines.append(f"| {r['layout']} | {OPTIMISER_TITLES[optimizer]} | {oh.CONDITION_TITLES[c]} "
                                 f"| {_cell(grid['cells'][f'bc/{optimizer}'][c])} "
                                 f"| {_cell(grid['cells'][f'icq/{optimizer}'][c])} "
                                 f"| {_cell(grid['icq_minus_bc'][optimizer][c])} |")
            for c in ("proxy_both", "self"):
                lines.append(f"| {r['layout']} | {OPTIMISER_TITLES['rmsprop_eps_in_root']}, BC's loss halved (as ICQ's "
                             f"k_i(s) ≈ ½ weighs its own) | {oh.CONDITION_TITLES[c]} "
                             f"| {_cell(grid['cells'][f'bc/{HALF_LOSS}'][c])} "
                             f"| {_cell(grid['cells']['icq/rmsprop_eps_in_root'][c])} "
                             f"| {_cell(grid['icq_minus_bc_half_loss'][c])} |")
    lines += ["", "Human soups per game (train split) and ICQ's training time: "
              + "; ".join(f"{r['layout']} {r['human_soups_per_game']['train']:.1f}, {r['seconds']['train'] / 60:.0f} min"
                          for r in rows)]
    if report.get("summary"):
        lines += ["", "## Verdict", "", report["summary"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", default=",".join(oh.LAYOUTS))
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--recorded", type=Path, default=RESULTS / "overcooked-human-cpu.json",
                        help="the human benchmark's result file whose proxy and learners are set beside ICQ")
    parser.add_argument("--optimiser-grid", action="store_true",
                        help="for layouts already run: BC and ICQ on the same batches under either RMSProp "
                             "(ICQ's gap to BC at equal updates: objective or optimiser?)")
    parser.add_argument("--summary", type=Path, help="a text file: the verdict paragraph written into the results")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/teamsift-overcooked-offline-rl"),
                        help="the imported splits and ICQ's run directories (an interrupted run resumes there)")
    args = parser.parse_args(argv)
    layouts = [oh.resolve_name(name) for name in args.layouts.split(",")]
    recorded = json.loads(args.recorded.read_text())
    missing = [name for name in layouts if name not in recorded["layouts"]]
    if missing:
        raise SystemExit(f"{args.recorded}: field 'layouts' has no {missing}; run run_overcooked_human.py first")
    config = recorded["config"]
    stem = f"overcooked-offline-rl-{jax.devices()[0].platform}"
    json_path = args.out / f"{stem}.json"
    report = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if report.get("layouts") and (report.get("updates"), report.get("seeds")) != (args.updates, config["seeds"]):
        raise SystemExit(f"{json_path} holds layouts at {report.get('updates')} updates and {report.get('seeds')} "
                         f"seeds (asked: {args.updates}, {config['seeds']}); give another --out")
    command = "python benchmarks/run_overcooked_offline_rl.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    report.update(machine=describe(host()), updates=args.updates, seeds=config["seeds"],
                  commands=list(dict.fromkeys([*report.get("commands", []), command.rstrip()])))
    report.setdefault("layouts", {})
    if args.summary is not None:
        report["summary"] = args.summary.read_text().strip()
    key = jax.random.key(0)  # run_overcooked_human's root key: a layout's key is named_key(key, layout)
    for layout in layouts:
        row = report["layouts"].get(layout)
        if args.optimiser_grid:
            if row is None:
                raise SystemExit(f"{json_path}: field 'layouts' has no {layout!r}; the optimiser grid needs its ICQ "
                                 "run (run without --optimiser-grid first)")
            if "optimiser_grid" not in row:
                row["optimiser_grid"] = optimiser_grid(row, oh.named_key(key, layout), recorded["layouts"][layout],
                                                       config, updates=args.updates, workdir=args.work_dir)
                write_report(report, render(report), args.out, stem)
            continue
        if row is not None:
            print(f"{layout}: done already (in {json_path}); skipped", file=sys.stderr)
            continue
        report["layouts"][layout] = run_layout(layout, oh.named_key(key, layout), recorded["layouts"][layout], config,
                                               updates=args.updates, workdir=args.work_dir)
        write_report(report, render(report), args.out, stem)
        print(json.dumps({"layout": layout, "cells": report["layouts"][layout]["cells"]}), file=sys.stderr)
    print(write_report(report, render(report), args.out, stem)[1].read_text())


if __name__ == "__main__":
    main()
