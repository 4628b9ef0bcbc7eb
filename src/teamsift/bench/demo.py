"""The demo (`teamsift demo`): find the good individuals of a mixed population from the
team score alone, then learn from them.

Each part is an environment and a population of individuals, each secretly one of a few
scripted behaviour types, some good and some bad:

1. data       groups of K individuals, drawn uniformly at random from the population,
              play episodes; the learners see who played (agent ids) and the team's scores;
2. valuation  Exchange Values of the individuals from the team score alone
              (EV̂_i = mean score of the episodes i played − mean score of the others),
              scored against the hidden types: AUC good vs bad, and the ranking;
3. learners   through `algos.pipeline.train`, with one key and the same evaluation
              episodes: BC (everyone), EV2BC (the individuals with EV̂ > 0), group-BC (the
              better half of the episodes by team score) and the oracle (BC of the
              individuals whose hidden type is good); each trains `seeds` seeds, and each
              seed's policy is evaluated in the environment. BC trains on uniform weights
              (every decision 1: exactly plain BC), so all four share one compiled program.

The dataset keeps the hidden types as every generated dataset does (the `behaviour`
column, the provenance levels), so `teamsift value` can score a valuation of it; the
valuation and the learners read only agent ids and scores. The hidden types only score
the valuation and make the oracle's weights.

The team score of the commons is `v_final`, the resources left at the end (Select to
Perfect's DVF for sustainability; the return counts what was consumed, and by it an
erratic consumer is better than the population average, a quarter of which is greedy).
Both parts train MLP agents: the scripted rules are memoryless, so a GRU (the registry's
default on partially observable maps) would only take longer.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from teamsift import envs
from teamsift.algos import bc, pipeline
from teamsift.collect import behaviours
from teamsift.collect.datasets import cycle_levels, generate_population
from teamsift.data import load_dataset
from teamsift.engine import RunConfig
from teamsift.fileio import atomic_write_text
from teamsift.nets import PolicyBank, save_policy
from teamsift.progress import STDERR
from teamsift.value.accuracy import auc, ground_truth_levels
from teamsift.value.exchange import dataset_ev_from
from teamsift.value.weights import Weights

RESULTS_FILE = "results.json"
PLOT_FILE = "values.png"


class DemoError(ValueError):
    """The demo cannot run as asked (e.g. its output directory holds something)."""


@dataclasses.dataclass(frozen=True)
class Sizes:
    population: int  # individuals, the types assigned in turn
    episodes: int  # groups drawn at random, one episode each
    updates: int  # per learner
    seeds: int  # per learner, trained as one vmapped program
    eval_episodes: int  # per seed


@dataclasses.dataclass(frozen=True)
class Part:
    env_id: str
    types: tuple[str, ...]  # behaviour tokens (`collect.behaviours`)
    good: tuple[str, ...]  # the good ones among them
    score: str | None  # the team score the valuation and the table use (None: the return)
    full: Sizes
    quick: Sizes

    def type_name(self, token: str) -> str:
        return token.split(":", 1)[-1]


PARTS = (
    Part("commons", ("scripted:sustainable", "scripted:adaptive", "scripted:greedy", "scripted:erratic"),
         ("scripted:sustainable", "scripted:adaptive"), "v_final",
         full=Sizes(population=16, episodes=1000, updates=1500, seeds=3, eval_episodes=50),
         quick=Sizes(population=8, episodes=400, updates=100, seeds=2, eval_episodes=8)),
    Part("CN_3ls3l", ("scripted:nearest", "random"), ("scripted:nearest",), None,
         full=Sizes(population=12, episodes=800, updates=1500, seeds=3, eval_episodes=100),
         quick=Sizes(population=6, episodes=400, updates=100, seeds=2, eval_episodes=8)),
)

#: (row, registry name, what the weights are)
LEARNERS = (("BC", "bc", "everyone"), ("EV2BC", "ev2bc", "EV > 0"), ("group-BC", "group_bc", "best half of episodes"),
            ("oracle", "bc", "good types (labels)"))


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an `out` that is a file, or a non-empty directory without `overwrite`."""
    if out.exists() and not out.is_dir():
        raise DemoError(f"--out {out}: expected a directory, found a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DemoError(f"--out {out}: the directory is not empty; pass --overwrite to replace the demo's files "
                        f"there, or choose another --out")


