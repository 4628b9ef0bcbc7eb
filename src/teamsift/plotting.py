"""What every teamsift figure shares: one colour per quality level and behaviour label,
labelled error bars, ids on the axis when few enough, legends outside the data, readable
font sizes, and an atomic save.

    fig = new_figure(6, 4)
    with style():
        ax = fig.add_subplot()
        ax.bar(x, values, color=[level_colour(level) for level in levels])
        error_bars(ax, x, values, half_widths, kind=CI95)
        legend_outside(ax, level_handles(levels) + [interval_handle(CI95)], title="true level")
    save(fig, "values.png")

Colours: the quality levels random / medium / expert are red / orange / green and
`unknown` is grey in every figure; the behaviour labels of scripted agents (sustainable,
adaptive, greedy, erratic, and any other `scripted:<rule>`) have fixed colours of their
own; any other label gets a colour derived from its name, so it too keeps its colour
from figure to figure. Things that are not levels (slots, methods) use
`series_colours`, which never uses a quality level's colour or grey.
"""

from __future__ import annotations

import contextlib
import io
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

QUALITY_LEVELS = ("random", "medium", "expert")
LEVEL_COLOURS = {"random": "#d62728", "medium": "#ff7f0e", "expert": "#2ca02c"}
#: Scripted behaviours (commons kinds; "scripted" for any other `scripted:<rule>`).
BEHAVIOUR_COLOURS = {"sustainable": "#1f77b4", "adaptive": "#17becf", "greedy": "#9467bd", "erratic": "#e377c2",
                     "scripted": "#bcbd22"}
UNKNOWN = "unknown"
UNKNOWN_COLOUR = "#7f7f7f"
#: For data that has no level (a dataset's return histogram, values without ground truth).
NEUTRAL = "#34495e"
#: Colours for labels the palette does not know, chosen by a hash of the name.
SPARE_COLOURS = ("#8c564b", "#393b79", "#637939", "#843c39", "#7b4173", "#8c6d31", "#5254a3", "#6b6ecf")
#: Colours for series that are not levels (slots, methods): none is a quality level's or grey.
SERIES_COLOURS = ("#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79", "#843c39",
                  "#637939", "#7b4173")
#: At most this many items (individuals, compositions) get their id written on the axis.
MAX_ID_LABELS = 40
#: Error-bar labels, saying what the bar is.
CI95 = "95% CI (±1.96 stderr)"
STD = "±1 std"

STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
         "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 12, "axes.spines.top": False,
         "axes.spines.right": False}


def label_key(label) -> str:
    """The palette's name for a label: "scripted:greedy" → "greedy", a missing label → "unknown"."""
    text = "" if label is None else str(label).strip()
    if not text:
        return UNKNOWN
    if text.startswith("scripted:"):
        rule = text.split(":", 1)[1]
        return rule if rule in BEHAVIOUR_COLOURS else "scripted"
    return text


def short_label(label) -> str:
    """A label as figures write it: without the "scripted:" prefix."""
    text = "" if label is None else str(label)
    return text.split(":", 1)[1] if text.startswith("scripted:") else (text or UNKNOWN)


def _hashed(key: str) -> int:
    return zlib.crc32(key.encode("utf-8")) % len(SPARE_COLOURS)


def level_colour(label) -> str:
    """The colour of one quality level or behaviour label, the same in every figure."""
    key = label_key(label)
    if key in LEVEL_COLOURS:
        return LEVEL_COLOURS[key]
    if key in BEHAVIOUR_COLOURS:
        return BEHAVIOUR_COLOURS[key]
    if key == UNKNOWN:
        return UNKNOWN_COLOUR
    return SPARE_COLOURS[_hashed(key)]


def level_order(labels: Iterable) -> list:
    """Distinct labels in reading order: random, medium, expert; then the scripted
    behaviours; then the rest alphabetically; unknown last."""
    labels = list(dict.fromkeys(labels))
    known = list(QUALITY_LEVELS) + list(BEHAVIOUR_COLOURS)

    def rank(label):
        key = label_key(label)
        if key == UNKNOWN:
            return (2, 0, str(label))
        return (0, known.index(key), str(label)) if key in known else (1, 0, str(label))

    return sorted(labels, key=rank)


