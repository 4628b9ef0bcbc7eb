"""EV-Clustering's reason to exist (EV2BC §4.2, claim E14 of docs/claims.md): on
incomplete data, the Exchange Value of a cluster of similar individuals has a lower
estimation variance than each individual's own Exchange Value.

On anonymised pool populations (30 checkpoints, 10 per level, each in A episodes under a
fresh one-time id per episode: the incomplete extreme, one appearance per id) three
estimates of every one-time id's contribution are compared with the same id's true
individual's EV from the complete data (true ids, the same episodes):

* per one-time id: `dataset_ev` on the anonymised data, EV̂_j = v(episode of j) − mean of
  the other episodes (one appearance, so no standard error);
* EV-Clustering: the EV of the id's cluster (policy-mixture features, one-se K rule: the
  settings of `run_valuation_appearances.py`, chosen on other draws);
* the reference: EV of the true individual with the true ids (its own Welch standard
  error is the reference's noise floor, reported beside).

Estimation variance is measured directly: ids of one true individual share one true
contribution, so the spread of their estimates (pooled within-individual SD) is the
estimator's noise. The error against the reference splits into bias and spread (RMSE² =
bias² + error SD²). The draws and keys are those of `run_valuation_appearances.py`
(root key 2 + d), so the clustering here is the clustering whose accuracy that table reports.

    python benchmarks/run_ev_variance.py [--envs CN_3ls3l,PP_3p1p,smax_3m] [--appearances 40,80] [--draws 3]

Writes benchmarks/results/ev-variance-<device>.{json,md}, a cell at a time (a rerun keeps
the cells it has).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from run_valuation import POPULATION_ENVS, population_datasets
from run_valuation_appearances import CLUSTER_SETTINGS, FIRST_DRAW_KEY, METHODS
from teamsift.data import load_dataset
from teamsift.fileio import atomic_write_text
from teamsift.machine import describe
from teamsift.machine import machine as host  # `machine` names the report's field
from teamsift.value.accuracy import aligned, ground_truth_levels, true_individuals
from teamsift.value.clustering import ClusterConfig, FeatureConfig, ev_cluster
from teamsift.value.exchange import dataset_ev_from

CLUSTER_METHOD = METHODS[1]  # "ev-cluster (policy-mixture)"
ESTIMATORS = ("per one-time id", "EV-Clustering")


def within_sd(estimates: np.ndarray, groups: np.ndarray) -> float:
    """Pooled SD of the estimates around their group's mean (groups: the true individuals)."""
    labels, codes = np.unique(groups, return_inverse=True)
    means = np.bincount(codes, weights=estimates) / np.bincount(codes)
    dof = len(estimates) - len(labels)
    return float(np.sqrt(np.sum((estimates - means[codes]) ** 2) / dof))


def error_stats(estimates: np.ndarray, truth: np.ndarray, groups: np.ndarray) -> dict:
    error = estimates - truth
    constant = np.ptp(estimates) == 0  # one cluster: no correlation to speak of
    return {"within_sd": within_sd(estimates, groups), "bias": float(error.mean()), "error_sd": float(error.std()),
            "rmse": float(np.sqrt(np.mean(error ** 2))),
            "corr": None if constant else float(np.corrcoef(estimates, truth)[0, 1])}


