"""PJAP's interaction ordering (Tilbury et al. 2024; claim P6 of docs/claims.md): "as the
degree of agent interaction increases, the requirements of the dataset become more
stringent for learning to converge to the true optimum with BRUD", and PJAP matters more.

Games, in order of interaction (`teamsift.envs.poly`; the decoupled game and the coupled
family are ours, methods.md §2):

    decoupled       R = −(x − 1)² − (y − 1)²        optimum 0 at (1, 1)
    coupled, s      R = −s(x − y)² + x·y            optimum 1 at ±(1, 1); s = 0.5, 1, 2
    twin peaks      R = −(x² + y²) − 4(xy)² + 5xy   optimum 0.5625 at ±(0.61, 0.61)

For each game, datasets of 1,000 one-step episodes around the diagonal point (c, c),
c = 0, 0.25, 0.5, 0.75, spread σ = 0.2; MADDPG (BRUD) and MADDPG+PJAP start from the
miscoordinated joint policy (−0.5, 0.5), as in `teamsift bench pjap` (`teamsift.bench.poly`:
6,000 updates, 3 vmapped seeds, no CQL term).

Beside each learned result stands the BRUD fixed point with a perfect critic
(`teamsift.bench.poly.brud_fixed_point`): each agent maximises E_D[R(x, y^D)] over the
DATA's partner actions, e.g. x* = clip(E[y]·(1 + 1/(2s)), −1, 1) in the coupled game, which
reaches the optimum only when E[y] ≥ 2s/(2s + 1); y* likewise from E[x], with the
dataset's own moments.

    python benchmarks/run_poly_interaction.py            # about 30 minutes on one core
    python benchmarks/run_poly_interaction.py --updates 300 --seeds 1 --out /tmp/x   # a smoke run

Writes benchmarks/results/poly-interaction-<device>.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from teamsift.bench import poly

GAMES = (  # (label, env id, coupling strength): increasing interaction
    ("decoupled", "poly_decoupled", None),
    ("coupled s=0.5", "poly_coupled", 0.5),
    ("coupled s=1", "poly_coupled", 1.0),
    ("coupled s=2", "poly_coupled", 2.0),
    ("twin peaks", "poly_twin_peaks", None),
)
CENTRES = (0.0, 0.25, 0.5, 0.75)
SPREAD = 0.2
METHODS = ("MADDPG", "MADDPG+PJAP")
TOLERANCE = 0.05  # "reaches the optimum": mean final R within this of the optimum


def run(updates: int, seeds: int, episodes: int, seed: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for g, (label, env_id, coupling) in enumerate(GAMES):
            reward = poly.reward_fn(env_id, coupling)
            for c, centre in enumerate(CENTRES):
                key = jax.random.fold_in(jax.random.key(seed), 100 * g + c)
                dataset = poly.poly_dataset(env_id, (centre, centre), SPREAD, episodes, key, f"{tmp}/{g}-{c}",
                                            coupling=coupling)
                actions = np.asarray(dataset.steps["actions"], np.float64).reshape(dataset.num_steps, 2)  # [steps, (x, y)]
                x_star = poly.brud_fixed_point(env_id, actions[:, 1], coupling)
                y_star = poly.brud_fixed_point(env_id, actions[:, 0], coupling)
                for method in METHODS:
                    started = time.perf_counter()
                    out = poly.run_method(env_id, dataset, method, jax.random.fold_in(key, 1), num_updates=updates,
                                          num_seeds=seeds, coupling=coupling)
                    final = np.asarray(out["final_reward"], np.float64)
                    rows.append({
                        "game": label, "env_id": env_id, "coupling": coupling, "centre": centre, "spread": SPREAD,
                        "method": method, "optimum": poly.OPTIMA[env_id],
                        "data_mean_reward": float(dataset.returns.mean()),
                        "brud_fixed_point": [x_star, y_star],
                        "brud_fixed_point_reward": float(reward(x_star, y_star)),
                        "final_reward": final.tolist(), "final_joint_action": out["trajectory"][:, -1].tolist(),
                        "seconds": time.perf_counter() - started,
                    })
                    print(f"{label:14s} c={centre:<5} {method:12s} R = {final.mean():+.3f} ± {final.std():.3f} "
                          f"(BRUD fixed point {float(reward(x_star, y_star)):+.3f}; optimum "
                          f"{poly.OPTIMA[env_id]:+.3f}) {rows[-1]['seconds']:.0f} s", flush=True)
    return rows


def reaches(row: dict) -> bool:
    return float(np.mean(row["final_reward"])) >= row["optimum"] - TOLERANCE


def summary(rows: list[dict]) -> list[dict]:
    """Per game and method: the data centres from which it reaches the optimum, and its mean
    shortfall from the optimum over the centres."""
    out = []
    for label, _, _ in GAMES:
        for method in METHODS:
            mine = [r for r in rows if r["game"] == label and r["method"] == method]
            out.append({"game": label, "method": method,
                        "centres_reaching": [r["centre"] for r in mine if reaches(r)],
                        "mean_shortfall": float(np.mean([r["optimum"] - np.mean(r["final_reward"]) for r in mine]))})
    return out


def figure(rows: list[dict]):
    from matplotlib.lines import Line2D

    from teamsift import plotting

    colours = plotting.series_colours(list(METHODS))
    fig = plotting.new_figure(3.4 * len(GAMES), 3.3)
    with plotting.style():
        for i, (label, _, _) in enumerate(GAMES):
            ax = fig.add_subplot(1, len(GAMES), i + 1)
            mine = [r for r in rows if r["game"] == label]
            optimum = mine[0]["optimum"]
            brud = [r for r in mine if r["method"] == METHODS[0]]
            ax.plot([r["centre"] for r in brud], [r["brud_fixed_point_reward"] for r in brud], color="0.45",
                    linestyle="--", linewidth=1.2)
            ax.axhline(optimum, color="0.3", linestyle=":", linewidth=1.2)
            for k, method in enumerate(METHODS):
                these = [r for r in mine if r["method"] == method]
                x = np.asarray([r["centre"] for r in these]) + (k - 0.5) * 0.02
                y = [np.mean(r["final_reward"]) for r in these]
                err = [np.std(r["final_reward"]) for r in these]
                ax.errorbar(x, y, yerr=err, color=colours[method], marker="o", markersize=4, capsize=2)
            lowest = min(min(np.mean(r["final_reward"]) for r in mine), min(r["brud_fixed_point_reward"] for r in mine))
            ax.set(title=label, xlabel="data centre c (data around (c, c))", xticks=list(CENTRES),
                   ylim=(min(lowest - 0.05, optimum - 1.05), optimum + 0.05))
            if i == 0:
                ax.set_ylabel("final team reward")
        handles = [Line2D([], [], color=colours[m], marker="o", label=m) for m in METHODS]
        handles += [Line2D([], [], color="0.45", linestyle="--", label="BRUD fixed point, perfect critic"),
                    Line2D([], [], color="0.3", linestyle=":", label="optimum")]
        plotting.figure_legend(fig, handles, title="")
        fig.suptitle("Polynomial games in order of interaction: final reward against where the data lies "
                     f"(σ = {SPREAD}, start (−0.5, 0.5))")
    return fig


def render(payload: dict) -> str:
    rows, stem = payload["rows"], payload["stem"]
    lines = ["# Polynomial games in order of interaction: BRUD's data requirements and PJAP (claim P6)", "",
             f"Command: `{payload['command']}`", f"Machine: {payload['machine']}", "",
             f"{payload['updates']} updates (batch 64), {payload['seeds']} seeds per method (vmapped), "
             f"{payload['episodes']} episodes per dataset around (c, c) with σ = {SPREAD}; start (−0.5, 0.5); "
             "no CQL term. BRUD fixed point: where each agent settles when it best-responds to the data's partner "
             "actions with a perfect critic (the script's docstring).", "",
             "| game | data centre c | data mean R | BRUD fixed point (x, y): R | MADDPG | MADDPG+PJAP | optimum |",
             "|---|---|---|---|---|---|---|"]
    for label, _, _ in GAMES:
        for centre in CENTRES:
            pair = {r["method"]: r for r in rows if r["game"] == label and r["centre"] == centre}
            if not pair:
                continue
            first = next(iter(pair.values()))
            x_star, y_star = first["brud_fixed_point"]
            cells = []
            for method in METHODS:
                if method not in pair:
                    cells.append("—")
                    continue
                final = np.asarray(pair[method]["final_reward"])
                text = f"{final.mean():+.3f} ± {final.std():.3f}"
                cells.append(f"**{text}**" if reaches(pair[method]) else text)
            lines.append(f"| {label} | {centre} | {first['data_mean_reward']:+.3f} | ({x_star:+.2f}, {y_star:+.2f}): "
                         f"{first['brud_fixed_point_reward']:+.3f} | " + " | ".join(cells) + f" | {first['optimum']:+.4g} |")
    lines += ["", f"Bold: within {TOLERANCE} of the optimum (mean over seeds).", "",
              "| game | method | data centres from which it reaches the optimum | mean shortfall from the optimum |",
              "|---|---|---|---|"]
    for s in payload["summary"]:
        centres = ", ".join(str(c) for c in s["centres_reaching"]) or "none"
        lines.append(f"| {s['game']} | {s['method']} | {centres} | {s['mean_shortfall']:.3f} |")
    lines += ["", f"Figure: `{stem}.png` (final reward against the data centre, one panel per game; dashed: the "
              "BRUD fixed point with a perfect critic; dotted: the optimum)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=6000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--overwrite", action="store_true", help="replace the result files if they exist")
    parser.add_argument("--render-only", action="store_true",
                        help="redraw the .md and .png from the committed .json (no training)")
    args = parser.parse_args()

    from teamsift.bench.report import write_report
    from teamsift.machine import describe, machine
    from teamsift.plotting import save

    info = machine()
    stem = f"poly-interaction-{info['device'].split(':')[0]}"
    if args.render_only:
        payload = json.loads((args.out / f"{stem}.json").read_text())
        save(figure(payload["rows"]), args.out / f"{stem}.png", dpi=100)
        write_report(payload, render(payload), args.out, stem)
        print(f"redrew {args.out / stem}.{{md,png}}")
        return
    if (args.out / f"{stem}.json").exists() and not args.overwrite:
        sys.exit(f"{args.out / (stem + '.json')} exists; pass --overwrite to replace it")
    rows = run(args.updates, args.seeds, args.episodes, args.seed)
    payload = {"command": ("python benchmarks/run_poly_interaction.py " + " ".join(sys.argv[1:])).strip(),
               "machine": describe(info), "updates": args.updates, "seeds": args.seeds, "episodes": args.episodes,
               "seed": args.seed, "stem": stem, "rows": rows, "summary": summary(rows)}
    save(figure(rows), args.out / f"{stem}.png", dpi=100)
    paths = write_report(json.loads(json.dumps(payload)), render(payload), args.out, stem)
    print("wrote " + ", ".join(str(p) for p in paths) + f", {args.out / (stem + '.png')}")


if __name__ == "__main__":
    main()