def level_palette(labels: Iterable) -> dict:
    """label → colour for the distinct `labels`, in `level_order`. Known labels keep their
    fixed colours; two unknown labels whose names hash alike get different spare colours."""
    palette, taken = {}, set()
    for label in level_order(labels):
        key = label_key(label)
        colour = level_colour(label)
        if key not in LEVEL_COLOURS and key not in BEHAVIOUR_COLOURS and key != UNKNOWN:
            start = _hashed(key)
            for step in range(len(SPARE_COLOURS)):
                colour = SPARE_COLOURS[(start + step) % len(SPARE_COLOURS)]
                if colour not in taken:
                    break
        palette[label] = colour
        taken.add(colour)
    return palette


def series_colours(names: Sequence) -> dict:
    """name → colour for series that are not levels, in the given order (pass a fixed,
    complete list of names to keep each name's colour across figures)."""
    return {name: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, name in enumerate(dict.fromkeys(names))}


@contextlib.contextmanager
def style():
    """Font sizes and spines of every teamsift figure (draw and save inside it)."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width: float, height: float):
    """A matplotlib Figure on an Agg canvas (no pyplot, no display), constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with style():
        fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def legend_outside(ax, handles=None, *, title: str | None = None):
    """The axes' legend beside it, on the right, clear of the data."""
    kwargs = {} if handles is None else {"handles": handles}
    with style():
        return ax.legend(**kwargs, title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                         frameon=False)


def figure_legend(fig, handles, *, title: str | None = None, below: bool = False):
    """One legend for the whole figure, outside every panel: to the right, centred (clear
    of the suptitle), or `below` them in one row."""
    with style():
        if below:
            return fig.legend(handles=handles, title=title, loc="outside lower center", ncols=len(handles),
                              frameon=False)
        return fig.legend(handles=handles, title=title, loc="outside right center", frameon=False)


def level_handles(labels: Iterable, *, counts: dict | None = None) -> list:
    """Legend patches, one per distinct label in `level_order`, with `counts` when given."""
    from matplotlib.patches import Patch

    palette = level_palette(labels)
    return [Patch(color=colour, label=short_label(label) + (f" ({counts[label]})" if counts else ""))
            for label, colour in palette.items()]


def interval_handle(kind: str = CI95):
    """A legend entry for error bars that says what they are (`CI95`, `STD`)."""
    from matplotlib.lines import Line2D

    return Line2D([], [], color="black", marker="|", linestyle="none", markersize=10, markeredgewidth=1.2,
                  label=kind)


def error_bars(ax, x, y, err, *, kind: str = CI95, horizontal: bool = False, color: str = "black"):
    """Error bars ±`err` around (x, y), labelled `kind`; points whose `err` is not finite
    get none. Returns the ErrorbarContainer, or None when no point has one."""
    x, y, err = (np.asarray(a, np.float64) for a in (x, y, err))
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(err)
    if not keep.any():
        return None
    bars = {"xerr": err[keep]} if horizontal else {"yerr": err[keep]}
    return ax.errorbar(x[keep], y[keep], **bars, fmt="none", ecolor=color, elinewidth=1.0, capsize=2.5, label=kind)


def mean_ci95(x) -> tuple[float, float]:
    """(mean, half-width of its 95% interval, 1.96 · std / √n); the half-width is NaN below two samples."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else float("nan")
    return float(x.mean()), float(half)


def id_axis(ax, ids: Sequence, *, axis: str = "x", what: str = "individual", order: str = "") -> bool:
    """Write every id on the axis (item i at position i) when there are at most
    `MAX_ID_LABELS`; else number the positions from 1 (ranks, when `order` says how they
    are sorted) and say how many there are. Returns whether the ids were written."""
    written = len(ids) <= MAX_ID_LABELS
    suffix = f" ({order})" if order else ""
    target = ax.xaxis if axis == "x" else ax.yaxis
    if written:
        target.set_ticks(np.arange(len(ids)), [str(i) for i in ids], rotation=90 if axis == "x" else 0)
        label = what + suffix
    else:
        step = next(n for n in (5, 10, 20, 25, 50, *(int(m * 10 ** e) for e in range(2, 12) for m in (1, 2, 2.5, 5)))
                    if len(ids) / n <= 10)
        ranks = [1] + list(range(step, len(ids) + 1, step))  # 1, 5, 10, …: position = rank − 1
        target.set_ticks([r - 1 for r in ranks], [str(r) for r in ranks])
        label = f"{'rank' if order else 'number'} of {len(ids)} {what}s{suffix}; ids not written (over {MAX_ID_LABELS})"
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)(label)
    return written


def save(fig, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Write the figure as PNG atomically (a reader never sees half a file)."""
    from teamsift.fileio import atomic_write_bytes

    buffer = io.BytesIO()
    with style():
        fig.savefig(buffer, format="png", dpi=dpi)
    return atomic_write_bytes(path, buffer.getvalue())