def measure_cell(env_id: str, appearances: int, draw: int, workdir: Path) -> dict:
    env_index = POPULATION_ENVS.index(env_id)  # the keys of run_valuation_appearances.measure_cell
    key = jax.random.key(FIRST_DRAW_KEY + draw)
    paths = population_datasets(env_id, jax.random.fold_in(key, env_index), workdir, appearances)
    method_key = jax.random.fold_in(key, 100 + env_index)
    complete = load_dataset(paths[f"{env_id} population"])
    anonymised = load_dataset(paths[f"{env_id} population (anonymised)"])

    reference = dataset_ev_from(complete)  # per true individual, from the same episodes
    ref_policy = aligned(true_individuals(complete), reference.ids)
    ref_value = dict(zip(ref_policy.tolist(), reference.values.tolist()))
    ref_stderr = dict(zip(ref_policy.tolist(), reference.stderr.tolist()))

    per_id = dataset_ev_from(anonymised)
    ids = per_id.ids
    individual = aligned(true_individuals(anonymised), ids)
    truth = np.asarray([ref_value[p] for p in individual.tolist()])
    levels = aligned(ground_truth_levels(anonymised), ids)

    kind, k_rule = CLUSTER_SETTINGS[CLUSTER_METHOD]
    clusters = ev_cluster(anonymised, None, method_key,
                          config=ClusterConfig(features=FeatureConfig(kind=kind), k_rule=k_rule))
    order = {i: n for n, i in enumerate(clusters.ids.tolist())}
    at = np.asarray([order[i] for i in ids.tolist()])
    cluster_values, cluster_stderr = clusters.values[at], clusters.stderr[at]

    estimates = {"per one-time id": per_id.values, "EV-Clustering": cluster_values}
    stats = {name: error_stats(np.asarray(v, np.float64), truth, individual) for name, v in estimates.items()}
    stats["per one-time id"]["stderr_mean"] = None  # one appearance: no sample variance (+inf by definition)
    stats["EV-Clustering"]["stderr_mean"] = float(np.mean(cluster_stderr))
    # Does clustering pool the same individual? Share of each individual's ids in its commonest cluster.
    purity = np.mean([np.max(np.bincount(clusters.labels[at][individual == p])) / np.sum(individual == p)
                      for p in np.unique(individual)])
    return {"env": env_id, "appearances": appearances, "draw": draw, "episodes": anonymised.num_episodes,
            "ids": len(ids), "individuals": int(len(np.unique(individual))), "clusters": clusters.num_clusters,
            "cluster_sizes": clusters.cluster_sizes.tolist(), "individual_in_one_cluster": float(purity),
            "truth_sd": float(np.std(truth)), "truth_stderr_mean": float(np.mean(list(ref_stderr.values()))),
            "levels_present": sorted(set(levels.tolist())), "estimators": stats}


