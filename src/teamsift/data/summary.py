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
    """level -> short label: the first letter of its name as figures write it (without
    "scripted:") when that is unambiguous, else that name."""
    from teamsift.plotting import short_label

    levels = sorted(set(levels))
    first = Counter(short_label(lv)[:1] for lv in levels)
    return {lv: (short_label(lv)[:1] if first[short_label(lv)[:1]] == 1 else short_label(lv)) for lv in levels}


def compositions(dataset, ordered: bool = True) -> np.ndarray | None:
    """Composition label per episode (e.g. "r,r,m"), or None without `behaviour`.

    ordered=True keeps slot order; ordered=False sorts the labels (a multiset), which
    suits teams of interchangeable agents.
    """
    beh = dataset.episodes.get("behaviour")
    return None if beh is None else _short_compositions(beh, ordered)[0]


def _short_compositions(behaviour, ordered: bool) -> tuple[np.ndarray, dict[str, str]]:
    """Composition label per episode from the figures' short labels ("s,a,g"), and the
    abbreviation of each level; `behaviour` is an [E, A] string array or `Labels`."""
    labels, which, code = _composition_groups(behaviour, ordered)
    return labels[which], code


def _composition_groups(behaviour, ordered: bool) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """(distinct composition labels [C], each episode's index into them [E], the abbreviation
    of each level). Each label is built once per distinct composition and the episodes are
    grouped by one integer per team, so a table of millions of episodes makes no string per
    entry."""
    from teamsift.data.format import Labels

    levels, codes = Labels.of(behaviour)
    code = behaviour_abbreviations(levels.tolist())
    short = np.asarray([code[level] for level in levels.tolist()], dtype=str)
    if not ordered:  # each row's abbreviations in sorted order
        order = np.argsort(short, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        codes, short = np.sort(rank[codes], axis=1), short[order]
    base = max(len(levels), 1)
    if base ** codes.shape[1] < 2**62:  # one integer per team: its codes as digits in base L
        team = codes.astype(np.int64) @ (base ** np.arange(codes.shape[1] - 1, -1, -1, dtype=np.int64))
        distinct_teams, which = np.unique(team, return_inverse=True)
        distinct = (distinct_teams[:, None] // base ** np.arange(codes.shape[1] - 1, -1, -1)) % base
    else:
        distinct, which = np.unique(codes, axis=0, return_inverse=True)
    labels = np.asarray([",".join(short[row].tolist()) for row in distinct], dtype=str)
    # Two levels whose figure labels coincide give one label: group by the label.
    keys, merged = np.unique(labels, return_inverse=True)
    return keys, merged.reshape(-1)[which.reshape(-1)], code


def _group(keys: np.ndarray, which: np.ndarray, returns: np.ndarray, scores: dict[str, np.ndarray]) -> dict:
    out = {}
    for index, key in enumerate(keys.tolist()):
        sel = which == index
        entry = {"count": int(sel.sum()), "return_mean": float(returns[sel].mean()),
                 "return_std": float(returns[sel].std())}
        if scores:
            entry["score_means"] = {s: float(v[sel].mean()) for s, v in scores.items()}
        out[key] = entry
    return out


def summarize(dataset) -> dict:
    """A JSON-friendly summary of a dataset: a loaded `Dataset`, or the path of one (then
    only meta.json and the episode table are read, with the per-slot strings as `Labels`,
    so a dataset of millions of episodes is summarised in a few bytes per episode).

    Keys: env_id, discrete, discount, episodes, steps, agents, agent_types,
    distinct_agent_ids, episode_length and return (distributions: count, mean, std, min,
    max, quantiles), scores ({name: distribution}); and, when the episode table has a
    `behaviour` column, behaviour = {levels: {level: slot count}, abbreviations,
    compositions: {"r,r,m": {count, return_mean, return_std, score_means}} in slot
    order, compositions_unordered: the same over sorted labels}.
    """
    from teamsift.data.format import Labels, read_episode_table

    if isinstance(dataset, (str, os.PathLike)):
        path = Path(dataset)
        meta, spec, episodes = read_episode_table(path)
    else:
        path, meta, spec, episodes = dataset.path, dataset.meta, dataset.spec, dataset.episodes
    score_names = list(meta["scores"])
    returns = np.asarray(episodes["return"], np.float64)
    scores = {s: np.asarray(episodes["score_" + s], np.float64) for s in score_names}
    out = {
        "path": str(path),
        "env_id": spec.env_id,
        "discrete": bool(spec.discrete),
        "discount": float(meta["discount"]),
        "episodes": int(meta["num_episodes"]),
        "steps": int(meta["num_steps"]),
        "agents": spec.num_agents,
        "agent_types": list(spec.agent_types),
        "distinct_agent_ids": _distinct(episodes["agent_ids"]),
        "episode_length": distribution(episodes["length"]),
        "return": distribution(returns),
        "scores": {s: distribution(v) for s, v in scores.items()},
    }
    beh = episodes.get("behaviour")
    if beh is not None:
        beh = Labels.of(beh)  # once: the sorted names and codes every count and grouping below uses
        levels, codes = beh
        counts = dict(zip(levels.tolist(), np.bincount(codes.reshape(-1), minlength=len(levels)).tolist()))
        out["behaviour"] = {
            "levels": {k: int(counts[k]) for k in sorted(counts)},
            "abbreviations": behaviour_abbreviations(counts),
            "compositions": _group(*_composition_groups(beh, True)[:2], returns, scores),
            "compositions_unordered": _group(*_composition_groups(beh, False)[:2], returns, scores),
        }
    return out


def _distinct(values) -> int:
    """How many distinct strings an [E, A] string array or `Labels` holds."""
    from teamsift.data.format import Labels

    if isinstance(values, Labels):
        return int(np.count_nonzero(np.bincount(np.asarray(values.codes).reshape(-1), minlength=len(values.names))))
    return int(len(np.unique(values)))


def summary_figure(dataset, *, bins: int = 30, max_compositions: int = 12):
    """The figure `plot_summary` saves (a matplotlib Figure, Agg canvas)."""
    from teamsift import plotting
    from teamsift.plotting import level_order, short_label

    behaviour = dataset.episodes.get("behaviour")
    panels, every_team = ["return"], ""
    if behaviour is not None:
        counts = np.stack([(behaviour == level).sum(axis=1) for level in np.unique(behaviour)])
        if np.any(counts != counts[:, :1]):  # the number of some level varies between teams
            panels.append("levels")
        ordered_labels, code = _short_compositions(behaviour, ordered=True)
        if len(set(ordered_labels.tolist())) > 1:
            panels.append("compositions")
        else:
            levels = ", ".join(f"{code[lv]}: {short_label(lv)}" for lv in level_order(behaviour[0].tolist()))
            every_team = f"; every team {ordered_labels[0]} ({levels})"
    panels += [f"score:{s}" for s in dataset.score_names]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = plotting.new_figure(5.0 * cols + (2.0 if "levels" in panels else 0.0), 3.8 * rows)
    ret = np.asarray(dataset.returns, np.float64)
    with plotting.style():
        for i, panel in enumerate(panels):
            ax = fig.add_subplot(rows, cols, i + 1)
            if panel == "return":
                ax.hist(ret, bins=np.histogram_bin_edges(ret, bins=bins), color=plotting.NEUTRAL)
                ax.set_title("team return per episode")
                ax.set_xlabel("team return (sum of rewards)")
                ax.set_ylabel("episodes")
            elif panel == "levels":
                handles = _levels_panel(ax, behaviour, ret)
                plotting.figure_legend(fig, handles + [plotting.interval_handle(plotting.CI95)], title="level")
            elif panel == "compositions":
                _compositions_panel(ax, behaviour, ret, max_compositions)
            else:
                name = panel.split(":", 1)[1]
                score = np.asarray(dataset.score(name), np.float64)
                ax.hist(score, bins=np.histogram_bin_edges(score, bins=bins), color=plotting.NEUTRAL)
                ax.set_title(f"score '{name}' per episode")
                ax.set_xlabel(name)
                ax.set_ylabel("episodes")
        fig.suptitle(f"{dataset.spec.env_id} dataset '{dataset.path.name}': {dataset.num_episodes} episodes, "
                     f"{dataset.spec.num_agents} agents{every_team}")
    return fig


def _levels_panel(ax, behaviour: np.ndarray, ret: np.ndarray) -> list:
    """Mean team return (95% CI) against how many agents of each level the team had;
    returns the legend handles of the levels."""
    from matplotlib.lines import Line2D

    from teamsift.plotting import CI95, error_bars, level_palette, mean_ci95, short_label

    _, code = _short_compositions(behaviour, ordered=False)
    palette = level_palette(behaviour.ravel().tolist())
    handles = []
    for level, colour in palette.items():
        counts = (behaviour == level).sum(axis=1)
        present = np.unique(counts)
        stats = np.array([mean_ci95(ret[counts == n]) for n in present])
        ax.plot(present, stats[:, 0], marker="o", color=colour)
        error_bars(ax, present, stats[:, 0], stats[:, 1], kind=CI95, color=colour)
        handles.append(Line2D([], [], color=colour, marker="o",
                              label=f"{short_label(level)} ({code[level]})"))
    ax.set_xticks(np.arange(behaviour.shape[1] + 1))
    ax.set_xlabel(f"agents of the level in the team (of {behaviour.shape[1]})")
    ax.set_ylabel("mean team return")
    ax.set_title("team return by how many of each level")
    return handles


def _compositions_panel(ax, behaviour: np.ndarray, ret: np.ndarray, max_compositions: int) -> None:
    """Mean team return (95% CI) of the most frequent compositions, best on top."""
    from teamsift import plotting
    from teamsift.plotting import CI95, error_bars, id_axis, mean_ci95

    ordered = len({tuple(r) for r in behaviour.tolist()}) <= max_compositions
    labels, _ = _short_compositions(behaviour, ordered)
    frequent = Counter(labels.tolist()).most_common(max_compositions)
    stats = {key: (*mean_ci95(ret[labels == key]), count) for key, count in frequent}
    keys = sorted(stats, key=lambda k: stats[k][0])  # best last: on top
    y = np.arange(len(keys))
    means = np.array([stats[k][0] for k in keys])
    ax.barh(y, means, color=plotting.NEUTRAL, height=0.7)
    error_bars(ax, means, y, [stats[k][1] for k in keys], kind=CI95, horizontal=True)
    id_axis(ax, [f"{k} ({stats[k][2]})" for k in keys], axis="y",
            what="composition (episodes)" if ordered else "composition, slot order ignored (episodes)")
    ax.set_xlabel("mean team return")
    shown = "" if len(keys) == len(set(labels.tolist())) else f", the {len(keys)} most frequent"
    ax.set_title(f"team return per composition{shown}")


def plot_summary(dataset, png_path: str | os.PathLike, *, bins: int = 30, max_compositions: int = 12) -> Path:
    """Save a picture of the dataset: the team return per episode; with `behaviour`, the
    mean team return by how many agents of each level a team had and per composition (the
    `max_compositions` most frequent; slot order ignored when there are more), with 95%
    intervals; and one histogram per named score. Colours: `teamsift.plotting`."""
    from teamsift.plotting import save

    return save(summary_figure(dataset, bins=bins, max_compositions=max_compositions), png_path, dpi=100)