def population_dataset(env, part: Part, sizes: Sizes, key: jax.Array, path: Path, progress: bool):
    """Groups drawn at random from a population of `sizes.population` individuals whose
    types are `part.types` in turn. Returns (dataset, id -> hidden type token)."""
    bank = PolicyBank(tuple(behaviours.resolve(token, env)[0] for token in part.types))
    levels = cycle_levels(sizes.population, list(part.types))
    written = generate_population(env, bank, [part.types.index(level) for level in levels], levels, key, path,
                                  num_episodes=sizes.episodes, overwrite=True, progress=progress,
                                  provenance={"command": "demo", "types": list(part.types)})
    dataset = load_dataset(written)
    return dataset, ground_truth_levels(dataset)


def valuation_report(dataset, part: Part, hidden: dict[str, str]) -> dict:
    """Exchange Values of the team score, scored with the hidden types."""
    result = dataset_ev_from(dataset, part.score)
    good = np.array([hidden[i] in part.good for i in result.ids.tolist()])
    ranking = [{**row, "type": part.type_name(hidden[row["id"]]), "good": hidden[row["id"]] in part.good}
               for row in result.to_table()]
    above = result.values > 0
    return {
        "method": "ev", "score": result.score,
        "auc_good_vs_bad": auc(result.values, good, ~good),
        "good_in_top": int(sum(row["good"] for row in ranking[:int(good.sum())])),
        "good": int(good.sum()), "bad": int((~good).sum()),
        "above_zero": {"good": int((above & good).sum()), "bad": int((above & ~good).sum())},
        "ranking": ranking,
    }


def good_slots(dataset, part: Part, hidden: dict[str, str]) -> np.ndarray:
    """[E, A]: whether the individual in each (episode, slot) is of a good hidden type."""
    return np.vectorize(lambda i: hidden[i] in part.good, otypes=[bool])(dataset.episodes["agent_ids"])


def given_weights(name: str, dataset, part: Part, hidden: dict[str, str]) -> Weights | None:
    """BC's uniform weights (every decision 1: exactly plain BC's loss, and the same compiled
    program as the weighted learners) and the oracle's (1 for the good hidden types)."""
    if name == "BC":
        return Weights("uniform", np.ones((dataset.num_episodes, dataset.num_agents), np.float32))
    if name == "oracle":
        return Weights("oracle", good_slots(dataset, part, hidden).astype(np.float32))
    return None


def summary(values) -> dict:
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "per_seed": values.tolist()}


def learner_row(name: str, algo: str, selects: str, result, dataset, part: Part, hidden: dict[str, str]) -> dict:
    """One row of the table: what the learner trained on and how its seeds scored."""
    weights = result.weights.weights
    decisions = weights * dataset.lengths[:, None]  # an (episode, slot) weight counts for each of its steps
    good = good_slots(dataset, part, hidden)
    kept = sorted(set(np.asarray(dataset.episodes["agent_ids"])[weights > 0].tolist()))
    seed_scores = result.fit.evaluations[-1]["seed_scores"]
    score = part.score or "return"
    return {
        "name": name, "algo": algo, "selects": selects,
        "weights": result.weights.valuation,
        "kept_fraction": float(((weights > 0) * dataset.lengths[:, None]).sum() / (dataset.lengths.sum()
                                                                                  * dataset.num_agents)),
        "good_share": float((decisions * good).sum() / decisions.sum()),
        "kept_individuals": kept,
        "score": summary([np.mean(s[score]) for s in seed_scores]),
        "return": summary([np.mean(s["return"]) for s in seed_scores]),
        "seconds": float(sum(result.seconds.values())),
    }


def run_part(part: Part, sizes: Sizes, out: Path, key: jax.Array, progress: bool) -> dict:
    began = time.perf_counter()
    say = STDERR.print if progress else (lambda *a, **k: None)
    env = envs.make(part.env_id)
    levels = cycle_levels(sizes.population, list(part.types))
    counts = ", ".join(f"{levels.count(t)} {part.type_name(t)}" for t in part.types)
    say(f"[bold]{part.env_id}[/]: {sizes.episodes} episodes of groups of {env.spec.num_agents} drawn from "
        f"{sizes.population} individuals (secretly {counts})", highlight=False)
    path = out / f"{part.env_id}-population"
    dataset, hidden = population_dataset(env, part, sizes, jax.random.fold_in(key, 0), path, progress)

    valuation = valuation_report(dataset, part, hidden)
    say(f"[bold]{part.env_id}[/]: Exchange Values of {valuation['score']} — AUC good vs bad "
        f"{valuation['auc_good_vs_bad']:.2f}, {valuation['good_in_top']} of the top {valuation['good']} are good",
        highlight=False)

    config = bc.BCConfig(recurrent=False)
    run = RunConfig(updates=sizes.updates, seeds=sizes.seeds, log_every=sizes.updates,
                    eval_episodes=sizes.eval_episodes, progress=progress)
    score_override = {} if part.score is None else {"selection.score": part.score}
    rows = []
    for name, algo, selects in LEARNERS:
        result = pipeline.train(algo, dataset, jax.random.fold_in(key, 1), dataclasses.replace(run, label=name),
                                config=config, env=env, eval_key=jax.random.fold_in(key, 2),
                                overrides=score_override if algo != "bc" else None,
                                given_weights=given_weights(name, dataset, part, hidden))
        rows.append(learner_row(name, algo, selects, result, dataset, part, hidden))
        save_policy(result.policy(), out / "policies" / f"{part.env_id}-{name.lower()}.msgpack", spec=env.spec,
                    extra={"algo": algo, "demo_row": name})
    scores = dataset.episode_scores(part.score)
    return {
        "env_id": part.env_id, "dataset": str(path), "episodes": dataset.num_episodes,
        "population": {"size": sizes.population, "types": [part.type_name(t) for t in part.types],
                       "good_types": [part.type_name(t) for t in part.good]},
        "score": part.score or "return", "dataset_score_mean": float(np.mean(scores)),
        "sizes": dataclasses.asdict(sizes), "valuation": valuation, "rows": rows,
        "seconds": time.perf_counter() - began,
    }


