"""EV2BC vs BC on the human–human Overcooked trials, judged beside a human proxy.

Select to Perfect (Section 5) and Carroll et al. (2019) evaluate a policy learned from
human games by pairing it with a **human proxy**: a behaviour-cloning model of the
*held-out* human games (overcooked-ai's test split), which stands in for a new human
partner. This module holds that protocol; `benchmarks/run_overcooked_human.py` runs it
over the five layouts and writes the results.

Protocol (fixed before any test-split soups were looked at; also in the results file):

1. **Data.** Per layout, the train split (`import_overcooked_human(layout, "train")`)
   trains the learners; the test split trains the human proxy and nothing else.
   `check_held_apart` refuses a pair whose games overlap (overcooked-ai's splits hold
   different worker pairs per layout) or whose environments differ.
2. **EV-Clustering** (`teamsift.value.clustering.ev_cluster`) on the train split:
   DVF = soups per game; features = the library's default behaviour features
   (`FeatureConfig()`: per-player action histograms in 4 k-means observation bins);
   cluster value = the members' mean EV̂. **K** is chosen on the train split alone by
   EV-Clustering's own held-out estimation error (5 folds over games; candidates 1–8 up
   to the number of players; the smallest K within one standard error of the lowest
   error). **Threshold**: keep the players whose cluster EV is above 0 (the paper's
   default, better than a random exchange); EV2BC per slot applies the same rule within
   each role to values centred on the role's mean. When the held-out error picks K = 1,
   the data support no behavioural distinction, every player has the same value, and
   EV2BC keeps every decision (it is BC).
3. **EV2BC (K = 3)**: the previous benchmark's fixed K, same threshold, reported for
   continuity and not used for the verdict.
4. **group-BC**: the top half of the training games by soups (the registry's default).
5. **Learners**: MLP BC (64-64, RMSProp 5e-4), 5,000 updates, 5 seeds as one vmapped
   program, acting by sampling the cloned distribution; every learner trains from the
   same key, so seed s of every learner shares its initialisation and batches and the
   learners differ only in their weights (`teamsift.engine.fit(..., weights=...)`).
6. **Human proxy** (`human_proxy`): the same BC learner and budget, one seed, on the
   test split; it samples its actions, like Carroll et al.'s BC models.
7. **Evaluation** in the JaxMARL layout over the human games' horizon (1,204 steps),
   20 games per seed and condition, one evaluation key for every learner: self-play
   (the policy plays both cooks), and the policy as agent_0 or as agent_1 with the
   proxy in the other seat (`teamsift.evaluate.evaluate_paired`). A cell is the mean
   over seeds of each seed's soups per game, with a 95% percentile-bootstrap interval
   over seeds (10,000 resamples).
8. **Verdict**: EV2BC beats BC in a layout and condition when the 95% bootstrap
   interval of the seed-paired difference EV2BC − BC lies above 0; the headline
   condition is the proxy with both seats averaged.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from teamsift.algos import bc
from teamsift.bench.report import named_key
from teamsift.bench.seeds import bootstrap_interval, paired_difference
from teamsift.data import import_overcooked_human, load_dataset
from teamsift.engine import RunConfig, fit, step_weights
from teamsift.envs import make
from teamsift.evaluate import evaluate, evaluate_paired
from teamsift.value.clustering import ev_cluster
from teamsift.value.weights import SelectionConfig, individual_weights, valuation_weights

#: The layouts of the human data that JaxMARL 0.2.0 has (our names; human random0 and random3
#: are forced_coordination and counter_circuit).
LAYOUTS = ("cramped_room", "asymmetric_advantages", "coordination_ring", "forced_coordination", "counter_circuit")
LEARNERS = ("bc", "group_bc", "ev2bc", "ev2bc_per_slot", "ev2bc_k3")
LEARNER_TITLES = {"bc": "BC", "group_bc": "group-BC", "ev2bc": "EV2BC", "ev2bc_per_slot": "EV2BC per slot",
                  "ev2bc_k3": "EV2BC (K = 3)"}
#: Evaluation conditions: self-play, and the learner in seat 0 or 1 beside the human proxy.
CONDITIONS = ("self", "proxy_seat0", "proxy_seat1")
CONDITION_TITLES = {"self": "self-play", "proxy_seat0": "with proxy, learner = agent_0",
                    "proxy_seat1": "with proxy, learner = agent_1", "proxy_both": "with proxy, both seats"}
SCORE = "soups"


@dataclasses.dataclass(frozen=True)
class HumanBenchConfig:
    """The budget of one run (protocol steps 5–7)."""

    updates: int = 5000
    seeds: int = 5
    episodes: int = 20  # evaluation games per seed and condition
    proxy_updates: int | None = None  # None: the learners' `updates`
    fixed_clusters: int = 3  # EV2BC (K = 3), for continuity with the self-play table
    learners: tuple[str, ...] = LEARNERS

    def __post_init__(self):
        for name in ("updates", "seeds", "episodes", "fixed_clusters"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"HumanBenchConfig.{name}: expected an integer >= 1, got {value!r}")
        unknown = [m for m in self.learners if m not in LEARNERS]
        if unknown or "bc" not in self.learners:
            raise ValueError(f"HumanBenchConfig.learners: expected names among {LEARNERS}, 'bc' included, "
                             f"got {self.learners!r}")


# ---------------------------------------------------------------------------------------
# The two splits, held apart
# ---------------------------------------------------------------------------------------


def _provenance(dataset) -> dict:
    provenance = dataset.meta.get("provenance")
    if not isinstance(provenance, dict) or "split" not in provenance or "games" not in provenance:
        raise ValueError(f"{dataset.path / 'meta.json'}: field 'provenance' expected the record of "
                         f"`import_overcooked_human` (split, layout, games), found "
                         f"{sorted(provenance) if isinstance(provenance, dict) else type(provenance).__name__}")
    return provenance


def _require_split(dataset, split: str, what: str) -> dict:
    provenance = _provenance(dataset)
    if provenance["split"] != split:
        raise ValueError(f"{dataset.path / 'meta.json'}: field 'provenance.split' expected {split!r} ({what}), "
                         f"found {provenance['split']!r}")
    return provenance


def game_workers(dataset) -> set[int]:
    """The `workerid_num` of every game of an imported human dataset (one game per worker pair and layout)."""
    return {int(game["workerid_num"]) for game in _provenance(dataset)["games"]}


def check_held_apart(train, test) -> None:
    """Raise unless `train` is a train split and `test` the test split of the same layout and
    environment, with no game (worker pair) in both."""
    train_record = _require_split(train, "train", "the learners' data")
    test_record = _require_split(test, "test", "the human proxy's data")
    if train_record.get("layout") != test_record.get("layout"):
        raise ValueError(f"{test.path / 'meta.json'}: field 'provenance.layout' expected "
                         f"{train_record.get('layout')!r} (the train split's), found {test_record.get('layout')!r}")
    if (train.meta["env_id"], train.meta.get("env_kwargs")) != (test.meta["env_id"], test.meta.get("env_kwargs")):
        raise ValueError(f"{test.path / 'meta.json'}: fields 'env_id'/'env_kwargs' expected the train split's "
                         f"{train.meta['env_id']} {train.meta.get('env_kwargs')}, found {test.meta['env_id']} "
                         f"{test.meta.get('env_kwargs')}")
    shared = sorted(game_workers(train) & game_workers(test))
    if shared:
        raise ValueError(f"{test.path / 'meta.json'}: field 'provenance.games' expected no game of the train split "
                         f"({train.path}), found workerid_num {shared} in both")


def import_splits(layout: str, workdir: Path, progress: bool = False):
    """(train, test) datasets of one layout under `workdir`, checked to be held apart."""
    workdir = Path(workdir)
    train = load_dataset(import_overcooked_human(layout, "train", workdir / f"{layout}-train", overwrite=True,
                                                 progress=progress))
    test = load_dataset(import_overcooked_human(layout, "test", workdir / f"{layout}-test", overwrite=True,
                                                progress=progress))
    check_held_apart(train, test)
    return train, test


# ---------------------------------------------------------------------------------------
# The human proxy
# ---------------------------------------------------------------------------------------


def human_proxy(test, key: jax.Array, *, updates: int = 5000, config: bc.BCConfig = bc.BCConfig(recurrent=False),
                train=None):
    """The human proxy of Carroll et al. (2019): BC on the held-out (test-split) human games.

    `test` must be an imported test split (`provenance.split == "test"`); given `train`,
    the two are also checked to be held apart. One seed; the policy samples its actions
    when `config.sample_actions` (the default), as a human-like partner should."""
    if train is not None:
        check_held_apart(train, test)
    else:
        _require_split(test, "test", "the human proxy's data")
    learner = bc.learner(config, test)
    run = RunConfig(updates=updates, seeds=1, log_every=max(1, updates // 10), progress=False)
    return fit(learner, test, key, run).policy(0)


# ---------------------------------------------------------------------------------------
# One layout
# ---------------------------------------------------------------------------------------


def kept_fraction(dataset, weights) -> float:
    """The fraction of agent decisions (steps × slots) with a weight above 0."""
    return float((step_weights(dataset, weights) > 0).mean())


def _cluster_weights(train, clustering, per_slot: bool) -> np.ndarray:
    """EV2BC's weights [E, A] from a clustering (protocol step 2: K = 1 keeps everyone)."""
    if clustering.num_clusters == 1:
        return np.ones(train.episodes["agent_ids"].shape, np.float32)
    values = {str(i): float(v) for i, v in zip(clustering.ids, clustering.values)}
    weights = individual_weights(SelectionConfig(score=SCORE, per_slot=per_slot), train, values)
    if not np.asarray(weights).any():
        raise ValueError("EV2BC: no player's cluster EV is above 0")
    return np.asarray(weights, np.float32)


