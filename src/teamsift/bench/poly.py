"""Polynomial-game study: BRUD coordination failure and PJAP (methods.md §2).

Two agents choose x, y ∈ [−1, 1] once per episode (`teamsift.envs.poly`). A dataset is
drawn around a point c of the action square with spread σ: every episode plays the joint
action clip(c + σ·ε, −1, 1), ε ~ N(0, I). MADDPG (twin critics, BRUD policy updates,
`teamsift.algos.maddpg_cql` with an MLP actor on the constant observation, windows of
one step) starts from the joint policy (−0.5, 0.5) and learns from the dataset with
uniform sampling or with the PJAP sampler; the joint action at the start and at 200
evenly spaced log points (the learner's probe) is the trajectory that
`plot_trajectories` draws over the reward landscape.

Why broad data breaks BRUD (twin peaks, R = −(x² + y²) − 4(xy)² + 5xy): with a perfect
critic, agent x's BRUD gradient is E_D[∂R/∂x (x, y^D)] = −2x − 8x·E[y²] + 5·E[y], which
vanishes at x* = 5·E[y] / (2 + 8·E[y²]) whatever the partner currently does. The
larger the spread, the larger E[y²] and the further x* falls short of the optimum 0.61.
PJAP draws data whose joint action is close to the current policy, so E[y] → y and
E[y²] → y², and the update approaches the true joint gradient.

Our choices (the paper's notebook is not public in full): datasets of 1 000 one-step
episodes; 6 000 updates of batch 64 with the proximity ramp over the first quarter
(K = 1 500 instead of 150 000, which belongs to 5·10⁵-update MaMuJoCo runs); no CQL
term (plain MADDPG, as in the paper's polynomial games); an MLP actor 64-64.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from teamsift.algos import maddpg_cql
from teamsift.collect import collect
from teamsift.data import PJAP, Uniform, load_dataset
from teamsift.data.pjap import PJAPConfig
from teamsift.engine import RunConfig, fit
from teamsift.envs import make
from teamsift.envs.poly import coupled_reward, decoupled_reward, sign_reward, twin_peaks_reward
from teamsift.nets import AgentNetConfig, FunctionPolicy, apply_step, init_params

GAMES = {"poly_sign": sign_reward, "poly_twin_peaks": twin_peaks_reward, "poly_coupled": coupled_reward,
         "poly_decoupled": decoupled_reward}
OPTIMA = {"poly_sign": 1.0, "poly_twin_peaks": 0.5625, "poly_coupled": 1.0, "poly_decoupled": 0.0}  # coupled: s ≥ 0
INITIAL_JOINT_POLICY = (-0.5, 0.5)
PROBE_OBS = np.ones((2, 1), np.float32)  # the games' constant observation
TRAJECTORY_POINTS = 200  # log points (probes) per run, plus the start
METHODS = {  # (PJAP sampling?, policy update)
    "MADDPG": dict(pjap=False, policy_update="brud"),
    "MADDPG+PJAP": dict(pjap=True, policy_update="brud"),
    "MADDPG (current actions)": dict(pjap=False, policy_update="current"),
}


def reward_fn(env_id: str, coupling: float | None = None):
    """R(x, y) of a game; `coupling` is poly_coupled's strength s (its default 1 when None)."""
    if env_id not in GAMES:
        raise ValueError(f"env_id: expected one of {sorted(GAMES)}, got {env_id!r}")
    if coupling is not None:
        if env_id != "poly_coupled":
            raise ValueError(f"coupling: only poly_coupled has a coupling strength, not {env_id!r}")
        return functools.partial(coupled_reward, s=coupling)
    return GAMES[env_id]