def values_figure(parts: list[dict]):
    """The figure `plot_values` saves (a matplotlib Figure, Agg canvas)."""
    from matplotlib.patches import Patch

    from teamsift import plotting

    tokens = {part.env_id: {part.type_name(t): t for t in part.types} for part in PARTS}
    fig = plotting.new_figure(5.5 * len(parts) + 2.0, 4.4)
    handles = {}
    with plotting.style():
        for index, part in enumerate(parts):
            ax = fig.add_subplot(1, len(parts), index + 1)
            population = part["population"]
            token = tokens.get(part["env_id"], {})
            colour = {name: plotting.level_colour(token.get(name, name)) for name in population["types"]}
            hatch = {name: "" if name in population["good_types"] else "//" for name in population["types"]}
            ranking = part["valuation"]["ranking"]
            values = np.array([np.nan if r["value"] is None else r["value"] for r in ranking], np.float64)
            errors = np.array([np.nan if r["stderr"] is None else 1.96 * r["stderr"] for r in ranking], np.float64)
            x = np.arange(len(ranking))
            ax.bar(x, values, color=[colour[r["type"]] for r in ranking], hatch=[hatch[r["type"]] for r in ranking],
                   edgecolor="white", linewidth=0.0)
            plotting.error_bars(ax, x, values, errors, kind=plotting.CI95)
            ax.axhline(0.0, color="black", linewidth=0.8)
            plotting.id_axis(ax, [r["id"] for r in ranking], what="individual",
                             order="best first; EV2BC imitates those above 0")
            ax.set_ylabel(f"Exchange Value (change in {part['valuation']['score']})")
            ax.set_title(f"{part['env_id']}: AUC good vs bad {part['valuation']['auc_good_vs_bad']:.2f}")
            for name in population["types"]:
                good = "good" if name in population["good_types"] else "bad"
                handles.setdefault(name, Patch(facecolor=colour[name], hatch=hatch[name], edgecolor="white",
                                               label=f"{name} ({good})"))
        plotting.figure_legend(fig, [*handles.values(), plotting.interval_handle(plotting.CI95)],
                               title="hidden type")
        fig.suptitle("Exchange Values from the team score alone, coloured by the hidden type")
    return fig


def plot_values(parts: list[dict], path: Path) -> Path:
    """One panel per part: every individual's Exchange Value with its 95% interval
    (±1.96·stderr), best first, in its hidden type's colour (`teamsift.plotting`), bad
    types hatched; EV2BC keeps the bars above 0."""
    from teamsift.plotting import save

    return save(values_figure(parts), path, dpi=100)


def run_demo(out: str | Path, *, quick: bool = False, seed: int = 0, overwrite: bool = False,
             progress: bool = True) -> dict:
    """Run every part (the `quick` sizes for tests), write the datasets, `values.png`,
    the seed-0 policies and `results.json` under `out`, and return the results."""
    out = Path(out)
    check_out(out, overwrite)
    began = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(seed)
    parts = [run_part(part, part.quick if quick else part.full, out, jax.random.fold_in(key, index), progress)
             for index, part in enumerate(PARTS)]
    report = {"seed": seed, "quick": quick, "out": str(out), "parts": parts,
              "plot": str(plot_values(parts, out / PLOT_FILE)), "results": str(out / RESULTS_FILE)}
    report["seconds"] = time.perf_counter() - began
    atomic_write_text(out / RESULTS_FILE, json.dumps(report, indent=1) + "\n")
    return report
