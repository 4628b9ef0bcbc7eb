"""`teamsift bench imitation`: MILD²'s main table on our expert datasets.

For every environment of `EXPERT_SUITE` (SMAX 3m and 2s3z, MPE spread, MaBrax
halfcheetah_6x1) the expert dataset (≈100k transitions from the expert pool, cached
under `data_dir`) is imitated by

    adversarial  MILD², MILD²-GD (independent per-agent discriminator), MAGAIL
    offline      BC, and ICQ (discrete) or TD3+BC and OMAR (continuous)

with `num_seeds` seeds trained as ONE vmapped program per method, and every seed's final
policy evaluated in the environment. Cells are mean ± std over seeds of the evaluated
mean team return (SMAX: and win rate). Beside the table, the diagnostics the MILD² paper
plots (its Figures 3–5): the variance of the discriminator's rewards on generator data
over training, the discriminator loss, and the reward distribution at the end, one figure
per environment.

Budgets: `timesteps` environment steps per adversarial run (default: the MAPPO budget of
`ppo.DEFAULT_CONFIGS` for the environment) and `updates` per offline learner (default:
each paper's). The wall clock and env steps/s of every adversarial run are recorded.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from teamsift.algos import pipeline, registry
from teamsift.bench import aggregate
from teamsift.bench.report import merge_previous, named_key, other_machine, write_report
from teamsift.collect.datasets import expert_dataset
from teamsift.collect.pools import load_pools
from teamsift.collect.suites import EXPERT_SUITE, EXPERT_TRANSITIONS
from teamsift.data import load_dataset
from teamsift.engine import RunConfig
from teamsift.envs import make
from teamsift.evaluate import evaluate
from teamsift.progress import progress_bar

ADVERSARIAL = ("MILD²", "MILD²-GD", "MAGAIL")
DISCRETE_METHODS = ADVERSARIAL + ("BC", "ICQ")
CONTINUOUS_METHODS = ADVERSARIAL + ("BC", "TD3+BC", "OMAR")


@dataclasses.dataclass(frozen=True)
class ImitationBenchConfig:
    envs: tuple[str, ...] = tuple(EXPERT_SUITE)
    methods: tuple[str, ...] | None = None  # None: every method the action space allows
    transitions: int = EXPERT_TRANSITIONS
    num_seeds: int = 5
    timesteps: int | None = None  # env steps per adversarial run (None: the env's MAPPO budget)
    updates: int | None = None  # offline learners' updates (None: the papers')
    eval_episodes: int = 100
    data_dir: str = "datasets/bench-imitation"
    pools_dir: str | None = None
    seed: int = 0

    def __post_init__(self):
        for name in ("transitions", "num_seeds", "eval_episodes"):
            if not int(getattr(self, name)) >= 1:
                raise ValueError(f"ImitationBenchConfig.{name}: expected a positive integer, got {getattr(self, name)!r}")
        for name in ("timesteps", "updates"):
            value = getattr(self, name)
            if value is not None and not int(value) >= 1:
                raise ValueError(f"ImitationBenchConfig.{name}: expected a positive integer or None, got {value!r}")
        unknown = [e for e in self.envs if e not in EXPERT_SUITE]
        if unknown:
            raise ValueError(f"ImitationBenchConfig.envs: {unknown} have no expert dataset; expected some of "
                             f"{sorted(EXPERT_SUITE)}")
        if self.methods is not None:
            bad = [m for m in self.methods if m not in set(DISCRETE_METHODS) | set(CONTINUOUS_METHODS)]
            if bad:
                raise ValueError(f"ImitationBenchConfig.methods: unknown {bad}; expected some of "
                                 f"{sorted(set(DISCRETE_METHODS) | set(CONTINUOUS_METHODS))}")


def methods_for(bench: ImitationBenchConfig, discrete: bool) -> tuple[str, ...]:
    allowed = DISCRETE_METHODS if discrete else CONTINUOUS_METHODS
    return allowed if bench.methods is None else tuple(m for m in bench.methods if m in allowed)


# --- learners -------------------------------------------------------------------------------

OFFLINE = {"BC": "bc", "ICQ": "icq", "TD3+BC": "td3bc", "OMAR": "omar"}
IMITATION = {"MILD²": "mild2", "MILD²-GD": "mild2_gd", "MAGAIL": "magail"}


def cell_run(bench: ImitationBenchConfig, method: str, dataset, runs_dir: Path | None, updates: int,
             fresh: bool) -> RunConfig:
    """The schedule of one cell, in a run directory of its own (resumable) when `runs_dir`."""
    run_dir = None if runs_dir is None else str(Path(runs_dir) / Path(dataset.path).name / method.replace("²", "2"))
    return RunConfig(updates=updates, seeds=bench.num_seeds, log_every=max(1, min(500, updates // 50 or 1)),
                     checkpoint_every=max(1, updates // 10) if run_dir else 0, run_dir=run_dir,
                     resume=not fresh and run_dir is not None, overwrite=fresh and run_dir is not None, progress=False,
                     label=method)


def adversarial_run(method: str, bench: ImitationBenchConfig, dataset, env, key: jax.Array, runs_dir=None,
                    fresh: bool = False):
    """Train MILD², MILD²-GD or MAGAIL; returns the AdversarialResult."""
    config = pipeline.imitation_config(IMITATION[method], env.spec.env_id, timesteps=bench.timesteps)
    run = cell_run(bench, method, dataset, runs_dir, config.generator.num_updates, fresh)
    run = dataclasses.replace(run, log_every=max(1, config.generator.num_updates // 50))
    return pipeline.imitate(IMITATION[method], dataset, key, run, config=config, env=env)


def offline_run(method: str, bench: ImitationBenchConfig, dataset, key: jax.Array, runs_dir=None, fresh: bool = False):
    algorithm = OFFLINE[method]
    updates = bench.updates or registry.get(algorithm).updates
    result = pipeline.train(algorithm, dataset, key, cell_run(bench, method, dataset, runs_dir, updates, fresh))
    return result.policies()


def _score(result, name: str) -> float | None:
    summary = result.scores.get(name) if hasattr(result, "scores") else None
    return None if summary is None else float(summary.mean)


def run_cell(method: str, bench: ImitationBenchConfig, dataset, env, key: jax.Array, runs_dir: Path | None = None,
             fresh: bool = False) -> dict:
    train_key, eval_key = jax.random.split(key)
    started = time.perf_counter()
    cell: dict[str, Any] = {}
    if method in ADVERSARIAL:
        result = adversarial_run(method, bench, dataset, env, train_key, runs_dir, fresh)
        # stochastic, as the generators were trained (and as BC acts)
        policies = [result.policy(-1, seed=s if bench.num_seeds > 1 else None, deterministic=False)
                    for s in range(bench.num_seeds)]
        steps = int(np.asarray(result.checkpoint_steps)[-1])
        # with the training seconds of the processes a resumed run continues
        seconds = time.perf_counter() - started + (result.fit.earlier_seconds if result.fit is not None else 0.0)
        cell.update(env_steps=steps, env_steps_per_s=steps * bench.num_seeds / max(seconds, 1e-9),
                    diagnostics=diagnostics(result))
    else:
        policies = offline_run(method, bench, dataset, train_key, runs_dir, fresh)
        seconds = time.perf_counter() - started
    evals = [evaluate(env, p, jax.random.fold_in(eval_key, s), bench.eval_episodes) for s, p in enumerate(policies)]
    returns = [float(e.team_return.mean) for e in evals]
    cell.update(returns=returns, mean=float(np.mean(returns)), std=float(np.std(returns)), train_seconds=seconds)
    wins = [_score(e, "win") for e in evals]
    if all(w is not None for w in wins):
        cell.update(win_rates=wins, win_mean=float(np.mean(wins)), win_std=float(np.std(wins)))
    return cell


def diagnostics(result) -> dict:
    """Seed 0's curves (thinned to ≤ 200 points) and the final reward histogram; and, for
    every seed, the joint advantage variance Σ_k Var[A^k] of the generator (MILD²'s
    Theorem 1) averaged over the last tenth of the log rows ("advantage_var_end")."""
    logs = {k: np.asarray(v) for k, v in result.logs.items()}
    pick = (lambda x: x[0]) if result.num_seeds > 1 else (lambda x: x)
    out = {}
    for name in ("disc_loss", "generator_reward_var", "expert_reward_var", "generator_reward_mean",
                 "expert_reward_mean", "gen_advantage_var", "return", "env_steps"):
        if name in logs:
            series = pick(logs[name])
            stride = max(1, len(series) // 200)
            out[name] = [float(x) for x in series[::stride]]
    if "gen_advantage_var" in logs:
        by_seed = logs["gen_advantage_var"].reshape(result.num_seeds, -1)
        tail = max(1, by_seed.shape[1] // 10)
        out["advantage_var_end"] = [float(x) for x in by_seed[:, -tail:].mean(axis=1)]
    if "reward_histogram" in logs:
        out["final_reward_histogram"] = [float(x) for x in pick(logs["reward_histogram"])[-1]]
        out["histogram_edges"] = [float(x) for x in np.asarray(result.histogram_edges)]
    return out


# --- datasets -------------------------------------------------------------------------------

def ensure_dataset(bench: ImitationBenchConfig, env_id: str, key: jax.Array):
    path = Path(bench.data_dir) / f"{env_id}-expert-{bench.transitions}tr-seed{bench.seed}"
    if not (path / "meta.json").is_file():
        pools = load_pools(env_id, bench.pools_dir)
        env = make(env_id, **pools.env_kwargs)
        expert_dataset(env, pools, bench.transitions, key, path, overwrite=True, progress=False)
    return load_dataset(path)


# --- the run --------------------------------------------------------------------------------

BUDGET_FIELDS = ("transitions", "num_seeds", "timesteps", "updates", "eval_episodes", "seed")


def run(bench: ImitationBenchConfig, *, progress: bool = True, machine: str = "", command: str = "",
        out_dir: Path | None = None, stem: str = "imitation", rerun: bool = False) -> dict:
    """Every (env, method) cell; with out_dir the report (and its plots) is rewritten after
    every cell, so an interrupted run keeps what it finished: a rerun keeps the finished
    cells of an earlier result of the same budget (unless `rerun`, which trains them again
    from scratch) and resumes unfinished ones from their run directories."""
    report = {"machine": machine, "command": command, "config": dataclasses.asdict(bench), "rows": {}}
    if out_dir is not None:
        report = merge_previous(report, Path(out_dir) / f"{stem}.json", BUDGET_FIELDS, ("rows", "notes"))
    elsewhere = other_machine(report, machine)  # recorded in each cell made here
    root = jax.random.key(bench.seed)
    runs_dir = Path(bench.data_dir) / "runs" / stem if out_dir is not None else None
    plan = [(env_id, methods_for(bench, make(env_id).spec.discrete)) for env_id in bench.envs]
    with progress_bar(progress) as bar:
        task = bar.add_task("bench imitation", total=sum(len(m) for *_, m in plan))
        for env_id, methods in plan:
            env_key = named_key(root, env_id)
            dataset = ensure_dataset(bench, env_id, jax.random.fold_in(env_key, 0))
            env = make(env_id, **dataset.meta.get("env_kwargs", {}))
            row = report["rows"].setdefault(env_id, {"cells": {}})
            row.update(env=env_id, discrete=bool(env.spec.discrete), transitions=dataset.num_steps,
                       expert_return=float(np.mean(dataset.episodes["return"])))
            for method in methods:
                bar.update(task, description=f"{env_id}: {method}")
                done = row["cells"].get(method)
                if done is not None and "error" not in done and not rerun:  # finished: kept
                    bar.advance(task)
                    continue
                try:
                    row["cells"][method] = run_cell(method, bench, dataset, env, named_key(env_key, method),
                                                    runs_dir, fresh=method in row["cells"])
                except (ValueError, ImportError) as exc:
                    row["cells"][method] = {"error": f"{type(exc).__name__}: {exc}"}
                if elsewhere is not None:
                    row["cells"][method]["machine"] = elsewhere
                if out_dir is not None:
                    save(report, Path(out_dir), stem)
                bar.advance(task)
    return report


# --- report ---------------------------------------------------------------------------------

def _cell_text(cell: dict | None, best: bool) -> str:
    if cell is None:
        return "—"
    if "error" in cell:
        return "n/a"
    text = f"{cell['mean']:.2f} ± {cell['std']:.2f}"
    if "win_mean" in cell:
        text += f" ({100 * cell['win_mean']:.0f}% won)"
    return (f"**{text}**" if best else text) + ("†" if "machine" in cell else "")


def histogram_median(counts, edges) -> float:
    """The median of a histogram's samples, linear within the bin where the cumulative share
    reaches one half (MILD² Figs. 3–4 compare the reward distributions' medians)."""
    counts, edges = np.asarray(counts, np.float64), np.asarray(edges, np.float64)
    if counts.sum() <= 0:
        return float("nan")
    cdf = np.cumsum(counts) / counts.sum()
    i = int(np.searchsorted(cdf, 0.5))
    below = cdf[i - 1] if i else 0.0
    return float(edges[i] + (0.5 - below) / (cdf[i] - below) * (edges[i + 1] - edges[i]))


def render(report: dict) -> str:
    bench = report["config"]
    methods = [m for m in DISCRETE_METHODS + CONTINUOUS_METHODS if any(
        m in row["cells"] for row in report["rows"].values())]
    methods = list(dict.fromkeys(methods))
    lines = ["# Imitation benchmark: MILD², MILD²-GD, MAGAIL and offline baselines on expert data", "",
             f"Machine: {report['machine']}", "",
             "Commands: " + ", ".join(f"`{c}`" for c in report.get("commands", [report["command"]])), "",
             f"Budget: adversarial runs {bench['timesteps'] or 'the env MAPPO budget'} env steps, offline learners "
             f"{bench['updates'] or 'paper-default'} updates; {bench['num_seeds']} seeds per method (one vmapped "
             f"program), {bench['eval_episodes']} evaluation episodes per seed. Cells: mean ± std over seeds of the "
             "evaluated mean team return (SMAX: win rate); bold: best of the row. Expert: the dataset's mean return.",
             "", "| env | expert | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for env_id, row in report["rows"].items():
        means = {m: c["mean"] for m, c in row["cells"].items() if "mean" in c}
        top = max(means, key=means.get) if means else None
        cells = [_cell_text(row["cells"].get(m), m == top) for m in methods]
        lines.append(f"| {env_id} ({row['transitions']:,} tr.) | {row['expert_return']:.2f} | " + " | ".join(cells) + " |")
    elsewhere = sorted({c["machine"] for row in report["rows"].values() for c in row["cells"].values()
                        if "machine" in c})
    if elsewhere:
        lines += ["", "† ran on " + " / ".join(elsewhere) + ", not the machine named above (its wall clock is that "
                  "machine's)."]
    if report.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {note}" for note in report["notes"]]
    lines += [""] + aggregate.render("All environments", aggregate.aggregate(report["rows"], tuple(methods),
                                                                            seed=bench.get("seed", 0)))
    lines += ["## Adversarial runs: speed and discriminator-reward diagnostics (seed 0)", "",
              "| env | method | env steps | wall clock | env steps/s (all seeds) | generator reward variance, "
              "first → last | generator reward median, last | disc loss, last | joint advantage variance Σ_k "
              "Var[A^k], last tenth (all seeds) |", "|---|---|---|---|---|---|---|---|---|"]
    for env_id, row in report["rows"].items():
        for method, cell in row["cells"].items():
            if "env_steps" not in cell:
                continue
            d = cell.get("diagnostics", {})
            var = d.get("generator_reward_var") or [float("nan")]
            loss = d.get("disc_loss") or [float("nan")]
            median = (histogram_median(d["final_reward_histogram"], d["histogram_edges"])
                      if d.get("final_reward_histogram") else float("nan"))
            lines.append(f"| {env_id} | {method} | {cell['env_steps']:,} | {cell['train_seconds']:.0f} s"
                         f"{'†' if 'machine' in cell else ''} | "
                         f"{cell['env_steps_per_s']:,.0f} | {var[0]:.3g} → {var[-1]:.3g} | {median:.2f} | "
                         f"{loss[-1]:.3g} | {_spread(d.get('advantage_var_end'))} |")
    lines += ["", "Figures (MILD² Figures 3–5 analogues): `" + report.get("figure_pattern", "imitation-<env>.png")
              + "`: the return of the training episodes (the offline learners' evaluated returns and the expert's as "
              "levels), generator-reward variance and discriminator loss over training, final reward distribution. "
              "The median is read off that distribution's histogram (interpolated within the bin where half the "
              "rewards are reached; the bins are 0.3 wide for MILD²). The joint advantage variance is that of the "
              "generator's GAE advantages in its learning reward's units, before PPO normalises them per minibatch "
              "(mean ± std over seeds of each seed's mean over the last tenth of its log rows).", ""]
    return "\n".join(lines) + "\n"


def _spread(values) -> str:
    if not values:
        return "—"
    return f"{np.mean(values):.3g} ± {np.std(values):.2g}" if len(values) > 1 else f"{values[0]:.3g}"


def diagnostics_figure(row: dict):
    """The figure `plot_diagnostics` saves (a matplotlib Figure, Agg canvas), or None when
    no method of the row has diagnostics. Each method keeps its colour in every figure."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import EngFormatter

    from teamsift import plotting

    runs = {m: c["diagnostics"] for m, c in row["cells"].items() if c.get("diagnostics")}
    if not runs:
        return None
    known = list(dict.fromkeys(DISCRETE_METHODS + CONTINUOUS_METHODS))
    colours = plotting.series_colours(known + sorted(set(runs) - set(known)))
    fig = plotting.new_figure(22.0, 4.0)
    with plotting.style():
        returns, reward_var, advantage_var, disc_loss, final = (fig.add_subplot(1, 5, i + 1) for i in range(5))
        for method in (m for m in colours if m in runs):
            d, colour = runs[method], colours[method]
            x = d.get("env_steps") or list(range(len(d.get("disc_loss", []))))
            if d.get("return"):
                returns.plot(x[:len(d["return"])], d["return"], color=colour)
            if d.get("generator_reward_var"):
                reward_var.plot(x[:len(d["generator_reward_var"])], d["generator_reward_var"], color=colour)
            if d.get("gen_advantage_var"):
                advantage_var.plot(x[:len(d["gen_advantage_var"])], d["gen_advantage_var"], color=colour)
            if d.get("disc_loss"):
                disc_loss.plot(x[:len(d["disc_loss"])], d["disc_loss"], color=colour)
            if d.get("final_reward_histogram"):
                edges = np.asarray(d["histogram_edges"])
                counts = np.asarray(d["final_reward_histogram"], np.float64)
                final.stairs(counts / max(counts.sum(), 1e-9) / np.diff(edges), edges, color=colour, linewidth=1.6)
        # The offline learners' evaluated returns, as levels the curves are read against.
        for method, cell in row["cells"].items():
            if method not in runs and "mean" in cell:
                returns.axhline(cell["mean"], color=colours.get(method, "0.5"), linestyle="--", linewidth=1.2)
        if row.get("expert_return") is not None:
            returns.axhline(row["expert_return"], color="0.3", linestyle=":", linewidth=1.2)
        returns.set(title="return of the training episodes", xlabel="env steps", ylabel="team return")
        reward_var.set(title="variance of the generator's reward", xlabel="env steps", ylabel="variance")
        advantage_var.set(title="joint advantage variance Σ_k Var[A^k]", xlabel="env steps", ylabel="variance",
                          yscale="log")
        disc_loss.set(title="discriminator loss", xlabel="env steps", ylabel="loss")
        final.set(title="generator's reward at the end", xlabel="discriminator reward", ylabel="density")
        for ax in (returns, reward_var, advantage_var, disc_loss):
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 20k, 40k: no overlapping tick labels
        handles = [Line2D([], [], color=colours[m], label=m) for m in colours if m in runs]
        handles += [Line2D([], [], color=colours[m], linestyle="--", label=f"{m} (evaluated)")
                    for m in colours if m not in runs and "mean" in row["cells"].get(m, {})]
        if row.get("expert_return") is not None:
            handles.append(Line2D([], [], color="0.3", linestyle=":", label="expert data"))
        plotting.figure_legend(fig, handles, title="method")
        fig.suptitle(f"{row['env']}: adversarial imitation diagnostics (seed 0)")
    return fig


def plot_diagnostics(row: dict, path: Path) -> Path | None:
    """MILD² Figures 3–5 analogues for one environment's row: the training episodes' return
    (against the offline learners' evaluated returns), generator-reward and joint-advantage variance and
    discriminator loss over training, final reward distribution. None without diagnostics."""
    from teamsift.plotting import save

    fig = diagnostics_figure(row)
    return None if fig is None else save(fig, path, dpi=100)


def save(report: dict, out_dir: Path, stem: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    report["figure_pattern"] = f"{stem}-<env>.png"
    for env_id, row in report["rows"].items():
        plot_diagnostics(row, out_dir / f"{stem}-{env_id}.png")
    write_report(report, render(report), out_dir, stem)
