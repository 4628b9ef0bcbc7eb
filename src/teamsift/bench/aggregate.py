"""Aggregate performance of a benchmark table across its rows, with rliable (Agarwal et al.,
"Deep RL at the Edge of the Statistical Precipice", NeurIPS 2021): interquartile mean (IQM),
mean and optimality gap over every (seed, row) score, with 95% stratified-bootstrap
confidence intervals — the statistics the field's evaluation tools (marl-eval) report.

Returns are on different scales from row to row, so each row is normalised first (ours):
0 is the lowest and 1 the highest of the row's numbers (the dataset's own mean return —
Behavior, or the expert's for imitation — and every seed of every learner of the row), so a score says where a seed lands between the
worst and the best outcome the row saw; the optimality gap is the mean shortfall from 1.
Only rows where every aggregated learner has a cell with the same number of seeds count.
"""

from __future__ import annotations

import warnings

import numpy as np

METRICS = ("IQM", "mean", "optimality gap")
BOOTSTRAP_REPS = 2000


def normalised_scores(rows: dict, methods: tuple[str, ...]) -> tuple[dict[str, np.ndarray], list[str]]:
    """{method: scores [seeds, rows]} over the rows where every method has returns."""
    usable = []
    for label, row in rows.items():
        cells = [row["cells"].get(m, {}) for m in methods]
        if all("returns" in c for c in cells) and len({len(c["returns"]) for c in cells}) == 1:
            usable.append(label)
    scores = {m: [] for m in methods}
    for label in usable:
        row = rows[label]
        values = np.array([row["cells"][m]["returns"] for m in methods], np.float64)  # [methods, seeds]
        reference = row["behavior"] if "behavior" in row else row["expert_return"]  # the dataset's own return
        low = min(values.min(), reference)
        high = max(values.max(), reference)
        span = high - low if high > low else 1.0
        for m, seeds in zip(methods, values):
            scores[m].append((seeds - low) / span)
    return {m: np.stack(v, axis=1) for m, v in scores.items() if v}, usable


def aggregate(rows: dict, methods: tuple[str, ...], *, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> dict:
    """{method: {metric: [point, low, high]}} and the rows used (see the module docstring)."""
    from rliable import library, metrics

    methods = tuple(m for m in methods if any(m in row["cells"] for row in rows.values()))
    scores, usable = normalised_scores(rows, methods)
    if not scores:
        return {"rows": [], "methods": {}}

    def statistics(x):
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x), metrics.aggregate_optimality_gap(x)])

    # rliable 1.2's StratifiedBootstrap draws its resamples from NumPy's global generator
    # (`np.random.choice`) and ignores `random_state`, so the intervals are fixed by seeding that
    # generator here, and its state is given back afterwards.
    outer = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # arch 7 deprecates the RandomState rliable 1.2 hands it
            warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
            points, intervals = library.get_interval_estimates(scores, statistics, reps=reps,
                                                               random_state=np.random.RandomState(seed))
    finally:
        np.random.set_state(outer)
    out = {m: {name: [float(points[m][i]), float(intervals[m][0, i]), float(intervals[m][1, i])]
               for i, name in enumerate(METRICS)} for m in scores}
    return {"rows": usable, "methods": out, "seeds": int(next(iter(scores.values())).shape[0]), "reps": reps}


def render(title: str, summary: dict) -> list[str]:
    """A markdown table of `aggregate`'s result."""
    if not summary["methods"]:
        return []
    rows = len(summary["rows"])
    lines = [f"### {title}: aggregate over {rows} row{'' if rows == 1 else 's'} × {summary['seeds']} seeds (rliable)", "",
             "Row-normalised returns (0 = the row's lowest number, 1 = its highest, Behavior included); "
             f"95% stratified-bootstrap intervals ({summary['reps']} resamples). Optimality gap: lower is better.", "",
             "| method | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    best = {name: (min if name == "optimality gap" else max)(summary["methods"], key=lambda m: summary["methods"][m]
                                                               [name][0]) for name in METRICS}
    for method, values in summary["methods"].items():
        cells = []
        for name in METRICS:
            point, low, high = values[name]
            text = f"{point:.2f} [{low:.2f}, {high:.2f}]"
            cells.append(f"**{text}**" if best[name] == method else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + [""]
