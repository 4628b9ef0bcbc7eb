"""One entry point for valuing a dataset (`teamsift value`): run a method, attach the
ground truth where the dataset has it, and measure the valuation's accuracy.

    >>> report = value_dataset(load_dataset("data/commons-pop"), "ev", jax.random.key(0), score="v_final")
    >>> report["table"][:3]        # best individuals first, with value ± stderr and true level
    >>> report["accuracy"]         # Spearman vs level, AUC expert-vs-random (when levels are r/m/e)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from teamsift.value.accuracy import LEVEL_ORDER, auc, ground_truth_levels, level_ranks, spearman
from teamsift.value.exchange import EVResult, dataset_ev_from

METHODS = ("ev", "ev-cluster", "shapley", "ardnem")
#: ARDNEM's default schedule here: SIT Table 10's 20 000 updates, a log point every 500.
ARDNEM_UPDATES = 20_000
ARDNEM_LOG_EVERY = 500
#: `values_figure` draws a bar per individual up to this many, then points and a band
#: (10⁵ bars take minutes to draw).
MAX_BARS = 2000


def _truth(dataset) -> dict[str, str]:
    try:
        return ground_truth_levels(dataset)
    except ValueError:
        return {}


def accuracy_report(ids: np.ndarray, values: np.ndarray, truth: dict[str, str]) -> dict[str, Any]:
    """Mean value per true level; Spearman and expert-vs-random AUC when the levels are r/m/e."""
    if not truth:
        return {}
    levels = np.array([truth.get(str(i), "") for i in ids])
    known = (levels != "") & np.isfinite(values)
    per_level = {str(level): {"mean_value": float(np.mean(values[known & (levels == level)])),
                              "individuals": int(np.sum(known & (levels == level)))}
                 for level in sorted(set(levels[known].tolist()))}
    report: dict[str, Any] = {"per_level": per_level}
    if known.any() and set(levels[known]) <= set(LEVEL_ORDER) and len(set(levels[known])) > 1:
        rho = float(spearman(values[known], level_ranks(levels[known])))
        report["spearman"] = rho if np.isfinite(rho) else None  # None: every value equal (one cluster)
        expert, random = levels[known] == "expert", levels[known] == "random"
        if expert.any() and random.any():
            report["auc_expert_vs_random"] = float(auc(values[known], expert, random))
    return report


def _shapley_simulator(dataset, key, episodes_per_set: int):
    """Scores of any subset of a scripted commons population: the subset plays commons alone."""
    from teamsift.collect import behaviours
    from teamsift.envs import make
    from teamsift.evaluate import rollout
    from teamsift.nets import PolicyBank

    provenance = dataset.meta.get("provenance") or {}
    if dataset.meta.get("env_id") != "commons" or provenance.get("individuals") != "scripted commons kinds":
        raise ValueError(f"{dataset.path}: Shapley values need the score of groups of every size, which only "
                         "a scripted commons population provides (its individuals can play in groups of any "
                         "size); use --method ev or ev-cluster")
    names = sorted(provenance["levels"])
    kinds = [provenance["levels"][n] for n in names]
    unique_kinds = sorted(set(kinds))

    def score_sets(masks: np.ndarray, score: str) -> np.ndarray:
        """One batched rollout per group size: every subset of that size, `episodes_per_set` times."""
        masks = np.asarray(masks, bool)
        sizes = masks.sum(axis=1)
        out = np.zeros(len(masks))  # the empty group scores 0
        for size in np.unique(sizes[sizes > 0]):
            rows = np.flatnonzero(sizes == size)
            env = make("commons", num_agents=int(size))
            bank = PolicyBank(tuple(behaviours.resolve(f"scripted:{k}", env)[0] for k in unique_kinds))
            members = np.stack([np.flatnonzero(masks[r]) for r in rows])  # [R, size]
            slots = np.array([[unique_kinds.index(kinds[m]) for m in group] for group in members])
            assignment = np.repeat(slots, episodes_per_set, axis=0)
            episodes = rollout(env, bank, jax.random.fold_in(key, int(size)), len(assignment), record=False,
                               assignment=assignment)
            per_episode = np.asarray(episodes.scores[score] if score in episodes.scores
                                     else episodes.reward.sum(axis=1))
            out[rows] = per_episode.reshape(len(rows), episodes_per_set).mean(axis=1)
        return out

    return names, score_sets


def value_dataset(dataset, method: str, key: jax.Array, *, score: str | None = None,
                  num_clusters: int | None = None, features: str | None = None, k_rule: str | None = None,
                  permutations: int = 200,
                  episodes_per_set: int = 8, progress: bool = False, out_dir=None, **method_options) -> dict[str, Any]:
    """Value the individuals (or slots) of `dataset` with `method`; returns a JSON-safe report.

    `num_clusters`, `features` (the behaviour features, `clustering.FeatureConfig.kind`:
    "histogram" by default, "policy-mixture" or "policy-likelihood") and `k_rule` (how K
    is chosen when `num_clusters` is None: `clustering.ClusterConfig.k_rule`) belong to
    "ev-cluster"; its report records them under "clusters"."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    if features is not None and method != "ev-cluster":
        raise ValueError(f"features: the behaviour features belong to method 'ev-cluster', not {method!r}")
    if k_rule is not None and method != "ev-cluster":
        raise ValueError(f"k_rule: the rule choosing the number of clusters belongs to method 'ev-cluster', "
                         f"not {method!r}")
    truth = _truth(dataset)
    if method == "ev":
        result = dataset_ev_from(dataset, score)
        extra = {}
    elif method == "ev-cluster":
        from teamsift.value.clustering import ClusterConfig, FeatureConfig, ev_cluster

        feature_config = FeatureConfig() if features is None else FeatureConfig(kind=features)
        cluster_config = ClusterConfig(features=feature_config, **({} if k_rule is None else {"k_rule": k_rule}))
        clustered = ev_cluster(dataset, num_clusters, key, score=score, config=cluster_config)
        result = clustered.as_ev_result()
        extra = {"clusters": {"features": feature_config.kind, "k_rule": cluster_config.k_rule,
                              "values": clustered.cluster_values.tolist(),
                              "stderr": clustered.cluster_stderr.tolist(),
                              "sizes": clustered.cluster_sizes.tolist(),
                              "labels": dict(zip(clustered.ids.tolist(), clustered.labels.tolist())),
                              "selection": clustered.selection}}
    elif method == "shapley":
        from teamsift.value.shapley import sampled_shapley

        names, score_sets = _shapley_simulator(dataset, key, episodes_per_set)
        dvf = score or "return"
        shapley = sampled_shapley(len(names), lambda masks: score_sets(masks, dvf), jax.random.fold_in(key, 1),
                                  permutations)
        result = dataclasses.replace(shapley, ids=np.asarray(names), score=dvf)
        extra = {"permutations": permutations}
    else:
        return _ardnem_report(dataset, key, truth, score=score, progress=progress, out_dir=out_dir,
                              **method_options)
    table = result.to_table()
    for row in table:
        row["true_level"] = truth.get(str(row["id"]))
    return {"dataset": str(dataset.path), "method": method, "score": score or "return",
            "individuals": len(result.ids), "table": table,
            "accuracy": accuracy_report(result.ids, np.asarray(result.values, np.float64), truth), **extra}


