"""How valuation accuracy grows with the data: Exchange Values (true ids) and EV-Clustering
(one-time ids; policy-mixture features with the one-se K rule, and policy-likelihood
features with the lowest-error K rule) on pool populations whose individuals each play
more and more episodes.

The population datasets are those of `run_valuation.py` (30 checkpoints drawn from the
random / medium / expert pools, 10 each, played in groups), each individual in A episodes
for A in --appearances. Each draw is a fresh population and fresh data: draw d uses root
key 2 + d (root key 0 gives the rows of valuation-cpu.md, root key 1 the draws on which
the policy-mixture settings were chosen, so none of these draws chose a setting). Accuracy
as in `run_valuation.py`: Spearman of value vs level and AUC of expert vs random, per
individual.

    python benchmarks/run_valuation_appearances.py [--envs PP_3p1p,CN_3ls3l,smax_3m]
        [--appearances 40,80,160,320] [--draws 3] [--methods all]

Writes benchmarks/results/valuation-appearances-<device>.{json,md,png}, a row at a time:
a rerun keeps the rows it has (per env, size, draw and method) and measures the rest.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from run_valuation import POPULATION_ENVS, measure, measure_clusters, population_datasets
from teamsift.fileio import atomic_write_text

METHODS = ("ev (true ids)", "ev-cluster (policy-mixture)", "ev-cluster (policy-likelihood, lowest K)")
#: EV-Clustering settings (features, K rule) of each clustering method
CLUSTER_SETTINGS = {METHODS[1]: ("policy-mixture", "one-se"), METHODS[2]: ("policy-likelihood", "lowest")}
FIRST_DRAW_KEY = 2  # root keys 0 and 1 are taken: reported rows, and the draws settings were chosen on


def measure_cell(env_id: str, env_index: int, appearances: int, draw: int, workdir: Path,
                 methods: list[str]) -> list[dict]:
    key = jax.random.key(FIRST_DRAW_KEY + draw)
    paths = population_datasets(env_id, jax.random.fold_in(key, env_index), workdir, appearances)
    method_key = jax.random.fold_in(key, 100 + env_index)
    rows = []
    for method in methods:
        if method in CLUSTER_SETTINGS:
            name, (kind, k_rule) = f"{env_id} population (anonymised)", CLUSTER_SETTINGS[method]
            row = measure_clusters(name, paths[name], kind, method_key, k_rule=k_rule)
        else:
            name = f"{env_id} population"
            row = measure(name, paths[name], "ev", method_key)
        rows.append({"env": env_id, "appearances": appearances, "draw": draw, **row, "method": method})
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and range over draws per (env, method, appearances)."""
    cells = {}
    for r in rows:
        cells.setdefault((r["env"], r["method"], r["appearances"]), []).append(r)
    out = []
    for (env_id, method, appearances), group in sorted(cells.items()):
        auc = np.asarray([r["auc"] for r in group], float)
        rho = np.asarray([np.nan if r["spearman"] is None else r["spearman"] for r in group], float)
        rho = rho[np.isfinite(rho)] if np.isfinite(rho).any() else np.full(1, np.nan)  # nan: one cluster each
        out.append({"env": env_id, "method": method, "appearances": appearances, "draws": len(group),
                    "episodes": group[0]["episodes"], "auc_mean": float(auc.mean()), "auc_min": float(auc.min()),
                    "auc_max": float(auc.max()), "spearman_mean": float(rho.mean()),
                    "spearman_min": float(rho.min()), "spearman_max": float(rho.max()),
                    "clusters": [r.get("clusters") for r in group] if "cluster" in method else None})
    return out


