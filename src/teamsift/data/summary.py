"""What is in a dataset: numbers (`summarize`) and a picture (`plot_summary`)."""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def distribution(x) -> dict:
    """mean/std/min/max and `QUANTILES` of a 1-D sample (JSON-friendly floats)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return {"count": 0}
    return {
        "count": int(x.size),
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(x.min()),
        "max": float(x.max()),
        "quantiles": {f"{q:g}": float(v) for q, v in zip(QUANTILES, np.quantile(x, QUANTILES))},
    }


def behaviour_abbreviations(levels) -> dict[str, str]:
    """level -> short label: its first letter when that is unambiguous, else the name."""
    levels = sorted(set(levels))
    first = Counter(lv[:1] for lv in levels)
    return {lv: (lv[:1] if lv and first[lv[:1]] == 1 else lv) for lv in levels}


def compositions(dataset, ordered: bool = True) -> np.ndarray | None:
    """Composition label per episode (e.g. "r,r,m"), or None without `behaviour`.

    ordered=True keeps slot order; ordered=False sorts the labels (a multiset), which
    suits teams of interchangeable agents.
    """
    beh = dataset.episodes.get("behaviour")
    if beh is None:
        return None
    abbr = behaviour_abbreviations(beh.ravel().tolist())
    rows = [[abbr[x] for x in row] for row in beh.tolist()]
    if not ordered:
        rows = [sorted(r) for r in rows]
    return np.asarray([",".join(r) for r in rows], dtype=str)


def _group(labels: np.ndarray, dataset) -> dict:
    out = {}
    ret = dataset.returns
    for key in sorted(set(labels.tolist())):
        sel = labels == key
        entry = {"count": int(sel.sum()), "return_mean": float(ret[sel].mean()), "return_std": float(ret[sel].std())}
        if dataset.score_names:
            entry["score_means"] = {s: float(dataset.score(s)[sel].mean()) for s in dataset.score_names}
        out[key] = entry
    return out


def summarize(dataset) -> dict:
    """A JSON-friendly summary of a dataset.

    Keys: env_id, discrete, discount, episodes, steps, agents, agent_types,
    distinct_agent_ids, episode_length and return (distributions: count, mean, std, min,
    max, quantiles), scores ({name: distribution}); and, when the episode table has a
    `behaviour` column, behaviour = {levels: {level: slot count}, abbreviations,
    compositions: {"r,r,m": {count, return_mean, return_std, score_means}} in slot
    order, compositions_unordered: the same over sorted labels}.
    """
    spec = dataset.spec
    out = {
        "path": str(dataset.path),
        "env_id": spec.env_id,
        "discrete": bool(spec.discrete),
        "discount": dataset.discount,
        "episodes": dataset.num_episodes,
        "steps": dataset.num_steps,
        "agents": spec.num_agents,
        "agent_types": list(spec.agent_types),
        "distinct_agent_ids": int(len(np.unique(dataset.episodes["agent_ids"]))),
        "episode_length": distribution(dataset.lengths),
        "return": distribution(dataset.returns),
        "scores": {s: distribution(dataset.score(s)) for s in dataset.score_names},
    }
    beh = dataset.episodes.get("behaviour")
    if beh is not None:
        counts = Counter(beh.ravel().tolist())
        out["behaviour"] = {
            "levels": {k: int(counts[k]) for k in sorted(counts)},
            "abbreviations": behaviour_abbreviations(counts),
            "compositions": _group(compositions(dataset, True), dataset),
            "compositions_unordered": _group(compositions(dataset, False), dataset),
        }
    return out


def plot_summary(dataset, png_path: str | os.PathLike, *, bins: int = 30, max_compositions: int = 8) -> Path:
    """Save histograms: team return overall, per composition (the most frequent
    `max_compositions`, when `behaviour` exists) and one per named score."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = ["return"]
    comps = compositions(dataset, True)
    if comps is not None:
        panels.append("compositions")
    panels += [f"score:{s}" for s in dataset.score_names]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.5 * cols, 3.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    ret = dataset.returns
    edges = np.histogram_bin_edges(ret, bins=bins)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        if panel == "return":
            ax.hist(ret, bins=edges, color="tab:blue")
            ax.set_title(f"team return ({dataset.num_episodes} episodes)")
        elif panel == "compositions":
            for key, _count in Counter(comps.tolist()).most_common(max_compositions):
                ax.hist(ret[comps == key], bins=edges, histtype="step", linewidth=1.5, label=f"{key} ({_count})")
            ax.set_title("team return per composition")
            ax.legend(fontsize="small")
        else:
            name = panel.split(":", 1)[1]
            ax.hist(dataset.score(name), bins=bins, color="tab:green")
            ax.set_title(f"score {name}")
        ax.set_ylabel("episodes")
    fig.suptitle(f"{dataset.spec.env_id}: {dataset.path.name}")
    out = Path(png_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
