"""SIT Figure 3 analogue: what ARDNEM and DPER learned (matplotlib, Agg canvas, no pyplot).

* `plot_decomposition` — (a)/(d): the decomposed weighted reward r̂ per slot on ARDNEM's
  fixed probe set at every log point of its fit (`ARDNEMResult.logs["probe"]`), and per
  ground-truth level when the data has one;
* `plot_priorities` — (b)/(c)/(e)/(f): histograms of the rescaled priorities in each
  type-wise DPER buffer, coloured by the ground-truth level of each individual
  trajectory (or by slot when levels are unknown);
* `plot_figure3` — both, into one folder.

Every function returns the path(s) it saved.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

LEVEL_COLOURS = {"random": "tab:red", "medium": "tab:orange", "expert": "tab:green"}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


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


def plot_decomposition(result, path: str | os.PathLike, dataset=None) -> Path:
    """Mean decomposed weighted reward r̂ on the probe set vs. number of updates."""
    probe = result.logs["probe"]
    panels = 2 if probe.level_mean else 1
    fig = _figure(5.5 * panels, 3.8)
    ax = fig.add_subplot(1, panels, 1)
    for i, label in enumerate(slot_labels(dataset, probe.slot_mean.shape[1])):
        ax.plot(probe.updates, probe.slot_mean[:, i], marker=".", label=label)
    ax.set_xlabel("ARDNEM updates")
    ax.set_ylabel("mean weighted reward r̂ (probe)")
    ax.set_title("decomposed reward per slot")
    ax.legend(fontsize="small")
    if probe.level_mean:
        ax = fig.add_subplot(1, panels, 2)
        for level, values in probe.level_mean.items():
            ax.plot(probe.updates, values, marker=".", label=level, color=LEVEL_COLOURS.get(level))
        ax.set_xlabel("ARDNEM updates")
        ax.set_title("decomposed reward per ground-truth level")
        ax.legend(fontsize="small")
    config = result.config
    variant = config.mixer if config.mixer == "monotonic" else ("attention" if config.attention else "no attention")
    fig.suptitle(f"ARDNEM ({variant}, M={config.ensemble_size})")
    return _save(fig, path)


def _groups(buffer, dataset) -> dict[str, np.ndarray]:
    """Colour groups of a buffer's trajectories: ground-truth level, else slot."""
    episode, slot = np.asarray(buffer.episode), np.asarray(buffer.slot)
    if dataset is not None and "behaviour" in dataset.episodes:
        levels = dataset.episodes["behaviour"][episode, slot]
        order = [lv for lv in LEVEL_COLOURS if lv in set(levels)] + sorted(set(levels) - set(LEVEL_COLOURS))
        return {level: levels == level for level in order}
    return {f"slot {s}": slot == s for s in np.unique(slot)}


def plot_priorities(state, path: str | os.PathLike, dataset=None, *, bins: int = 40) -> Path:
    """One histogram per DPER buffer of the rescaled priorities, coloured by level (or slot)."""
    names = list(state.buffers)
    fig = _figure(4.8 * len(names), 3.6)
    for b, name in enumerate(names):
        buffer = state.buffers[name]
        scaled = np.asarray(buffer.scaled)
        edges = np.histogram_bin_edges(scaled, bins=bins)
        ax = fig.add_subplot(1, len(names), b + 1)
        for group, members in _groups(buffer, dataset).items():
            ax.hist(scaled[members], bins=edges, alpha=0.6, label=f"{group} ({int(members.sum())})",
                    color=LEVEL_COLOURS.get(group))
        ax.set_title(f"DPER buffer '{name}' ({len(scaled)} trajectories)")
        ax.set_xlabel("rescaled priority")
        ax.set_ylabel("individual trajectories")
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_figure3(result, state, out_dir: str | os.PathLike, dataset=None) -> list[Path]:
    """Both panels of the Figure 3 analogue into `out_dir`."""
    out_dir = Path(out_dir)
    return [plot_decomposition(result, out_dir / "ardnem_decomposition.png", dataset),
            plot_priorities(state, out_dir / "dper_priorities.png", dataset)]
