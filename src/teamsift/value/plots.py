"""SIT Figure 3 analogue: what ARDNEM and DPER learned (matplotlib, Agg canvas, no pyplot).

* `plot_decomposition` — (a)/(d): the decomposed weighted reward r̂ per slot on ARDNEM's
  fixed probe set at every log point of its fit (`ARDNEMResult.logs["probe"]`), and per
  ground-truth level when the data has one;
* `plot_priorities` — (b)/(c)/(e)/(f): histograms of the rescaled priorities in each
  type-wise DPER buffer, coloured by the ground-truth level of each individual
  trajectory (or by slot when levels are unknown);
* `plot_figure3` — both, into one folder.

Every `plot_*` function returns the path(s) it saved; `decomposition_figure` and
`priorities_figure` return the Figure itself. Colours: `teamsift.plotting`.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from teamsift import plotting


def slot_labels(dataset, num_agents: int) -> list[str]:
    """'slot i (level)' when a slot always has one ground-truth level, else 'slot i'."""
    labels = []
    behaviour = None if dataset is None else dataset.episodes.get("behaviour")
    for i in range(num_agents):
        label = f"slot {i}"
        if dataset is not None:
            label = f"{dataset.spec.agents[i]} (slot {i})"
        if behaviour is not None:
            counts = Counter(behaviour[:, i].tolist())
            level, count = counts.most_common(1)[0]
            label += f" [{level}]" if count == len(behaviour) else f" [mostly {level}]"
        labels.append(label)
    return labels


def slot_colours(dataset, num_agents: int) -> list[str]:
    """A slot's level colour when every slot always holds one level and no two slots share
    it (as in SIT's `100%[r,m,e]`), else one series colour per slot."""
    behaviour = None if dataset is None else dataset.episodes.get("behaviour")
    if behaviour is not None:
        pure = [set(behaviour[:, i].tolist()) for i in range(num_agents)]
        if all(len(levels) == 1 for levels in pure) and len({next(iter(lv)) for lv in pure}) == num_agents:
            return [plotting.level_colour(next(iter(levels))) for levels in pure]
    colours = plotting.series_colours(range(num_agents))
    return [colours[i] for i in range(num_agents)]


def decomposition_figure(result, dataset=None):
    """The figure `plot_decomposition` saves (a matplotlib Figure, Agg canvas)."""
    probe = result.logs["probe"]
    panels = 2 if probe.level_mean else 1
    fig = plotting.new_figure(7.0 * panels, 4.0)
    num_agents = probe.slot_mean.shape[1]
    with plotting.style():
        ax = fig.add_subplot(1, panels, 1)
        for i, (label, colour) in enumerate(zip(slot_labels(dataset, num_agents), slot_colours(dataset, num_agents))):
            ax.plot(probe.updates, probe.slot_mean[:, i], marker=".", label=label, color=colour)
        ax.set_xlabel("ARDNEM updates")
        ax.set_ylabel("mean weighted reward r̂ per step (probe set)")
        ax.set_title("decomposed reward per slot")
        plotting.legend_outside(ax, title="slot")
        if probe.level_mean:
            ax = fig.add_subplot(1, panels, 2, sharey=ax)
            for level, colour in plotting.level_palette(probe.level_mean).items():
                ax.plot(probe.updates, probe.level_mean[level], marker=".", label=plotting.short_label(level),
                        color=colour)
            ax.set_xlabel("ARDNEM updates")
            ax.set_title("decomposed reward per ground-truth level")
            plotting.legend_outside(ax, title="level")
        config = result.config
        variant = config.mixer if config.mixer == "monotonic" else ("attention" if config.attention else "no attention")
        fig.suptitle(f"What ARDNEM ({variant}, M={config.ensemble_size}) credits each agent with, over training")
    return fig


def plot_decomposition(result, path: str | os.PathLike, dataset=None) -> Path:
    """Mean decomposed weighted reward r̂ on the probe set vs. number of updates, per slot
    and per ground-truth level (when the data has one)."""
    return plotting.save(decomposition_figure(result, dataset), path, dpi=100)


def _groups(buffer, dataset) -> dict[str, np.ndarray]:
    """Colour groups of a buffer's trajectories: ground-truth level, else slot."""
    episode, slot = np.asarray(buffer.episode), np.asarray(buffer.slot)
    if dataset is not None and "behaviour" in dataset.episodes:
        levels = np.asarray(dataset.episodes["behaviour"])[episode, slot]
        return {level: levels == level for level in plotting.level_order(levels.tolist())}
    return {f"slot {s}": slot == s for s in np.unique(slot)}


def priorities_figure(state, dataset=None, *, bins: int = 40):
    """The figure `plot_priorities` saves (a matplotlib Figure, Agg canvas)."""
    from matplotlib.lines import Line2D

    names = list(state.buffers)
    groups = {name: _groups(state.buffers[name], dataset) for name in names}
    by_level = dataset is not None and "behaviour" in dataset.episodes
    labels = list(dict.fromkeys(g for name in names for g in groups[name]))
    colours = plotting.level_palette(labels) if by_level else plotting.series_colours(labels)
    totals = {g: sum(int(groups[name][g].sum()) for name in names if g in groups[name]) for g in labels}
    fig = plotting.new_figure(5.0 * len(names) + 2.0, 3.8)
    with plotting.style():
        for b, name in enumerate(names):
            scaled = np.asarray(state.buffers[name].scaled)
            edges = np.histogram_bin_edges(scaled, bins=bins)
            ax = fig.add_subplot(1, len(names), b + 1)
            for group, members in groups[name].items():
                ax.hist(scaled[members], bins=edges, histtype="step", linewidth=1.8, color=colours[group])
            ax.set_title(f"DPER buffer '{name}' ({len(scaled)} trajectories)")
            ax.set_xlabel("rescaled priority")
            ax.set_ylabel("individual trajectories")
        handles = [Line2D([], [], color=colours[g], linewidth=1.8, label=f"{plotting.short_label(g)} ({totals[g]})")
                   for g in labels]
        plotting.figure_legend(fig, handles, title="true level" if by_level else "slot")
        fig.suptitle("Sampling priority of each individual trajectory, per type-wise DPER buffer")
    return fig


def plot_priorities(state, path: str | os.PathLike, dataset=None, *, bins: int = 40) -> Path:
    """One histogram per DPER buffer of the rescaled priorities, coloured by level (or slot)."""
    return plotting.save(priorities_figure(state, dataset, bins=bins), path, dpi=100)


def plot_figure3(result, state, out_dir: str | os.PathLike, dataset=None) -> list[Path]:
    """Both panels of the Figure 3 analogue into `out_dir`."""
    out_dir = Path(out_dir)
    return [plot_decomposition(result, out_dir / "ardnem_decomposition.png", dataset),
            plot_priorities(state, out_dir / "dper_priorities.png", dataset)]
