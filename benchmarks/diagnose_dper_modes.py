"""SIT Fig. 3(f) (claim S43 of docs/claims.md): where one agent's data mixes two levels
(2s3z low: 50% z₂ʳ + 50% z₂ᵐ), DPER's priority distribution for that agent "has multiple
modals", one per level of quality.

Our low-quality datasets of CN_3ls3l and smax_3s_vs_5z are `50%[r,r,r] + 50%[r,r,m]` (SIT
Tables 7–9 on our pools): the third agent's trajectories are half random, half medium, the
other agents' all random. For each dataset this takes SIT's Stage I (ARDNEM at Table 10's
20,000 updates: the `teamsift bench sit` cache beside the dataset, trained here into the
bench's run directory when missing, so the bench then reuses it), rescales p̂ to DPER's
[0, 20] per type buffer (Table 11) and, per agent slot:

* the histogram of the rescaled priorities p̃ (the figure);
* for a slot whose trajectories come from two levels: the AUC of p̃ (higher level vs
  lower), the separation of the two level components (Ashman's D = √2·|μ₁ − μ₂| /
  √(σ₁² + σ₂²); a mixture of two normals is bimodal when D > 2) and the modes of the
  slot's p̃ density (Gaussian kernel, Silverman's bandwidth; local maxima above 5% of the
  highest).

    python benchmarks/diagnose_dper_modes.py [--datasets CN_3ls3l-low-10000ep-seed0,smax_3s_vs_5z-low-10000ep-seed0]
        [--data-dir datasets/bench-sit] [--name sit-paper-updates]

Writes benchmarks/results/dper-modes-<device>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import jax
import numpy as np
from scipy.stats import gaussian_kde

from teamsift.bench import sit as sit_bench
from teamsift.data import dper, load_dataset
from teamsift.fileio import atomic_write_text
from teamsift.machine import describe
from teamsift.machine import machine as host  # `machine` names the report's field
from teamsift.value.accuracy import auc

LEVEL_ORDER = ("random", "medium", "expert")
BINS = np.linspace(0.0, 20.0, 41)


def density_modes(x: np.ndarray, floor: float = 0.05) -> list[float]:
    """Local maxima of a Gaussian KDE (Silverman) of x on [0, 20], above `floor` × the highest."""
    grid = np.linspace(0.0, 20.0, 801)
    density = gaussian_kde(x, bw_method="silverman")(grid)
    peak = (density[1:-1] > density[:-2]) & (density[1:-1] >= density[2:]) & (density[1:-1] > floor * density.max())
    return [float(v) for v in grid[1:-1][peak]]


def slot_stats(scaled: np.ndarray, levels: np.ndarray) -> dict:
    present = [level for level in LEVEL_ORDER if np.any(levels == level)]
    out = {"levels": {level: {"share": float(np.mean(levels == level)), "mean": float(scaled[levels == level].mean()),
                              "sd": float(scaled[levels == level].std()),
                              "median": float(np.median(scaled[levels == level]))} for level in present},
           "mean": float(scaled.mean()), "sd": float(scaled.std()), "modes": density_modes(scaled),
           "histogram": np.histogram(scaled, BINS)[0].tolist()}
    if len(present) == 2:
        low, high = (out["levels"][level] for level in present)
        out["pair"] = present
        out["auc"] = float(auc(scaled, levels == present[1], levels == present[0]))
        out["ashman_d"] = float(np.sqrt(2) * abs(high["mean"] - low["mean"]) / np.sqrt(high["sd"] ** 2 + low["sd"] ** 2))
        out["histogram_by_level"] = {level: np.histogram(scaled[levels == level], BINS)[0].tolist() for level in present}
    return out


def analyse(name: str, data_dir: Path, runs_name: str) -> dict:
    path = data_dir / name
    dataset = load_dataset(path)
    bench = sit_bench.SITBenchConfig(data_dir=str(data_dir))
    spec = sit_bench.method_spec("SIT", bench)
    trainer = sit_bench.Trainer(bench, progress=True, runs_dir=data_dir / "runs" / f"{runs_name}-cpu")
    stage1 = trainer.stage1(dataset, spec.ardnem)  # the bench's cache; trained (and cached) when missing
    priority = np.asarray(stage1.priority, np.float64)
    levels = np.asarray(dataset.episodes["behaviour"]).astype(str)
    config = spec.sampler_config  # the SIT bench's DPERConfig (Table 11: range [0, 20])
    lo, hi = config.priority_range
    report = {"dataset": name, "episodes": int(priority.shape[0]), "ardnem_updates": int(np.max(stage1.logs["updates"])),
              "buffers": {}}
    for buffer, slots in dper.buffer_groups(dataset.spec.agent_types, config.group_by).items():
        episode, slot = np.meshgrid(np.arange(priority.shape[0]), slots, indexing="ij")
        scaled = dper.min_max(priority[episode, slot].reshape(-1), lo, hi).reshape(episode.shape)
        report["buffers"][str(buffer)] = {f"slot {int(s)}": slot_stats(scaled[:, i], levels[:, int(s)])
                                          for i, s in enumerate(slots)}
    return report


def render(report: dict) -> str:
    lines = ["# DPER's priorities per agent where one agent's data mixes two levels (SIT Fig. 3(f), claim S43)", "",
             f"Command: `{report['command']}`", f"Machine: {report['machine']}", "",
             "p̃: Stage I's p̂ (ARDNEM, Table 10's 20,000 updates, the `teamsift bench sit` cache) min–max'd to "
             "DPER's [0, 20] per type buffer (Table 11). Per slot: mean ± SD of p̃ per behaviour level; for the "
             "slot that mixes two levels, the AUC of p̃ (higher level vs lower), Ashman's D of the two level "
             "components (D > 2: a bimodal mixture) and the modes of its p̃ density (Gaussian KDE, Silverman "
             "bandwidth; maxima above 5% of the highest).", "",
             "| dataset | buffer | slot | levels (share) | p̃ per level, mean ± SD | AUC | Ashman's D | modes of p̃ |",
             "|---|---|---|---|---|---|---|---|"]
    for data in report["datasets"]:
        for buffer, slots in data["buffers"].items():
            for slot, s in slots.items():
                shares = ", ".join(f"{level} {v['share']:.0%}" for level, v in s["levels"].items())
                means = ", ".join(f"{level} {v['mean']:.2f} ± {v['sd']:.2f}" for level, v in s["levels"].items())
                pair = "pair" in s
                lines.append(f"| {data['dataset']} | {buffer} | {slot} | {shares} | {means} | "
                             f"{s['auc']:.2f} | {s['ashman_d']:.2f} | " if pair else
                             f"| {data['dataset']} | {buffer} | {slot} | {shares} | {means} | — | — | ")
                lines[-1] += ", ".join(f"{m:.1f}" for m in s["modes"]) + " |"
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    from teamsift import plotting

    panels = [(d["dataset"], buffer, slots) for d in report["datasets"] for buffer, slots in d["buffers"].items()]
    fig = plotting.new_figure(5.0 * len(panels), 3.6)
    centres = 0.5 * (BINS[1:] + BINS[:-1])
    with plotting.style():
        for n, (name, buffer, slots) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), n + 1)
            colours = plotting.series_colours(list(slots))
            for slot, s in slots.items():
                ax.step(centres, s["histogram"], where="mid", color=colours[slot], label=slot)
                for level, counts in s.get("histogram_by_level", {}).items():
                    ax.step(centres, counts, where="mid", color=colours[slot], linestyle=":" if level == "random"
                            else "--", linewidth=1, label=f"{slot}: {level} part")
            ax.set_title(f"{name.split('-10000ep')[0]} (buffer {buffer})", fontsize=9)
            ax.set_xlabel("DPER priority p̃ (p̂ rescaled to [0, 20])")
            ax.set_ylabel("trajectories")
            ax.legend(fontsize=7)
        fig.suptitle("Stage I priorities per agent (the third agent: half random, half medium)", fontsize=10)
    plotting.save(fig, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="CN_3ls3l-low-10000ep-seed0,smax_3s_vs_5z-low-10000ep-seed0")
    parser.add_argument("--data-dir", type=Path, default=Path("datasets/bench-sit"))
    parser.add_argument("--name", default="sit-paper-updates",
                        help="the bench's result name, whose run directory holds a Stage I being trained")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    device = jax.devices()[0].platform
    report = {"command": shlex.join(["python", "benchmarks/diagnose_dper_modes.py", *(argv or sys.argv[1:])]),
              "machine": describe(host()),
              "datasets": [analyse(name, args.data_dir, args.name) for name in args.datasets.split(",")]}
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"dper-modes-{device}.json"
    atomic_write_text(json_path, json.dumps(report, indent=1) + "\n")
    atomic_write_text(json_path.with_suffix(".md"), render(report))
    plot(report, json_path.with_suffix(".png"))
    print(render(report))


if __name__ == "__main__":
    main()
