"""Diagnosis (issue 21, part 2): ARDNEM's per-agent credit as EV-Clustering's behaviour feature.

On anonymised pool populations EV-Clustering describes each one-time id by how it acts
(policy-mixture features). Here each is described instead by what SIT's Stage I credits
it with: ARDNEM (`teamsift.value.ardnem`, trained on the team reward only) decomposes every
step's reward, and an id's feature is its trajectory's priority p̂ (Algorithm 1, line 14),
its return ĝ at t = 0 (eq. 6), or its summed r̂ (eq. 4); for reference, by its episode's
team return (what every member shares before any decomposition). Printed per feature: the AUC of
expert vs random and Spearman vs level of the feature itself, and of EV-Clustering on it
(K by the one-se and the lowest-error rules). The populations are the tuning draws of
`tune_ev_features.py` (root key 1): nothing reported elsewhere is drawn here.

    python benchmarks/diagnose_ev_credit.py [--envs PP_3p1p,CN_3ls3l,smax_3m] [--draw 100]
        [--appearances 160] [--updates 3000] [--variants noatt,att] [--overwrite]

Writes benchmarks/results/ev-credit-features-<device>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from tune_ev_features import TUNING_ROOT, tuning_population
from teamsift.data import load_dataset
from teamsift.engine import RunConfig, fit
from teamsift.fileio import atomic_write_text
from teamsift.value import ardnem
from teamsift.value.accuracy import ground_truth_levels
from teamsift.value.clustering import BehaviourFeatures, ClusterConfig, ev_cluster
from teamsift.value.exchange import index_ids
from teamsift.value.report import accuracy_report

ROOT = Path(__file__).resolve().parents[1]


def credit_features(dataset, variant: str, updates: int, key: jax.Array) -> tuple[dict, float]:
    """Per episode and slot [E, A]: ARDNEM's p̂, ĝ at t = 0 and Σ_t r̂, from one ensemble
    trained for `updates` (learning rate 1e-3, as the CLI tests; "att": eqs. 1–2, "noatt": λ ≡ 1)."""
    config = ardnem.ARDNEMConfig(learning_rate=1e-3, attention=variant == "att")
    start = time.perf_counter()
    fitted = fit(ardnem.learner(config, dataset), dataset, key, RunConfig(updates=updates))
    stage1 = ardnem.result(config, fitted, dataset)
    summed = np.zeros((dataset.num_episodes, dataset.num_agents))
    np.add.at(summed, dataset.episode_index, stage1.reward)
    return {"priority": stage1.priority, "return0": stage1.episode_return, "sum_r": summed}, \
        time.perf_counter() - start


def measure(env_id: str, draw: int, appearances: int, updates: int, variants: list[str], workdir: Path) -> list[dict]:
    dataset = load_dataset(tuning_population(env_id, draw, workdir / f"{env_id}-{draw}", appearances))
    levels = ground_truth_levels(dataset)
    ids, codes = index_ids(dataset.episodes["agent_ids"])
    count = np.maximum(np.bincount(codes.reshape(-1), minlength=len(ids)), 1)
    rows = []
    # reference: each id described by its episode's team return (no decomposition at all)
    team = {"team_return": np.repeat(dataset.episode_scores(None)[:, None], dataset.num_agents, axis=1)}
    for variant in ["none", *variants]:
        features, seconds = (team, 0.0) if variant == "none" else credit_features(dataset, variant, updates,
                                                                                  jax.random.key(7))
        for name, per_slot in features.items():
            per_id = np.bincount(codes.reshape(-1), weights=np.asarray(per_slot, np.float64).reshape(-1),
                                 minlength=len(ids)) / count
            raw = accuracy_report(ids, per_id, levels)
            row = {"env": env_id, "draw": draw, "appearances": appearances, "variant": variant, "updates": updates,
                   "feature": name, "feature_auc": raw.get("auc_expert_vs_random"),
                   "feature_spearman": raw.get("spearman"), "ardnem_seconds": round(seconds, 1)}
            standardised = BehaviourFeatures(ids, ((per_id - per_id.mean()) / per_id.std())[:, None], (name,))
            for rule in ("one-se", "lowest"):
                clusters = ev_cluster((standardised, dataset.episodes["agent_ids"], dataset.episode_scores(None)), None,
                                      jax.random.fold_in(jax.random.key(TUNING_ROOT), 500 + draw),
                                      config=ClusterConfig(k_rule=rule))
                accuracy = accuracy_report(clusters.ids, clusters.values, levels)
                row[rule] = {"clusters": clusters.num_clusters, "auc": accuracy.get("auc_expert_vs_random"),
                             "spearman": accuracy.get("spearman")}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def render(report: dict) -> str:
    lines = ["# ARDNEM credit as EV-Clustering's behaviour feature (tuning draws)", "",
             f"Command: `{report['command']}`", f"Machine: {report['machine']}", "",
             "Anonymised pool populations (30 checkpoints, 10 per level, one-time ids) of `tune_ev_features.py`'s "
             "tuning draws. Feature: AUC expert vs random / Spearman vs level of the ARDNEM feature of each one-time "
             "id. EV-Clustering: on that one feature, K by the one-se / lowest-error rule (K, AUC / Spearman).", "",
             "| env | ARDNEM | feature | feature AUC / Spearman | EV-Clustering one-se | EV-Clustering lowest K | "
             "ARDNEM s |", "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        cells = [f"K={r[rule]['clusters']}: {r[rule]['auc']:.2f} / {r[rule]['spearman']:.2f}"
                 for rule in ("one-se", "lowest")]
        ardnem_cell = {"att": f"attention, {r['updates']:,} updates", "noatt": f"w/o attention, {r['updates']:,} updates",
                       "none": "none (reference)"}[r["variant"]]
        lines.append(f"| {r['env']} | {ardnem_cell} | {r['feature']} | {r['feature_auc']:.2f} / "
                     f"{r['feature_spearman']:.2f} | {cells[0]} | {cells[1]} | {r['ardnem_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", default="PP_3p1p,CN_3ls3l,smax_3m")
    parser.add_argument("--draw", type=int, default=100)
    parser.add_argument("--appearances", type=int, default=160, help="episodes per individual")
    parser.add_argument("--updates", type=int, default=3000, help="ARDNEM updates")
    parser.add_argument("--variants", default="noatt,att", help="ARDNEM with (att) and without (noatt) attention")
    parser.add_argument("--overwrite", action="store_true", help="replace results this device already has")
    args = parser.parse_args(argv)
    device = jax.devices()[0].platform
    out = ROOT / "benchmarks" / "results" / f"ev-credit-features-{device}"
    if out.with_suffix(".json").exists() and not args.overwrite:
        parser.error(f"{out.with_suffix('.json')} exists; pass --overwrite to replace it")
    report = {"command": shlex.join(["python", "benchmarks/diagnose_ev_credit.py", *(argv or sys.argv[1:])]),
              "machine": f"{platform.processor() or platform.machine()}, JAX {jax.__version__} on {device}",
              "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in args.envs.split(","):
            report["rows"] += measure(env_id, args.draw, args.appearances, args.updates, args.variants.split(","),
                                      Path(tmp))
    atomic_write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write_text(out.with_suffix(".md"), render(report))
    print(render(report))


if __name__ == "__main__":
    main()