def brud_fixed_point(env_id: str, partner: np.ndarray, coupling: float | None = None) -> float:
    """Where an agent settles under BRUD with a perfect critic: the x maximising
    E_D[R(x, y^D)] over its partner's DATA actions `partner` (concave in x in these games).

        decoupled   x* = 1                                 (the data does not matter)
        sign        x* = sign(E[y])                        (a corner)
        coupled     x* = clip(E[y]·(1 + 1/(2s)), −1, 1)    (x* = 1 needs E[y] ≥ 2s/(2s + 1))
        twin peaks  x* = 5·E[y] / (2 + 8·E[y²])            (the module doc)
    """
    mean, second = float(np.mean(partner)), float(np.mean(np.square(partner)))
    if env_id == "poly_decoupled":
        return 1.0
    if env_id == "poly_sign":
        return float(np.sign(mean))
    if env_id == "poly_coupled":
        s = 1.0 if coupling is None else coupling
        return float(np.clip(mean * (1.0 + 1.0 / (2.0 * s)), -1.0, 1.0))
    if env_id == "poly_twin_peaks":
        return float(np.clip(5.0 * mean / (2.0 + 8.0 * second), -1.0, 1.0))
    raise ValueError(f"env_id: expected one of {sorted(GAMES)}, got {env_id!r}")


def game_kwargs(env_id: str, coupling: float | None) -> dict:
    """`make`'s keyword arguments for a game (poly_coupled's strength)."""
    reward_fn(env_id, coupling)  # checks the pair
    return {} if coupling is None else {"coupling": coupling}


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method: expected one of {sorted(METHODS)}, got {method!r}")


def poly_config(method: str, *, cql_weight: float = 0.0, **overrides) -> maddpg_cql.MADDPGCQLConfig:
    """MADDPG settings for the one-step games (see the module docstring)."""
    _check_method(method)
    base = dict(recurrent=False, policy_hidden=(64, 64), seq_len=1, sample_period=1, cql_weight=cql_weight,
                policy_update=METHODS[method]["policy_update"])
    return maddpg_cql.MADDPGCQLConfig(**{**base, **overrides})


def poly_sampler(method: str, num_updates: int, ramp_fraction: float = 0.25):
    """The method's sampler: PJAP with its proximity ramped in over the first `ramp_fraction`
    of the updates, or uniform."""
    _check_method(method)
    if METHODS[method]["pjap"]:
        return PJAP(PJAPConfig(ramp_steps=int(ramp_fraction * num_updates)))
    return Uniform()


def poly_dataset(env_id: str, centre: Sequence[float], spread: float, num_episodes: int, key: jax.Array,
                 out_dir: str | os.PathLike, coupling: float | None = None):
    """`num_episodes` one-step episodes with joint actions clip(centre + spread·N(0, I), −1, 1)."""
    env = make(env_id, **game_kwargs(env_id, coupling))
    centre = jnp.asarray(centre, jnp.float32).reshape(2, 1)
    behaviour = FunctionPolicy(lambda k, o, a: jnp.clip(centre + spread * jax.random.normal(k, (2, 1)), -1.0, 1.0))
    path = collect(env, behaviour, key, num_episodes, out_dir, overwrite=True,
                   notes=f"poly study: centre {tuple(np.asarray(centre[:, 0]).tolist())}, spread {spread}")
    return load_dataset(path)


@functools.lru_cache(maxsize=None)
def _fit_constant_action(net: AgentNetConfig, steps: int):
    """The compiled fit of `constant_action_params` (one program per actor and length)."""
    obs = jnp.ones((net.num_agents, net.obs_dim), jnp.float32)
    opt = optax.adam(1e-2)

    def loss(params, target):
        return jnp.mean((apply_step(net, params, obs, None)[0] - target) ** 2)

    def fit_params(params, target):
        def step(carry, _):
            params, state = carry
            grads = jax.grad(loss)(params, target)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
        return params

    return jax.jit(fit_params)


def constant_action_params(net: AgentNetConfig, actions: Sequence[float], key: jax.Array, steps: int = 500):
    """Actor parameters whose output at the constant observation (ones) is `actions` [N]."""
    target = jnp.asarray(actions, jnp.float32).reshape(net.num_agents, 1)
    return _fit_constant_action(net, steps)(init_params(net, key), target)