def _clustering_record(clustering) -> dict:
    record = clustering.as_dict()
    return {"num_clusters": record["num_clusters"], "selection": record["selection"], "clusters": record["clusters"],
            "player_values": {str(i): float(v) for i, v in zip(clustering.ids, clustering.values)}}


def learner_weights(train, key: jax.Array, config: HumanBenchConfig) -> tuple[dict, dict]:
    """{learner: [E, A] weights or None (BC)} and the valuations' records (protocol steps 2–4)."""
    weights: dict[str, Any] = {"bc": None}
    records: dict[str, Any] = {}
    if "group_bc" in config.learners:
        group = valuation_weights("group", train, key, SelectionConfig(score=SCORE, fraction=0.5))
        weights["group_bc"] = group.weights
    if {"ev2bc", "ev2bc_per_slot"} & set(config.learners):
        chosen = ev_cluster(train, num_clusters=None, key=named_key(key, "ev-cluster"), score=SCORE)
        records["ev_cluster"] = _clustering_record(chosen)
        for name, per_slot in (("ev2bc", False), ("ev2bc_per_slot", True)):
            if name in config.learners:
                weights[name] = _cluster_weights(train, chosen, per_slot)
    if "ev2bc_k3" in config.learners:
        fixed = ev_cluster(train, num_clusters=min(config.fixed_clusters, len(np.unique(train.episodes["agent_ids"]))),
                           key=named_key(key, "ev-cluster-fixed"), score=SCORE)
        records["ev_cluster_fixed"] = _clustering_record(fixed)
        weights["ev2bc_k3"] = _cluster_weights(train, fixed, per_slot=False)
    return weights, records