def _ardnem_report(dataset, key, truth, *, score: str | None, progress: bool = True, out_dir=None,
                   updates: int = ARDNEM_UPDATES, log_every: int = ARDNEM_LOG_EVERY, run=None, stage1_out=None,
                   **options) -> dict[str, Any]:
    """SIT Stage I–II as a valuation: train ARDNEM on the team reward (`updates` updates, one
    seed), then value every individual by the mean priority p̂ (mean decomposed return ĝ) of
    its trajectories.

    `options` are `ARDNEMConfig` fields (e.g. ensemble_size=1). `run` (an `engine.RunConfig`)
    replaces `updates` and `log_every` and may name a run directory (checkpoints, resume);
    `stage1_out` saves the Stage I result there, for `train --stage1` to reuse. The report
    adds the per-trajectory accuracy (every (episode, slot) against its `behaviour` label)
    and, with `out_dir`, writes the SIT Figure 3 analogue (decomposed reward per slot over
    training, DPER priority histograms per buffer).
    """
    from teamsift.data import dper
    from teamsift.engine import RunConfig, fit
    from teamsift.value import ardnem

    if score not in (None, "return"):
        raise ValueError(f"score: ARDNEM decomposes the per-step team reward, so it values by 'return' only, "
                         f"got {score!r} (use --method ev for episode scores)")
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(ardnem.ARDNEMConfig)})
    if unknown:
        raise ValueError(f"ardnem options: unknown ARDNEMConfig fields {unknown}")
    config = ardnem.ARDNEMConfig(**options)
    if run is None:
        run = RunConfig(updates=updates, log_every=max(1, min(log_every, updates)), progress=progress, label="ARDNEM")
    updates = run.updates
    result = ardnem.result(config, fit(ardnem.learner(config, dataset), dataset, key, run,
                                       record={"hyperparameters": dataclasses.asdict(config), "stage": "ardnem"}),
                           dataset)
    if stage1_out is not None:
        ardnem.save_result(result, stage1_out)
    priority = np.asarray(result.priority, np.float64)  # p̂ [E, A]
    ids = np.asarray(dataset.episodes["agent_ids"]).astype(str)  # [E, A]
    unique, codes = np.unique(ids.ravel(), return_inverse=True)
    counts = np.bincount(codes, minlength=len(unique))
    sums = np.bincount(codes, priority.ravel(), minlength=len(unique))
    squares = np.bincount(codes, priority.ravel() ** 2, minlength=len(unique))
    means = sums / counts
    variance = np.where(counts > 1, (squares - counts * means ** 2) / np.maximum(counts - 1, 1), np.nan)
    stderr = np.where(counts > 1, np.sqrt(np.maximum(variance, 0.0) / counts), np.inf)
    values = EVResult(unique, means, stderr, counts, method="ardnem", score="return")
    table = values.to_table()
    for row in table:
        row["true_level"] = truth.get(str(row["id"]))
    report = {"dataset": str(dataset.path), "method": "ardnem", "score": "return", "individuals": len(unique),
              "table": table, "accuracy": accuracy_report(unique, means, truth),
              "slot_mean_priority": priority.mean(axis=0).tolist(),
              "final_loss": float(np.mean(result.logs["loss"][-max(1, len(result.logs["loss"]) // 10):])),
              "config": dataclasses.asdict(config), "updates": updates}
    if stage1_out is not None:
        report["stage1"] = str(stage1_out)
    if run.run_dir is not None:
        report["run_dir"] = str(run.run_dir)
    if "behaviour" in dataset.episodes:
        labels = np.asarray(dataset.episodes["behaviour"]).astype(str)
        report["trajectory_accuracy"] = accuracy_report(np.arange(labels.size), priority.ravel(),
                                                        {str(i): level for i, level in enumerate(labels.ravel())})
    if out_dir is not None:
        from teamsift.value.plots import plot_figure3

        state = dper.build_dper(result, dataset)
        report["extra_plots"] = [str(p) for p in plot_figure3(result, state, out_dir, dataset)]
        report["dper_effective_sizes"] = dper.effective_sizes(state)
    return report


def values_figure(report: dict[str, Any]):
    """The figure `plot_values` saves (a matplotlib Figure, Agg canvas), or None without rows."""
    from pathlib import Path

    from matplotlib.patches import Patch

    from teamsift import plotting
    from teamsift.plotting import CI95

    rows = report.get("table", [])
    if not rows:
        return None
    values = np.array([np.nan if r["value"] is None else r["value"] for r in rows], np.float64)
    errors = np.array([np.nan if r["stderr"] is None or not np.isfinite(r["stderr"]) else 1.96 * r["stderr"]
                       for r in rows], np.float64)
    levels = [r.get("true_level") or plotting.UNKNOWN for r in rows]
    has_truth = set(levels) != {plotting.UNKNOWN}
    palette = plotting.level_palette(levels) if has_truth else {plotting.UNKNOWN: plotting.NEUTRAL}
    x = np.arange(len(rows))
    labelled = len(rows) <= plotting.MAX_ID_LABELS
    fig = plotting.new_figure(max(7.0, 0.28 * len(rows) + 3.5) if labelled else 11.0, 4.8 if labelled else 4.2)
    with plotting.style():
        ax = fig.add_subplot()
        finite = np.isfinite(values)
        colours = [palette[levels[i]] for i in np.flatnonzero(finite)]
        if len(rows) <= MAX_BARS:
            ax.bar(x[finite], values[finite], color=colours, width=0.8)
            bars = plotting.error_bars(ax, x[finite], values[finite], errors[finite], kind=CI95)
            if bars is not None and not labelled:  # thin bars, no caps: many individuals side by side
                for line in bars.lines[2]:
                    line.set_linewidth(0.6)
            for i in np.flatnonzero(~finite):  # undefined values: say so where the bar would be
                ax.text(x[i], 0.0, "n/a", rotation=90, ha="center", va="bottom", fontsize=8, color="dimgray")
        else:  # a large population (e.g. an out-of-core table): one point each and a band, drawn in seconds
            band = finite & np.isfinite(errors)
            bars = ax.fill_between(x, values - errors, values + errors, where=band, color="0.6", alpha=0.5,
                                   linewidth=0) if band.any() else None
            ax.scatter(x[finite], values[finite], c=colours, s=3, linewidths=0)
        ax.axhline(0.0, color="black", linewidth=0.8)
        plotting.id_axis(ax, [r["id"] for r in rows], what="individual", order="best first")
        ax.set_xlim(-0.7, len(rows) - 0.3)
        ax.set_ylabel(f"{report['method']} value (units of {report['score']})")
        ax.set_title(f"{report['method']} value of each individual, {Path(report['dataset']).name} "
                     f"(score: {report['score']})")
        counts = {level: levels.count(level) for level in palette}
        if has_truth:
            handles = plotting.level_handles(levels, counts=counts)
        else:
            handles = [Patch(color=plotting.NEUTRAL, label="value (no true levels)")]
        if bars is not None:
            handles.append(plotting.interval_handle(CI95) if len(rows) <= MAX_BARS
                           else Patch(color="0.6", alpha=0.5, label=CI95))
        undefined = int((~finite).sum()) + int((finite & ~np.isfinite(errors)).sum())
        if undefined:
            handles.append(Patch(color="none", label=f"{undefined} without\ninterval (one sample\nor undefined)"))
        plotting.legend_outside(ax, handles, title="true level" if has_truth else None)
    return fig


def plot_values(report: dict[str, Any], out_dir) -> list:
    """Bar chart of every individual's value with its 95% interval (±1.96·stderr), best
    first (above `MAX_BARS` individuals: a point each and the interval as a band), one colour per true level (`teamsift.plotting`); ids under the bars when there
    are at most `plotting.MAX_ID_LABELS`; the legend beside the axes, clear of the bars.
    Writes values.png into `out_dir`; returns [its path] ([] without rows)."""
    from pathlib import Path

    from teamsift.plotting import save

    fig = values_figure(report)
    if fig is None:
        return []
    return [save(fig, Path(out_dir) / "values.png", dpi=120)]