def run_method(env_id: str, dataset, method: str, key: jax.Array, *, num_updates: int = 6_000, num_seeds: int = 3,
               cql_weight: float = 0.0, points: int = TRAJECTORY_POINTS, progress: bool = False,
               coupling: float | None = None) -> dict:
    """Train one method from the joint policy (−0.5, 0.5).

    Returns the trajectory [S, P, 2] ((x, y) at the start and at P − 1 ≤ `points` evenly
    spaced log points, the last after the final update), the update of every point [P],
    the reward there [S, P], the final reward [S], and the mean d_τ ("distance") and ρ
    ("priority", PJAP only, else None) over each log interval [S, P − 1]."""
    config = poly_config(method, cql_weight=cql_weight)
    learner = maddpg_cql.learner(config, dataset, from_start=True)
    net = maddpg_cql.policy_config(config, dataset.spec)
    init_key, train_key = jax.random.split(key)
    start = constant_action_params(net, INITIAL_JOINT_POLICY, init_key)
    starts = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_seeds,) + x.shape), start)
    run = RunConfig(updates=num_updates, seeds=num_seeds, log_every=max(1, num_updates // points), progress=progress,
                    label=method)
    result = fit(learner, dataset, train_key, run, sampler=poly_sampler(method, num_updates), start=starts,
                 inputs={"probe_obs": PROBE_OBS})
    initial = np.asarray(apply_step(net, start, jnp.asarray(PROBE_OBS), None)[0])[:, 0]  # (x, y) at the start
    probes = np.asarray(result.history["probe_actions"])[..., 0]  # [S, L, 2]
    trajectory = np.concatenate([np.broadcast_to(initial, (num_seeds, 1, 2)), probes], axis=1)
    rewards = np.asarray(reward_fn(env_id, coupling)(trajectory[..., 0], trajectory[..., 1]))
    return {"trajectory": trajectory, "updates": np.concatenate([[0], result.history["update"]]),
            "reward": rewards, "final_reward": rewards[:, -1], "distance": result.history["distance"],
            "priority": result.history.get("priority")}


def landscape(env_id: str, resolution: int = 101):
    grid = np.linspace(-1.0, 1.0, resolution)
    x, y = np.meshgrid(grid, grid)
    return x, y, np.asarray(reward_fn(env_id)(x, y))


def trajectories_figure(results: list[dict], *, columns: int | None = None):
    """The figure `plot_trajectories` saves (a matplotlib Figure, Agg canvas)."""
    from matplotlib import patheffects
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle

    from teamsift import plotting

    columns = columns or len({r["method"] for r in results})
    rows = -(-len(results) // columns)
    fig = plotting.new_figure(3.4 * columns + 1.2, 3.3 * rows + 0.6)
    outline = [patheffects.withStroke(linewidth=2.6, foreground="black")]
    with plotting.style():
        axes = fig.subplots(rows, columns, squeeze=False)
        for index, (ax, result) in enumerate(zip(axes.flat, results)):
            x, y, r = landscape(result["env_id"])
            levels = np.linspace(max(r.min(), -2.0), r.max(), 21)  # the corners of twin peaks fall to −10
            filled = ax.contourf(x, y, r, levels=levels, cmap="viridis", extend="min")
            ax.contour(x, y, r, levels=[0.0], colors="black", linewidths=0.6, linestyles=":")
            best = r.max()
            ax.plot(x[r >= best - 1e-3], y[r >= best - 1e-3], "*", color="white", ms=9, markeredgecolor="black",
                    clip_on=False, zorder=4)  # the sign game's optima are corners
            cx, cy = result["centre"]
            ax.add_patch(Circle((cx, cy), result["spread"], fill=False, ls="--", color="white", lw=1.0))
            for seed_path in np.asarray(result["trajectory"]):
                ax.plot(seed_path[:, 0], seed_path[:, 1], color="white", lw=1.2, path_effects=outline)
                ax.plot(*seed_path[0], "o", color="white", markeredgecolor="black", ms=5)
                ax.plot(*seed_path[-1], "X", color="black", markeredgecolor="white", ms=8, clip_on=False, zorder=5)
            final = np.asarray(result["final_reward"])
            ax.set_title(f"{result['env_id'].removeprefix('poly_')} σ={result['spread']}, {result['method']}\n"
                         f"final R = {final.mean():.2f} ± {final.std():.2f} (±1 std, {len(final)} seeds)", fontsize=9)
            ax.set_xlim(-1, 1)
            ax.set_ylim(-1, 1)
            ax.set_aspect("equal")
            ax.set_xticks([-1, -0.5, 0, 0.5, 1])
            ax.set_yticks([-1, -0.5, 0, 0.5, 1])
            ax.tick_params(labelsize=8)
            if index % columns == 0:
                ax.set_ylabel("y (agent 2's action)")
            if index // columns == rows - 1 or index + columns >= len(results):
                ax.set_xlabel("x (agent 1's action)")
            if index % columns == columns - 1 or index == len(results) - 1:
                fig.colorbar(filled, ax=ax, label="team reward R(x, y)", shrink=0.85,
                             ticks=[levels[0], 0.0, levels[-1]], format="%.2g")
        for ax in list(axes.flat)[len(results):]:
            ax.axis("off")
        handles = [Line2D([], [], color="white", lw=1.2, path_effects=outline,
                          label="one seed's joint action over training"),
                   Line2D([], [], marker="o", color="white", markeredgecolor="black", linestyle="none", label="start"),
                   Line2D([], [], marker="X", color="black", markeredgecolor="white", linestyle="none", ms=8,
                          label="end"),
                   Line2D([], [], color="gray", ls="--", label="dataset: centre ± σ"),
                   Line2D([], [], marker="*", color="white", markeredgecolor="black", linestyle="none", ms=10,
                          label="optimum"),
                   Line2D([], [], color="black", ls=":", lw=0.8, label="R = 0")]
        plotting.figure_legend(fig, handles, below=True)
    return fig


def plot_trajectories(results: list[dict], path: str | os.PathLike, *, columns: int | None = None) -> Path:
    """One panel per (game, spread, method): reward contours, the dataset's centre and
    spread, and every seed's (x, y) over training (start ○, end ×).

    results: dicts with env_id, centre, spread, method, trajectory [S, U, 2], final_reward [S].
    """
    from teamsift.plotting import save

    return save(trajectories_figure(results, columns=columns), path, dpi=110)


# --- the study (`teamsift bench pjap`, benchmarks/run_poly_pjap.py) ----------------------------

# Dataset centres (our choice): sign agreement around the initial joint policy (−0.5, 0.5),
# data from the behaviour the learner starts from; twin peaks around (0.5, 0.5), whose best
# response is the optimum 0.61 when the data is narrow.
CENTRES = {"poly_sign": (-0.5, 0.5), "poly_twin_peaks": (0.5, 0.5)}
SPREADS = (0.1, 0.5, 1.0)


def study_runs(*, quick: bool = False, num_updates: int = 6_000, num_seeds: int = 3, episodes: int = 1_000,
               cql_weight: float = 0.0, seed: int = 0, progress: bool = True) -> list[dict]:
    """Every (game, spread, method) of the study; `quick`: broad twin peaks, MADDPG vs +PJAP."""
    import tempfile
    import time

    from teamsift.progress import STDERR

    games = ("poly_twin_peaks",) if quick else tuple(CENTRES)
    spreads = (1.0,) if quick else SPREADS
    methods = ("MADDPG", "MADDPG+PJAP") if quick else tuple(METHODS)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for g, env_id in enumerate(games):
            for s, spread in enumerate(spreads):
                key = jax.random.fold_in(jax.random.key(seed), 100 * g + s)
                dataset = poly_dataset(env_id, CENTRES[env_id], spread, episodes, key, f"{tmp}/{env_id}-{s}")
                for method in methods:
                    start = time.perf_counter()
                    out = run_method(env_id, dataset, method, jax.random.fold_in(key, 1), num_updates=num_updates,
                                     num_seeds=num_seeds, cql_weight=cql_weight)
                    distance = out["distance"]  # [S, log rows]
                    seconds = time.perf_counter() - start
                    final = out["final_reward"]
                    if progress:
                        STDERR.print(f"{env_id:16s} σ={spread:<4} {method:26s} R = {final.mean():+.3f} ± "
                                     f"{final.std():.3f} ({seconds:.0f} s)")
                    results.append({
                        "env_id": env_id, "centre": CENTRES[env_id], "spread": spread, "method": method,
                        "dataset_mean_reward": float(dataset.returns.mean()),
                        "final_reward": final.tolist(), "final_joint_action": out["trajectory"][:, -1].tolist(),
                        "mean_distance_last_10pct": float(distance[:, -max(1, distance.shape[1] // 10):].mean()),
                        "seconds": seconds, "trajectory": out["trajectory"],
                    })
    return results


def write_study(results: list[dict], out_dir: str | os.PathLike, *, command: str, num_updates: int, num_seeds: int,
                episodes: int, cql_weight: float) -> Path:
    """poly-pjap-<device>.{png,json,md} in out_dir; returns the stem."""
    import json

    from teamsift.machine import describe, machine

    info = machine()
    stem = Path(out_dir) / f"poly-pjap-{info['device'].split(':')[0]}"
    plot_trajectories(results, stem.with_suffix(".png"), columns=len({r["method"] for r in results}))
    payload = {"command": command, "machine": info, "updates": num_updates, "seeds": num_seeds,
               "episodes": episodes, "cql_weight": cql_weight, "optimum": OPTIMA,
               "results": [{**r, "trajectory": np.asarray(r["trajectory"]).tolist()} for r in results]}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    lines = ["# BRUD coordination failure and PJAP on polynomial games", "",
             f"Command: `{command}`", f"Machine: {describe(info)}", "",
             f"{num_updates} updates (batch 64 one-step windows), {num_seeds} seeds per method (vmapped), "
             f"{episodes} episodes per dataset, CQL weight {cql_weight}; initial joint policy "
             f"(−0.5, 0.5); PJAP κ = 4, ρ_min = 1e-3, exponent 0.99, ramp over the first quarter of the updates.", "",
             "| game | data centre | spread σ | data mean R | method | final R (mean ± sd over seeds) | "
             "final (x, y) per seed | mean d (last 10%) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        final = np.asarray(r["final_reward"])
        xy = ", ".join(f"({x:+.2f}, {y:+.2f})" for x, y in r["final_joint_action"])
        lines.append(f"| {r['env_id']} | {tuple(r['centre'])} | {r['spread']} | {r['dataset_mean_reward']:+.3f} | "
                     f"{r['method']} | {final.mean():+.3f} ± {final.std():.3f} | {xy} | "
                     f"{r['mean_distance_last_10pct']:.3f} |")
    lines += ["", "Optima: sign agreement R = 1 at ±(1, 1); twin peaks R = 0.5625 at ±(0.61, 0.61).",
              f"Trajectories: `{stem.with_suffix('.png').name}` (one panel per game × spread × method; "
              "white dashed circle = dataset centre ± σ; ○ start, × end of every seed)."]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem


def run_study(*, quick: bool = False, num_updates: int = 6_000, num_seeds: int = 3, episodes: int = 1_000,
              cql_weight: float = 0.0, seed: int = 0, out_dir: str | os.PathLike = "benchmarks/results",
              command: str = "teamsift bench pjap", progress: bool = True) -> dict:
    """Run the study and write its files; returns {"files": [...], "results": [...] (no trajectories)}."""
    results = study_runs(quick=quick, num_updates=num_updates, num_seeds=num_seeds, episodes=episodes,
                         cql_weight=cql_weight, seed=seed, progress=progress)
    stem = write_study(results, out_dir, command=command, num_updates=num_updates, num_seeds=num_seeds,
                       episodes=episodes, cql_weight=cql_weight)
    brief = [{k: v for k, v in r.items() if k != "trajectory"} for r in results]
    return {"files": [str(stem.with_suffix(s)) for s in (".md", ".json", ".png")], "results": brief}