def render(report: dict) -> str:
    lines = ["# EV-Clustering's variance reduction on one-time ids (EV2BC §4.2, claim E14)", "",
             f"Command: `{report['command']}`", f"Machine: {report['machine']}", "",
             "Anonymised pool populations: 30 checkpoints (10 per level), each in A episodes, a fresh id per "
             "appearance. Every one-time id's estimate is compared with the EV of its true individual computed with "
             "the true ids on the same episodes (the reference; 'ref. SE' is that reference's mean Welch standard "
             "error). *Within SD*: pooled SD of the estimates of ids of one true individual (the estimator's noise: "
             "they share one true contribution). *RMSE*: of estimate − reference. Scores are the "
             "env's team return; both estimators are centred like the reference (bias 0), so RMSE is the error's "
             "SD, and a constant estimate has RMSE = ref. SD. EV-Clustering: policy-mixture features, one-se K rule "
             "(`run_valuation_appearances.py`'s settings and draws: root key 2 + draw, never used to choose them); "
             "*SE* is the mean standard error that EV-Clustering reports for the cluster values. *Pooled*: mean "
             "share of an individual's ids that fall in its commonest cluster. corr —: one cluster, every estimate "
             "equal.", "",
             "| env | A | draw | K | pooled | ref. SD · SE | estimator | within SD | RMSE | corr | SE |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(report["cells"], key=lambda c: (c["env"], c["appearances"], c["draw"])):
        for n, name in enumerate(ESTIMATORS):
            s = c["estimators"][name]
            head = (f"| {c['env']} | {c['appearances']} | {c['draw']} | {c['clusters']} | "
                    f"{c['individual_in_one_cluster']:.2f} | {c['truth_sd']:.2f} · {c['truth_stderr_mean']:.2f} |"
                    if n == 0 else "| | | | | | |")
            se = "∞" if s["stderr_mean"] is None else f"{s['stderr_mean']:.2f}"
            lines.append(f"{head} {name} | {s['within_sd']:.2f} | {s['rmse']:.2f} | {_number(s['corr'])} | {se} |")
    lines += ["", "## Summary (mean over draws)", "",
              "| env | A | draws | within SD: per id → cluster | variance ratio | ref. SD | RMSE: per id → cluster | "
              "corr: per id → cluster |",
              "|---|---|---|---|---|---|---|---|"]
    for row in summarise(report["cells"]):
        lines.append(f"| {row['env']} | {row['appearances']} | {row['draws']} | {row['within_id']:.2f} → "
                     f"{row['within_cluster']:.2f} | {row['variance_ratio']:.0f}× | {row['truth_sd']:.2f} | "
                     f"{row['rmse_id']:.2f} → {row['rmse_cluster']:.2f} | {_number(row['corr_id'])} → "
                     f"{_number(row['corr_cluster'])} |")
    lines += ["", "Variance ratio: mean within-individual variance of the per-id estimates over that of the "
              "cluster estimates. corr: mean over the draws with more than one cluster."]
    return "\n".join(lines) + "\n"


def summarise(cells: list[dict]) -> list[dict]:
    groups: dict = {}
    for c in cells:
        groups.setdefault((c["env"], c["appearances"]), []).append(c)
    out = []
    for (env_id, appearances), group in sorted(groups.items()):
        def mean(estimator, field, power=1):
            values = np.asarray([c["estimators"][estimator][field] for c in group], np.float64) ** power
            return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        out.append({"env": env_id, "appearances": appearances, "draws": len(group),
                    "within_id": mean("per one-time id", "within_sd"),
                    "within_cluster": mean("EV-Clustering", "within_sd"),
                    "variance_ratio": mean("per one-time id", "within_sd", 2) / mean("EV-Clustering", "within_sd", 2),
                    "truth_sd": float(np.mean([c["truth_sd"] for c in group])),
                    "rmse_id": mean("per one-time id", "rmse"), "rmse_cluster": mean("EV-Clustering", "rmse"),
                    "corr_id": mean("per one-time id", "corr"), "corr_cluster": mean("EV-Clustering", "corr")})
    return out


def _number(x) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.2f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", default="CN_3ls3l,PP_3p1p,smax_3m")
    parser.add_argument("--appearances", default="40,80")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    envs = args.envs.split(",")
    unknown = [e for e in envs if e not in POPULATION_ENVS]
    if unknown:
        parser.error(f"--envs: {unknown}; expected some of {', '.join(POPULATION_ENVS)}")
    device = jax.devices()[0].platform
    json_path = args.out / f"ev-variance-{device}.json"
    machine = describe(host())
    command = shlex.join(["python", "benchmarks/run_ev_variance.py", *(argv or sys.argv[1:])])
    report = json.loads(json_path.read_text()) if json_path.is_file() else {"cells": [], "commands": []}
    if command not in report["commands"]:
        report["commands"].append(command)
    report.update(command="; ".join(report["commands"]), machine=machine)
    done = {(c["env"], c["appearances"], c["draw"]) for c in report["cells"]}
    args.out.mkdir(parents=True, exist_ok=True)
    for appearances in map(int, args.appearances.split(",")):
        for env_id in envs:
            for draw in range(args.draws):
                if (env_id, appearances, draw) in done:
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    cell = measure_cell(env_id, appearances, draw, Path(tmp))
                report["cells"].append(cell)
                print(json.dumps(cell), file=sys.stderr, flush=True)
                atomic_write_text(json_path, json.dumps(report, indent=1) + "\n")
                atomic_write_text(json_path.with_suffix(".md"), render(report))
    print(render(report))


if __name__ == "__main__":
    main()