def render(report: dict) -> str:
    lines = ["# Valuation accuracy as each individual plays more episodes", "",
             f"Command: `{report['command']}`", f"Machine: {report['machine']}", "",
             "30 individuals (10 per level) from the pools; A = episodes per individual. EV: Exchange Values with "
             "the true ids. EV-Clustering: one-time ids, K chosen by held-out error, either with policy-mixture "
             "features and the smallest K within a standard error of the lowest error (one-se), or with "
             "policy-likelihood features and the K of the lowest error (settings chosen on tuning draws, root key 1: "
             "`benchmarks/tune_ev_features.py`). "
             f"Mean [min, max] over draws (root keys {FIRST_DRAW_KEY}, {FIRST_DRAW_KEY + 1}, …: none was used to "
             "choose a setting).", "",
             "| env | method | A | episodes | draws | AUC expert vs random | Spearman vs level | K |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summarise(report["rows"]):
        k = "—" if not s["clusters"] else ", ".join(str(c) for c in s["clusters"])
        lines.append(f"| {s['env']} | {s['method']} | {s['appearances']} | {s['episodes']:,} | {s['draws']} | "
                     f"{s['auc_mean']:.2f} [{s['auc_min']:.2f}, {s['auc_max']:.2f}] | "
                     f"{_range(s, 'spearman')} | {k} |")
    return "\n".join(lines) + "\n"


def _range(cell: dict, metric: str) -> str:
    """mean [min, max], or — where every draw gave one cluster (every value equal)."""
    if np.isnan(cell[f"{metric}_mean"]):
        return "—"
    return f"{cell[f'{metric}_mean']:.2f} [{cell[f'{metric}_min']:.2f}, {cell[f'{metric}_max']:.2f}]"


def plot(report: dict, path: Path) -> None:
    from matplotlib.lines import Line2D

    from teamsift import plotting

    summary = summarise(report["rows"])
    envs = sorted({s["env"] for s in summary})
    colours = plotting.series_colours(list(METHODS))
    fig = plotting.new_figure(4.2 * len(envs), 6.4)
    with plotting.style():
        for column, env_id in enumerate(envs):
            for row, (metric, title) in enumerate((("auc", "AUC expert vs random"), ("spearman", "Spearman vs level"))):
                ax = fig.add_subplot(2, len(envs), row * len(envs) + column + 1)
                for method in METHODS:
                    cells = [s for s in summary if s["env"] == env_id and s["method"] == method]
                    if not cells:
                        continue
                    x = [s["appearances"] for s in cells]
                    ax.plot(x, [s[f"{metric}_mean"] for s in cells], marker="o", color=colours[method],
                            label=method)
                    ax.fill_between(x, [s[f"{metric}_min"] for s in cells], [s[f"{metric}_max"] for s in cells],
                                    color=colours[method], alpha=0.15, linewidth=0)
                if metric == "auc":
                    ax.axhline(0.9, color="grey", linestyle=":", linewidth=1)
                    ax.set_title(env_id)
                else:
                    ax.axhline(0.6, color="grey", linestyle=":", linewidth=1)
                ax.set_xscale("log", base=2)
                ticks = sorted({s["appearances"] for s in summary})
                ax.set_xticks(ticks, [str(t) for t in ticks])
                ax.minorticks_off()
                ax.set_xlabel("episodes per individual")
                ax.set_ylabel(title)
        handles = [Line2D([], [], color=colours[m], marker="o", label=m) for m in METHODS]
        plotting.figure_legend(fig, handles, below=True)
        fig.suptitle("Valuation accuracy vs episodes per individual\n(band: min–max over draws; dotted: targets)",
                     fontsize=10)
    plotting.save(fig, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", default="PP_3p1p,CN_3ls3l,smax_3m")
    parser.add_argument("--appearances", default="40,80,160,320")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--methods", default="all", help=f"'all' or ';'-separated, of: {'; '.join(METHODS)}")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    envs = args.envs.split(",")
    methods = list(METHODS) if args.methods == "all" else [m.strip() for m in args.methods.split(";")]
    if any(m not in METHODS for m in methods):
        parser.error(f"--methods: {args.methods!r}; expected 'all' or some of {'; '.join(METHODS)} (';'-separated)")
    all_envs = POPULATION_ENVS  # a draw's env key is fold_in(key, its index here), as in run_valuation.py
    unknown = [e for e in envs if e not in all_envs]
    if unknown:
        parser.error(f"--envs: {unknown}; expected some of {', '.join(all_envs)}")
    device = jax.devices()[0].platform
    json_path = args.out / f"valuation-appearances-{device}.json"
    machine = f"{platform.processor() or platform.machine()}, JAX {jax.__version__} on {device}"
    command = shlex.join(["python", "benchmarks/run_valuation_appearances.py", *(argv or sys.argv[1:])])
    report = json.loads(json_path.read_text()) if json_path.is_file() else {"rows": [], "commands": []}
    if command not in report["commands"]:
        report["commands"].append(command)
    report.update(command=report["commands"][0] if len(report["commands"]) == 1 else "; ".join(report["commands"]),
                  machine=machine)
    done = {(r["env"], r["appearances"], r["draw"], r["method"]) for r in report["rows"]}
    args.out.mkdir(parents=True, exist_ok=True)
    for appearances in map(int, args.appearances.split(",")):
        for env_id in envs:
            for draw in range(args.draws):
                missing = [m for m in methods if (env_id, appearances, draw, m) not in done]
                if not missing:
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    rows = measure_cell(env_id, all_envs.index(env_id), appearances, draw, Path(tmp), missing)
                report["rows"] += rows
                for r in rows:
                    print(json.dumps(r), file=sys.stderr, flush=True)
                atomic_write_text(json_path, json.dumps(report, indent=1) + "\n")
                atomic_write_text(json_path.with_suffix(".md"), render(report))
    plot(report, json_path.with_suffix(".png"))
    print(render(report))


if __name__ == "__main__":
    main()
