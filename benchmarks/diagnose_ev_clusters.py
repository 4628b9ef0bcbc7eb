"""Where EV-Clustering puts each checkpoint's trajectories, against the checkpoint's skill.

On one population draw of `run_valuation_appearances.py` (anonymised: every slot of every
episode is a one-time individual), EV-Clustering (policy-mixture features, K by held-out
error) partitions the trajectories; this reports, per checkpoint of the population, its
level, its self-play return in the pools (`pools.json`), how many of its trajectories the
data hold and the share of them in each cluster (cluster 0 has the highest EV), and draws
the share in the best cluster against the self-play return.

It also measures how far behaviour alone can tell a single trajectory's level (a ceiling
that uses the labels, for diagnosis only): one behaviour-cloning policy per true level,
fitted on the other fold's episodes as EV-Clustering's own policies are, and each
trajectory scored by log π_expert(a|o) − log π_random(a|o) summed over its decisions;
the AUC of that score, expert vs random trajectories, beside EV-Clustering's.

    python benchmarks/diagnose_ev_clusters.py [--env PP_3p1p] [--appearances 160] [--draw 0]

Writes benchmarks/results/ev-cluster-breakdown-<env>[-draw<d>]-<device>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from run_valuation import POPULATION_ENVS, ROOT, population_datasets
from run_valuation_appearances import FIRST_DRAW_KEY
from teamsift.collect.pools import load_pools
from teamsift.data import load_dataset
from teamsift.fileio import atomic_write_text
from teamsift.value.accuracy import aligned, auc, ground_truth_levels
from teamsift.value.clustering import (
    ClusterConfig, FeatureConfig, _out_of_fold, _policy_rows, ev_cluster, numpy_rng,
)
from teamsift.value.exchange import index_ids


def supervised_ceiling(dataset, key) -> float:
    """AUC expert vs random of single trajectories scored by level-supervised, cross-fitted
    behaviour-cloning policies (module doc): what behaviour can tell with the labels."""
    ids, codes = index_ids(dataset.episodes["agent_ids"])
    levels = aligned(ground_truth_levels(dataset), ids)
    obs, actions, avail, owner, episode = _policy_rows(dataset, codes)
    config = FeatureConfig(kind="policy-mixture")  # the mixture's network, fit and folds
    fold_key, fit_key = jax.random.split(key)
    fold = numpy_rng(fold_key).permutation(dataset.num_episodes)[episode] % config.mixture_folds
    weights = np.stack([levels[owner] == level for level in ("expert", "random")], axis=1).astype(np.float64)
    loglik, _ = _out_of_fold((obs, actions, avail), fold, weights, fit_key, config)
    score = np.bincount(owner, weights=loglik[:, 0] - loglik[:, 1], minlength=len(ids))
    return auc(score, levels == "expert", levels == "random")


def breakdown(env_id: str, appearances: int, draw: int, workdir: Path) -> dict:
    index = POPULATION_ENVS.index(env_id)
    key = jax.random.key(FIRST_DRAW_KEY + draw)
    paths = population_datasets(env_id, jax.random.fold_in(key, index), workdir, appearances)
    dataset = load_dataset(next(p for name, p in paths.items() if "anonymised" in name))
    result = ev_cluster(dataset, None, jax.random.fold_in(key, 100 + index),
                        config=ClusterConfig(features=FeatureConfig(kind="policy-mixture")))
    levels = aligned(ground_truth_levels(dataset), result.ids)
    clustered_auc = auc(result.values, levels == "expert", levels == "random")
    ceiling = supervised_ceiling(dataset, jax.random.fold_in(key, 200 + index))
    pools = load_pools(env_id, ROOT / "pools")
    policy = np.asarray(dataset.meta["provenance"]["policy_of_individual"])
    label_of = dict(zip(result.ids.tolist(), result.labels.tolist()))
    true_individual = np.char.lstrip(dataset.episodes["policy_ids"], "ind").astype(int)  # [E, A]
    labels = np.vectorize(label_of.__getitem__)(dataset.episodes["agent_ids"])  # [E, A] cluster per trajectory
    rows = []
    for checkpoint in np.unique(policy):
        mine = policy[true_individual] == checkpoint
        shares = np.bincount(labels[mine], minlength=result.num_clusters) / mine.sum()
        rows.append({"checkpoint": int(checkpoint), "level": str(dataset.episodes["behaviour"][mine][0]),
                     "self_play_return": float(pools.returns[checkpoint]["mean"]), "trajectories": int(mine.sum()),
                     "cluster_shares": [round(float(s), 4) for s in shares]})
    rows.sort(key=lambda r: r["self_play_return"])
    return {"env": env_id, "appearances": appearances, "draw": draw, "root_key": FIRST_DRAW_KEY + draw,
            "clusters": result.num_clusters, "cluster_values": [float(v) for v in np.unique(result.values)[::-1]],
            "level_cuts": list(pools.cuts), "auc_ev_cluster": clustered_auc, "auc_supervised_ceiling": ceiling,
            "rows": rows}


def render(report: dict) -> str:
    k = report["clusters"]
    lines = [f"# EV-Clustering's clusters against the checkpoints' skill: {report['env']}", "",
             f"Command: `{report['command']}`", f"Machine: {report['machine']}", "",
             f"Population draw {report['draw']} (root key {report['root_key']}) of "
             f"`run_valuation_appearances.py`, {report['appearances']} episodes per individual, anonymised. "
             f"EV-Clustering (policy-mixture features) chose K = {k}; cluster EVs, best first: "
             + ", ".join(f"{v:.2f}" for v in report["cluster_values"])
             + f". The pools' level cuts (self-play return): {', '.join(f'{c:.2f}' for c in report['level_cuts'])}.",
             "", f"AUC expert vs random trajectories: EV-Clustering {report['auc_ev_cluster']:.3f}; behaviour "
             f"with the level labels (the supervised ceiling: a cross-fitted policy per level) "
             f"{report['auc_supervised_ceiling']:.3f}.",
             "", "| checkpoint | level | self-play return | trajectories | "
             + " | ".join(f"share in cluster {c}" for c in range(k)) + " |", "|---" * (4 + k) + "|"]
    for r in report["rows"]:
        lines.append(f"| {r['checkpoint']} | {r['level']} | {r['self_play_return']:.1f} | {r['trajectories']} | "
                     + " | ".join(f"{s:.2f}" for s in r["cluster_shares"]) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    from teamsift import plotting

    rows = report["rows"]
    palette = plotting.level_palette([r["level"] for r in rows])
    fig = plotting.new_figure(6.0, 4.0)
    with plotting.style():
        ax = fig.add_subplot(1, 1, 1)
        for level, colour in palette.items():
            mine = [r for r in rows if r["level"] == level]
            ax.scatter([r["self_play_return"] for r in mine], [r["cluster_shares"][0] for r in mine],
                       s=[8 + r["trajectories"] / 8 for r in mine], color=colour, label=level)
        for cut in report["level_cuts"]:
            ax.axvline(cut, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("checkpoint's self-play return (pools); dotted: the level cuts")
        ax.set_ylabel("share of its trajectories in the best cluster")
        ax.set_title(f"{report['env']}: EV-Clustering (K = {report['clusters']}) against skill")
        plotting.legend_outside(ax, title="level")
    plotting.save(fig, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="PP_3p1p", choices=POPULATION_ENVS)
    parser.add_argument("--appearances", type=int, default=160)
    parser.add_argument("--draw", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = breakdown(args.env, args.appearances, args.draw, Path(tmp))
    device = jax.devices()[0].platform
    report["command"] = "python benchmarks/diagnose_ev_clusters.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    report["machine"] = f"{platform.processor() or platform.machine()}, JAX {jax.__version__} on {device}"
    draw = f"-draw{args.draw}" if args.draw else ""  # draw 0 keeps the name the docs link to
    stem = args.out / f"ev-cluster-breakdown-{args.env}{draw}-{device}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write_text(stem.with_suffix(".md"), render(report))
    plot(report, stem.with_suffix(".png"))
    print(render(report))


if __name__ == "__main__":
    main()