def _same_weights(a, b) -> bool:
    """Whether two learners train on the same weights (None = every decision with weight 1)."""
    a = None if a is None or np.all(np.asarray(a) == 1) else np.asarray(a)
    b = None if b is None or np.all(np.asarray(b) == 1) else np.asarray(b)
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def evaluate_conditions(env, policies: list, proxy, key: jax.Array, episodes: int) -> dict[str, list[float]]:
    """Soups per game of every seed's policy in every condition (self-play, beside the proxy in each seat)."""
    out = {c: [] for c in CONDITIONS}
    for s, policy in enumerate(policies):
        seed_key = jax.random.fold_in(key, s)
        out["self"].append(float(evaluate(env, policy, seed_key, episodes).scores[SCORE].mean))
        for seat in range(env.spec.num_agents):
            result = evaluate_paired(env, policy, proxy, seed_key, episodes, seat=seat)
            out[f"proxy_seat{seat}"].append(float(result.scores[SCORE].mean))
    return out


def run_layout(layout: str, key: jax.Array, config: HumanBenchConfig, workdir: Path) -> dict:
    """Protocol steps 1–8 on one layout; a JSON-ready record."""
    began = time.perf_counter()
    train, test = import_splits(layout, workdir)
    env = make(train.meta["env_id"], **train.meta["env_kwargs"])
    timings = {}
    start = time.perf_counter()
    proxy = human_proxy(test, named_key(key, "proxy"), updates=config.proxy_updates or config.updates, train=train)
    timings["proxy"] = time.perf_counter() - start
    start = time.perf_counter()
    weights, valuations = learner_weights(train, named_key(key, "valuation"), config)
    timings["valuation"] = time.perf_counter() - start
    learner = bc.learner(bc.BCConfig(recurrent=False), train)
    run = RunConfig(updates=config.updates, seeds=config.seeds, log_every=max(1, config.updates // 10),
                    progress=False)
    train_key, eval_key, stats_key = (named_key(key, n) for n in ("train", "eval", "stats"))
    soups, kept, same_as = {}, {}, {}
    for name in config.learners:
        kept[name] = 1.0 if weights[name] is None else kept_fraction(train, weights[name])
        twin = next((other for other in soups if _same_weights(weights[other], weights[name])), None)
        if twin is not None:  # the same key and the same weights train the same policies: reuse them
            soups[name], same_as[name] = {c: list(v) for c, v in soups[twin].items()}, twin
            continue
        start = time.perf_counter()
        policies = fit(learner, train, train_key, run, weights=weights[name]).policies()
        timings[name] = time.perf_counter() - start
        start = time.perf_counter()
        soups[name] = evaluate_conditions(env, policies, proxy, eval_key, config.episodes)
        timings[f"{name}_eval"] = time.perf_counter() - start
    for name in soups:
        soups[name]["proxy_both"] = [(a + b) / 2 for a, b in zip(soups[name]["proxy_seat0"],
                                                                 soups[name]["proxy_seat1"])]
    proxy_self = float(evaluate(env, proxy, eval_key, config.episodes * config.seeds).scores[SCORE].mean)
    # One resampling key per condition for every learner: the same seeds' soups get the same interval.
    cells = {name: {c: bootstrap_interval(v, named_key(stats_key, c)) for c, v in conds.items()}
             for name, conds in soups.items()}
    differences = {name: {c: paired_difference(soups[name][c], soups["bc"][c], named_key(stats_key, "diff", c))
                          for c in soups[name]} for name in soups if name != "bc"}
    return {
        "layout": layout,
        "games": {"train": train.num_episodes, "test": test.num_episodes},
        "workers": {"train": sorted(game_workers(train)), "test": sorted(game_workers(test))},
        "human_soups_per_game": {"train": float(np.mean(train.score(SCORE))),
                                 "test": float(np.mean(test.score(SCORE)))},
        "proxy_self_play_soups": proxy_self,
        "valuations": valuations,
        "kept_fraction": kept,
        "same_policies_as": same_as,
        "soups": soups,
        "cells": cells,
        "difference_vs_bc": differences,
        "seconds": {**timings, "total": time.perf_counter() - began},
    }


# ---------------------------------------------------------------------------------------
# Aggregate and table
# ---------------------------------------------------------------------------------------


def aggregate_rows(results: list[dict], condition: str) -> dict:
    """Rows for `teamsift.bench.aggregate` (rliable): per layout, every learner's per-seed soups
    in `condition`, normalised against the train split's human soups per game."""
    return {r["layout"]: {"behavior": r["human_soups_per_game"]["train"],
                          "cells": {name: {"returns": conds[condition]} for name, conds in r["soups"].items()}}
            for r in results}


def _cell(point) -> str:
    mean, low, high = point
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def render(report: dict) -> str:
    from teamsift.bench import aggregate

    results = [report["layouts"][name] for name in LAYOUTS if name in report["layouts"]]
    learners = [m for m in LEARNERS if any(m in r["soups"] for r in results)]
    lines = ["# EV2BC vs BC on human Overcooked data, with a human proxy", "",
             f"Command: `{report['command']}`", "", f"Machine: {report['machine']}", "",
             f"Wall clock: {sum(r['seconds']['total'] for r in results) / 60:.1f} min for the layouts below.", "",
             f"Layouts finished: {', '.join(r['layout'] for r in results)}"
             + (f" (not run: {', '.join(m for m in LAYOUTS if m not in report['layouts'])})"
                if len(results) < len(LAYOUTS) else ""), "",
             "## Protocol (stated before any test soups were looked at)", "", report["protocol"], ""]
    lines += ["## Soups per game", "",
              "Mean over seeds of each seed's soups per game, [95% percentile-bootstrap interval over seeds]. "
              f"{report['config']['seeds']} seeds, {report['config']['episodes']} games per seed and condition, "
              "1,204 steps per game. Human: the split's own mean soups per game.", ""]
    header = "| layout | condition | " + " | ".join(LEARNER_TITLES[m] for m in learners) + " |"
    lines += [header, "|---|---|" + "---|" * len(learners)]
    for r in results:
        for c in ("proxy_seat0", "proxy_seat1", "proxy_both", "self"):
            lines.append(f"| {r['layout']} | {CONDITION_TITLES[c]} | "
                         + " | ".join(_cell(r["cells"][m][c]) for m in learners) + " |")
    lines += ["", "## Per layout: data, proxy, selection", "",
              "| layout | games train / test | human soups/game train / test | proxy self-play | K chosen "
              "(held-out RMSE per K) | decisions kept: group-BC / EV2BC / per slot / K = 3 |",
              "|---|---|---|---|---|---|"]
    for r in results:
        ev = r["valuations"].get("ev_cluster", {})
        scores = ", ".join(f"{k}: {v:.2f}" for k, v in ev.get("selection", {}).get("scores", {}).items()
                           if v is not None)
        kept = " / ".join(f"{r['kept_fraction'][m]:.0%}" if m in r["kept_fraction"] else "—"
                          for m in ("group_bc", "ev2bc", "ev2bc_per_slot", "ev2bc_k3"))
        lines.append(f"| {r['layout']} | {r['games']['train']} / {r['games']['test']} | "
                     f"{r['human_soups_per_game']['train']:.1f} / {r['human_soups_per_game']['test']:.1f} | "
                     f"{r['proxy_self_play_soups']:.2f} | {ev.get('num_clusters', '—')} ({scores}) | {kept} |")
    lines += ["", "## Difference to BC (seed-paired, 95% bootstrap interval)", "",
              "| layout | learner | " + " | ".join(CONDITION_TITLES[c] for c in ("proxy_both", "self")) + " |",
              "|---|---|---|---|"]
    for r in results:
        for m in learners:
            if m == "bc":
                continue
            lines.append(f"| {r['layout']} | {LEARNER_TITLES[m]} | "
                         + " | ".join(_cell(r["difference_vs_bc"][m][c]) for c in ("proxy_both", "self")) + " |")
    if len(results) > 1:
        for condition in ("proxy_both", "self"):
            summary = aggregate.aggregate(aggregate_rows(results, condition), tuple(learners))
            if summary["methods"]:
                summary["methods"] = {LEARNER_TITLES[m]: v for m, v in summary["methods"].items()}
                lines += [""] + aggregate.render(f"{CONDITION_TITLES[condition]}", summary)
    if report.get("summary"):
        lines += ["", "## Does EV2BC beat BC beside the human proxy?", "", report["summary"]]
    return "\n".join(lines) + "\n"


def resolve_name(layout: str) -> str:
    """Our name of a layout (ours, JaxMARL's or the human data's spelling)."""
    from teamsift.data.overcooked_human import resolve_layout

    return resolve_layout(layout)
