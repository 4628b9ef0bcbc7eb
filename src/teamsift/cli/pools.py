"""`teamsift pools`: behaviour-policy pools of random / medium / expert checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from teamsift.cli.common import JSON_OPTION, emit, fail, key, make_env_or_fail
from teamsift.progress import STDERR

app = typer.Typer(no_args_is_help=True, help="Behaviour-policy pools: random / medium / expert checkpoints.")


def _parse_cuts(cuts: Optional[str]):
    if cuts is None:
        return None
    try:
        low, high = (float(x) for x in cuts.split(","))
    except ValueError:
        fail(f"--cuts: expected two returns 'LOW,HIGH', got {cuts!r}")
    if high < low:
        fail(f"--cuts: LOW must not exceed HIGH, got {cuts!r}")
    return low, high


def _render_pools(summary: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"{summary['env_id']}: {summary['checkpoints']} checkpoints; random policy "
                               f"{summary['random_policy_return']:.2f}, best {summary['best_return']:.2f}; "
                               f"cuts {summary['cuts'][0]:.2f} / {summary['cuts'][1]:.2f} ({summary['cut_rule']})"))
    level_returns = summary.get("info", {}).get("level_returns", {})
    for column in ("pool", "checkpoints", "pool return (95% CI)", "checkpoint returns"):
        table.add_column(column)
    for level, members in summary["pools"].items():
        pooled = level_returns.get(level)
        pooled_text = f"{pooled['mean']:.2f} ({pooled['ci95_low']:.2f} … {pooled['ci95_high']:.2f})" if pooled else "—"
        shown = ", ".join(f"{m['return']:.1f}" for m in members[:6]) + (", …" if len(members) > 6 else "")
        table.add_row(level, str(len(members)), pooled_text, shown or "—")
    Console().print(table)


@app.command("train")
def pools_train(
    env_id: str = typer.Argument(..., help="Environment id."),
    pools_dir: Optional[Path] = typer.Option(None, "--dir", help="Pools directory (default ./pools or $TEAMSIFT_POOLS)."),
    timesteps: Optional[int] = typer.Option(None, min=1, help="Environment steps of training (default: tuned per "
                                                              "env)."),
    checkpoints: int = typer.Option(41, min=2, help="Checkpoints kept, evenly spaced (the untrained one included)."),
    eval_episodes: int = typer.Option(100, min=2, help="Episodes to evaluate each checkpoint."),
    cuts: Optional[str] = typer.Option(None, help="Explicit return cuts 'LOW,HIGH' instead of SIT's thirds."),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the pools ENV already has in the directory."),
    as_json: bool = JSON_OPTION,
):
    """Train MAPPO on ENV, checkpoint it, evaluate every checkpoint and sort them into pools."""
    import dataclasses

    from teamsift.collect import ppo
    from teamsift.collect.pools import pool_dir, save_pools, train_pools
    from teamsift.collect.suites import ENV_KWARGS

    target = pool_dir(env_id, pools_dir)
    if target.exists() and not target.is_dir():
        fail(f"{target}: a file, where the pools of {env_id} would go; give another --dir")
    if not overwrite and target.is_dir() and any(target.iterdir()):
        fail(f"{target} already holds pools of {env_id}; pass --overwrite to replace them "
             f"(or --dir elsewhere; `teamsift pools cut` re-sorts them without retraining)")

    env = make_env_or_fail(env_id, **ENV_KWARGS.get(env_id, {}))
    config = ppo.config_for(env_id)
    if timesteps is not None:
        config = dataclasses.replace(config, total_timesteps=timesteps)
    config = dataclasses.replace(config, num_checkpoints=checkpoints)
    pools = train_pools(env, key(seed), config=config, episodes=eval_episodes, cuts=_parse_cuts(cuts),
                        progress=not as_json)
    pools.info["seed"] = seed
    directory = save_pools(pools, pools_dir)
    emit({"dir": str(directory), **pools.summary()}, as_json, _render_pools)


@app.command("list")
def pools_list(
    env_id: Optional[str] = typer.Argument(None, help="Only this environment."),
    pools_dir: Optional[Path] = typer.Option(None, "--dir", help="Pools directory (default ./pools or $TEAMSIFT_POOLS)."),
    as_json: bool = JSON_OPTION,
):
    """List the pools: each pool's checkpoints with their evaluated returns."""
    from teamsift.collect.pools import PoolError, list_pools, load_pools

    names = [env_id] if env_id else list_pools(pools_dir)
    try:
        summaries = [load_pools(name, pools_dir).summary() for name in names]
    except PoolError as exc:
        fail(str(exc))
    emit({"pools": summaries}, as_json,
         lambda p: [_render_pools(s) for s in p["pools"]] or STDERR.print("no pools yet: teamsift pools train ENV"))


@app.command("cut")
def pools_cut(
    env_id: str = typer.Argument(..., help="Environment id."),
    cuts: Optional[str] = typer.Option(None, help="Return cuts 'LOW,HIGH'; omit for SIT's thirds."),
    pools_dir: Optional[Path] = typer.Option(None, "--dir"),
    as_json: bool = JSON_OPTION,
):
    """Re-sort existing checkpoints into pools with other cuts (no retraining)."""
    from teamsift.collect.pools import PoolError, load_pools, recut, save_pools

    try:
        pools = recut(load_pools(env_id, pools_dir), _parse_cuts(cuts))
    except PoolError as exc:
        fail(str(exc))
    save_pools(pools, pools_dir)
    emit(pools.summary(), as_json, _render_pools)
