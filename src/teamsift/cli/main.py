"""The `teamsift` command. Every command that reports results takes `--json` and then prints
exactly one JSON object on stdout (progress bars and messages go to stderr)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from teamsift.progress import STDERR

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n")[0])
import_app = typer.Typer(no_args_is_help=True, help="Bring your own data: convert files into a teamsift dataset.")
app.add_typer(import_app, name="import")

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object on stdout instead of tables.")


def emit(payload: dict, as_json: bool, render=None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload, default=_json_default) + "\n")
    elif render is not None:
        render(payload)


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def fail(message: str, code: int = 2) -> None:
    """Print `message` to stderr and exit. The message is printed literally (a dataset spec like
    `100%[all e]` is not markup) and never wrapped, so paths in it can be copied."""
    from rich.markup import escape

    STDERR.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _key(seed: int):
    import jax

    return jax.random.key(seed)


# --- envs ------------------------------------------------------------------------------

@app.command()
def envs(
    family: Optional[str] = typer.Option(None, help="Only this family: mpe, overcooked, smax, mabrax, commons, poly."),
    specs: bool = typer.Option(True, "--specs/--no-specs", help="Build each environment to show its spec."),
    as_json: bool = JSON_OPTION,
):
    """List the registered environments and their specs."""
    from teamsift import envs as registry

    rows = []
    for item in registry.list_envs(family):
        row = {"env_id": item.env_id, "family": item.family, "description": item.description}
        if specs:
            spec = registry.make(item.env_id).spec
            row.update(
                agents=spec.num_agents, agent_types=sorted(set(spec.agent_types)), obs_dim=spec.obs_dim,
                state_dim=spec.state_dim, actions=("discrete " if spec.discrete else "continuous ") + str(spec.num_actions),
                episode_length=spec.episode_length, scores=list(spec.scores),
                partially_observable=spec.partially_observable,
            )
        rows.append(row)

    def render(payload):
        from rich.console import Console
        from rich.table import Table

        table = Table(title="teamsift environments")
        if not specs:
            for column in ("env_id", "family", "description"):
                table.add_column(column, no_wrap=column == "env_id")
            for row in payload["envs"]:
                table.add_row(row["env_id"], row["family"], row["description"])
        else:
            for column in ("env_id", "A", "agent types", "obs", "state", "actions", "T", "scores"):
                table.add_column(column, no_wrap=column in ("env_id", "actions"))
            for row in payload["envs"]:
                table.add_row(row["env_id"], str(row["agents"]), ", ".join(row["agent_types"]), str(row["obs_dim"]),
                              str(row["state_dim"]), row["actions"], str(row["episode_length"]),
                              ", ".join(row["scores"]))
        Console().print(table)

    emit({"envs": rows}, as_json, render)


# --- generate ----------------------------------------------------------------------------

@app.command()
def generate(
    env_id: str = typer.Argument(..., help="Environment id (see `teamsift envs`)."),
    out: Path = typer.Argument(..., help="Output dataset directory."),
    episodes: Optional[int] = typer.Option(None, "--episodes", "-n", min=1,
                                           help="Number of episodes (default 1000; with --population: see --appearances)."),
    policy: str = typer.Option("random", help=(
        "Behaviour: 'random', 'scripted:<rule>' or a policy file. A comma-separated list gives one "
        "behaviour per slot (as many as agents), or with --mix the candidates each slot draws from.")),
    mix: bool = typer.Option(False, help="Each episode, each slot draws its behaviour uniformly from --policy."),
    spec: Optional[str] = typer.Option(None, help="Composition spec over pools, e.g. \"50%[r,r,m] + 50%[r,r,r]\"."),
    population: Optional[int] = typer.Option(None, min=1, help="Population size: groups are drawn from P individuals."),
    group_size: Optional[int] = typer.Option(None, min=1, help="Group size K (commons: any; else the env's agents)."),
    appearances: Optional[int] = typer.Option(None, min=1, help="Each individual plays exactly this many episodes."),
    levels: str = typer.Option("r,m,e", help="Population from pools: levels given to individuals in turn."),
    kinds: str = typer.Option("sustainable,adaptive,greedy,erratic", help="commons population: scripted kinds in turn."),
    anonymise: bool = typer.Option(False, help="Population: one-time agent ids (true ids kept in policy_ids)."),
    pools_dir: Optional[Path] = typer.Option(None, "--pools", help="Pools directory (default ./pools or $TEAMSIFT_POOLS)."),
    seed: int = typer.Option(0, help="Seed of every random choice."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset at OUT."),
    as_json: bool = JSON_OPTION,
):
    """Generate a dataset: behaviour policies per slot, a composition spec over pools, or a population."""
    from teamsift.collect import composition
    from teamsift.data import load_dataset, summarize

    if sum(x is not None for x in (spec, population)) > 1:
        fail("give at most one of --spec and --population")
    if out.exists() and not overwrite:
        fail(f"{out} already exists; pass --overwrite to replace it")
    key = _key(seed)
    try:
        if spec is not None:
            path = _generate_spec(env_id, out, spec, episodes or 1000, pools_dir, key, overwrite, as_json)
        elif population is not None:
            path = _generate_population(env_id, out, population, group_size, episodes, appearances, levels, kinds,
                                        anonymise, pools_dir, key, overwrite, as_json)
        else:
            path = _generate_behaviours(env_id, out, episodes or 1000, policy, mix, key, overwrite, as_json)
    except (KeyError, ValueError, composition.SpecError) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    summary = summarize(load_dataset(path))
    emit({"dataset": str(path), **summary}, as_json,
         lambda p: STDERR.print(f"wrote {p['dataset']}: {p['episodes']} episodes, {p['steps']} steps, "
                                f"mean return {p['return']['mean']:.3f}"))


def _make_env(env_id: str, **kwargs):
    from teamsift import envs as registry

    try:
        return registry.make(env_id, **kwargs)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def _load_env_pools(env_id: str, pools_dir):
    from teamsift.collect.pools import load_pools

    pools = load_pools(env_id, pools_dir)
    return _make_env(env_id, **pools.env_kwargs), pools


def _generate_spec(env_id, out, spec, episodes, pools_dir, key, overwrite, as_json):
    from teamsift.collect import composition
    from teamsift.collect.datasets import generate_from_spec

    parsed = composition.parse(spec, _make_env(env_id).spec.num_agents)  # refuse bad specs before any work
    env, pools = _load_env_pools(env_id, pools_dir)
    pools.require({level for term in parsed.levels for level in term})
    return generate_from_spec(env, pools, parsed, episodes, key, out, overwrite=overwrite, progress=not as_json)


def _generate_population(env_id, out, population, group_size, episodes, appearances, levels, kinds, anonymise,
                         pools_dir, key, overwrite, as_json):
    import jax

    from teamsift.collect import composition
    from teamsift.collect.datasets import generate_population, pool_population, scripted_population

    if (episodes is None) == (appearances is None):
        raise ValueError("--population needs exactly one of --episodes (random groups) and --appearances")
    if env_id == "commons":
        env = _make_env(env_id, **({"num_agents": group_size} if group_size else {}))
        bank, policy, individual_level = scripted_population(env, population, [k.strip() for k in kinds.split(",")])
        provenance = {"individuals": "scripted commons kinds"}
    else:
        env, pools = _load_env_pools(env_id, pools_dir)
        if group_size not in (None, env.spec.num_agents):
            raise ValueError(f"--group-size: {env_id} has {env.spec.num_agents} agents; groups must be that size")
        level_names = [composition.parse(f"[{level}]", 1).levels[0][0] for level in levels.split(",")]
        bank, policy, individual_level = pool_population(pools, population, jax.random.fold_in(key, 7), level_names)
        provenance = {"individuals": "checkpoints drawn from pools", "policy_of_individual": list(map(int, policy))}
    return generate_population(env, bank, policy, individual_level, key, out, num_episodes=episodes,
                               appearances=appearances, anonymise=anonymise, overwrite=overwrite,
                               progress=not as_json, provenance=provenance)


def _generate_behaviours(env_id, out, episodes, policy, mix, key, overwrite, as_json):
    import jax
    import numpy as np

    from teamsift.collect import behaviours
    from teamsift.collect.rollouts import collect
    from teamsift.nets.policy import PolicyBank

    env = _make_env(env_id)
    tokens = [t for t in policy.split(",") if t.strip()]
    num_agents = env.spec.num_agents
    if not mix and len(tokens) not in (1, num_agents):
        raise ValueError(f"--policy: give 1 behaviour or {num_agents} (one per slot of {env_id}), got {len(tokens)}")
    resolved = [behaviours.resolve(t, env) for t in tokens]
    labels = [label for _, label in resolved]
    if mix:
        assignment = np.asarray(jax.random.randint(jax.random.fold_in(key, 1), (episodes, num_agents), 0, len(tokens)))
    elif len(tokens) == 1:
        assignment = np.zeros((episodes, num_agents), np.int32)
    else:
        assignment = np.tile(np.arange(num_agents, dtype=np.int32), (episodes, 1))
    behaviour = np.asarray(labels, dtype=str)[assignment]
    provenance = {"command": "generate", "policy": policy, "mix": mix, "episodes": episodes}
    return collect(env, PolicyBank(tuple(p for p, _ in resolved)), jax.random.fold_in(key, 2), episodes, out,
                   assignment=assignment, behaviour=behaviour, policy_ids=behaviour, provenance=provenance,
                   overwrite=overwrite, progress=not as_json)


# --- pools -------------------------------------------------------------------------------

pools_app = typer.Typer(no_args_is_help=True, help="Behaviour-policy pools: random / medium / expert checkpoints.")
app.add_typer(pools_app, name="pools")


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


@pools_app.command("train")
def pools_train(
    env_id: str = typer.Argument(..., help="Environment id."),
    pools_dir: Optional[Path] = typer.Option(None, "--dir", help="Pools directory (default ./pools or $TEAMSIFT_POOLS)."),
    timesteps: Optional[int] = typer.Option(None, help="Environment steps of training (default: tuned per env)."),
    checkpoints: int = typer.Option(41, min=2, help="Checkpoints kept, evenly spaced (the untrained one included)."),
    eval_episodes: int = typer.Option(100, min=2, help="Episodes to evaluate each checkpoint."),
    cuts: Optional[str] = typer.Option(None, help="Explicit return cuts 'LOW,HIGH' instead of SIT's thirds."),
    seed: int = typer.Option(0),
    as_json: bool = JSON_OPTION,
):
    """Train MAPPO on ENV, checkpoint it, evaluate every checkpoint and sort them into pools."""
    import dataclasses

    from teamsift.collect import ppo
    from teamsift.collect.pools import save_pools, train_pools
    from teamsift.collect.suites import ENV_KWARGS

    env = _make_env_or_fail(env_id, **ENV_KWARGS.get(env_id, {}))
    config = ppo.config_for(env_id)
    if timesteps is not None:
        config = dataclasses.replace(config, total_timesteps=timesteps)
    config = dataclasses.replace(config, num_checkpoints=checkpoints)
    pools = train_pools(env, _key(seed), config=config, episodes=eval_episodes, cuts=_parse_cuts(cuts),
                        progress=not as_json)
    pools.info["seed"] = seed
    directory = save_pools(pools, pools_dir)
    emit({"dir": str(directory), **pools.summary()}, as_json, _render_pools)


@pools_app.command("list")
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


@pools_app.command("cut")
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


def _make_env_or_fail(env_id: str, **kwargs):
    try:
        return _make_env(env_id, **kwargs)
    except ValueError as exc:
        fail(str(exc))


# --- suites ------------------------------------------------------------------------------

@app.command()
def suite(
    name: str = typer.Argument(..., help="'sit' (SIT Tables 7-9: low/medium quality) or 'expert' (imitation)."),
    out: Path = typer.Option(Path("datasets"), help="Directory that receives one dataset per entry."),
    only: Optional[str] = typer.Option(None, "--envs", help="Comma-separated subset of the suite's environments."),
    episodes: Optional[int] = typer.Option(None, min=1, help="Episodes per dataset (sit: 10000)."),
    transitions: Optional[int] = typer.Option(None, min=1, help="Transitions per expert dataset (expert: 100000)."),
    pools_dir: Optional[Path] = typer.Option(None, "--pools"),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False),
    as_json: bool = JSON_OPTION,
):
    """Build a ready-made suite of datasets from the pools (environments without pools are listed)."""
    from teamsift.collect.suites import SIT_SUITE, EXPERT_SUITE, SIT_EPISODES, EXPERT_TRANSITIONS
    from teamsift.collect.pools import PoolError
    from teamsift.collect.datasets import expert_dataset, generate_from_spec
    from teamsift.data import load_dataset, summarize

    suites = {"sit": SIT_SUITE, "expert": EXPERT_SUITE}
    if name not in suites:
        fail(f"unknown suite {name!r}; expected one of {', '.join(suites)}")
    entries = suites[name]
    selected = [e.strip() for e in only.split(",")] if only else list(entries)
    unknown = [e for e in selected if e not in entries]
    if unknown:
        fail(f"--envs: {unknown} not in suite {name!r} ({', '.join(entries)})")
    made, missing = {}, {}
    for index, env_id in enumerate(selected):
        try:
            env, pools = _load_env_pools(env_id, pools_dir)
        except PoolError as exc:
            missing[env_id] = str(exc)
            continue
        key = _key(seed + index)
        if name == "sit":
            for quality, spec in entries[env_id].items():
                target = out / f"{env_id}-{quality}"
                if target.exists() and not overwrite:
                    fail(f"{target} already exists; pass --overwrite to replace it")
                path = generate_from_spec(env, pools, spec, episodes or SIT_EPISODES, key, target, overwrite=overwrite,
                                          progress=not as_json)
                made[f"{env_id}-{quality}"] = {"spec": spec, **_brief(summarize(load_dataset(path)))}
        else:
            target = out / f"{env_id}-expert"
            path = expert_dataset(env, pools, transitions or EXPERT_TRANSITIONS, key, target, overwrite=overwrite,
                                  progress=not as_json)
            made[f"{env_id}-expert"] = {"spec": entries[env_id], **_brief(summarize(load_dataset(path)))}
    emit({"suite": name, "datasets": made, "missing_pools": missing}, as_json, _render_suite)


def _brief(summary: dict) -> dict:
    return {"dataset": summary["path"], "episodes": summary["episodes"], "steps": summary["steps"],
            "return_mean": summary["return"]["mean"]}


def _render_suite(payload: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"suite {payload['suite']}")
    for column in ("dataset", "composition", "episodes", "transitions", "mean return"):
        table.add_column(column)
    for name, row in payload["datasets"].items():
        table.add_row(row["dataset"], escape(row["spec"]), str(row["episodes"]), str(row["steps"]), f"{row['return_mean']:.2f}")
    Console().print(table)
    for env_id, why in payload["missing_pools"].items():
        STDERR.print(f"[yellow]skipped {env_id}:[/] {why}")


# --- import ------------------------------------------------------------------------------

@import_app.command("npz")
def import_npz_cmd(
    file: Path = typer.Argument(..., help="NumPy archive with keys obs, actions, reward, episode_lengths, ..."),
    out: Path = typer.Argument(..., help="Output dataset directory."),
    env_id: Optional[str] = typer.Option(None, "--env", help="Check the arrays against this environment's spec."),
    discount: float = typer.Option(0.99),
    overwrite: bool = typer.Option(False),
    as_json: bool = JSON_OPTION,
):
    """Build a dataset from a .npz archive (keys documented in `teamsift.data.import_npz`)."""
    from teamsift.data import DatasetError, import_npz, load_dataset, summarize

    try:
        path = import_npz(file, out, env_id=env_id, discount=discount, overwrite=overwrite)
    except DatasetError as exc:
        fail(str(exc))
    summary = summarize(load_dataset(path))
    emit({"dataset": str(path), **summary}, as_json,
         lambda p: STDERR.print(f"imported {p['episodes']} episodes ({p['steps']} steps) into {p['dataset']}"))


@import_app.command("vault")
def import_vault_cmd(
    vault: Path = typer.Argument(..., help="An OG-MARL / flashbax Vault directory."),
    out: Path = typer.Argument(..., help="Output dataset directory."),
    uid: Optional[str] = typer.Option(None, help="Vault uid (sub-directory) if there are several."),
    overwrite: bool = typer.Option(False),
    as_json: bool = JSON_OPTION,
):
    """Convert an OG-MARL / flashbax Vault (read with tensorstore) into a dataset."""
    from teamsift.data import DatasetError, import_vault, load_dataset, summarize

    try:
        path = import_vault(vault, out, vault_uid=uid, overwrite=overwrite)
    except DatasetError as exc:
        fail(str(exc))
    summary = summarize(load_dataset(path))
    emit({"dataset": str(path), **summary}, as_json,
         lambda p: STDERR.print(f"imported {p['episodes']} episodes ({p['steps']} steps) into {p['dataset']}"))


@import_app.command("overcooked-human")
def import_overcooked_human_cmd(
    out: Path = typer.Argument(..., help="Output dataset directory."),
    layout: str = typer.Option(..., help="cramped_room, asymmetric_advantages, coordination_ring, "
                                         "forced_coordination or counter_circuit."),
    split: str = typer.Option("train", help="train or test."),
    horizon: Optional[int] = typer.Option(None, help="Cut every game to its first HORIZON steps."),
    lenient: bool = typer.Option(False, help="Record replay mismatches instead of failing on the first."),
    overwrite: bool = typer.Option(False),
    as_json: bool = JSON_OPTION,
):
    """The human–human Overcooked trials of Carroll et al. (2019), shipped with overcooked-ai,
    replayed through the JaxMARL environment: one-time agent ids, the game score as DVF."""
    from teamsift.data import DatasetError, import_overcooked_human, load_dataset, summarize

    try:
        path = import_overcooked_human(layout, split, out, horizon=horizon, overwrite=overwrite,
                                       progress=not as_json, strict=not lenient)
    except (DatasetError, ImportError, ValueError) as exc:
        fail(str(exc))
    summary = summarize(load_dataset(path))
    emit({"dataset": str(path), **summary}, as_json,
         lambda p: STDERR.print(f"imported {p['episodes']} human games ({p['steps']} steps) into {p['dataset']}"))


# --- value -------------------------------------------------------------------------------

@app.command()
def value(
    dataset: Path = typer.Argument(..., help="Dataset directory."),
    method: str = typer.Option("ev", help="ev | ev-cluster | shapley | ardnem."),
    score: Optional[str] = typer.Option(None, help="The episode score (DVF) to value by (default: team return)."),
    clusters: Optional[int] = typer.Option(None, help="ev-cluster: number of clusters (default: chosen by "
                                                      "held-out error)."),
    permutations: int = typer.Option(200, min=1, help="shapley: sampled permutations."),
    updates: Optional[int] = typer.Option(None, min=1, help="ardnem: training updates (default: SIT's 20000)."),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", min=0.0,
                                                  help="ardnem: learning rate (default: SIT's 1e-4)."),
    ensemble: Optional[int] = typer.Option(None, min=1, help="ardnem: ensemble size M (default 5; 1 = w/o "
                                                             "ensemble)."),
    no_attention: bool = typer.Option(False, "--no-attention", help="ardnem: the 'w/o attention' ablation."),
    plots: Optional[Path] = typer.Option(None, help="Directory for plots (default: DATASET/value-<method>)."),
    seed: int = typer.Option(0),
    top: int = typer.Option(20, help="Rows shown in the table (all rows go to --json)."),
    as_json: bool = JSON_OPTION,
):
    """Value every individual (or slot) of a dataset, with uncertainty, and plot it.

    Where the dataset carries ground truth (behaviour levels), the report includes the
    mean value per level, the Spearman correlation with the level and the expert-vs-random AUC."""
    from teamsift.data import DatasetError, load_dataset
    from teamsift.value.report import plot_values, value_dataset

    ardnem_options = {}
    if method == "ardnem":
        ardnem_options = {name: value for name, value in (("num_updates", updates), ("ensemble_size", ensemble),
                                                                 ("learning_rate", learning_rate))
                          if value is not None}
        if no_attention:
            ardnem_options["attention"] = False
    out_dir = plots or (Path(dataset) / f"value-{method}")
    try:
        ds = load_dataset(dataset)
        report = value_dataset(ds, method, _key(seed), score=score, num_clusters=clusters,
                               permutations=permutations, progress=not as_json, out_dir=out_dir,
                               **ardnem_options)
    except (DatasetError, ValueError, KeyError) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    report["plots"] = [str(p) for p in plot_values(report, out_dir)] + report.pop("extra_plots", [])
    emit(report, as_json, lambda r: _render_values(r, top))


def _render_values(report: dict, top: int) -> None:
    from rich.table import Table

    rows = report.get("table", [])
    table = Table(title=f"{report['method']} on {report['dataset']} (score: {report['score']})")
    for column in ("rank", "id", "value", "stderr", "count", "true_level"):
        table.add_column(column)
    for row in rows[:top]:
        table.add_row(*[("—" if row.get(c) is None else f"{row[c]:.3f}" if isinstance(row[c], float) else
                         str(row[c])) for c in ("rank", "id", "value", "stderr", "count", "true_level")])
    STDERR.print(table)
    if len(rows) > top:
        STDERR.print(f"… {len(rows) - top} more rows (--top, or --json for all)")
    for name, stats in report.get("accuracy", {}).get("per_level", {}).items():
        STDERR.print(f"  {name}: mean value {stats['mean_value']:.3f} over {stats['individuals']}")
    accuracy = report.get("accuracy", {})
    if "spearman" in accuracy:
        STDERR.print(f"  Spearman vs true level {accuracy['spearman']:.3f}"
                     + (f", AUC expert vs random {accuracy['auc_expert_vs_random']:.3f}"
                        if "auc_expert_vs_random" in accuracy else ""))
    trajectories = report.get("trajectory_accuracy", {})
    if "spearman" in trajectories:
        STDERR.print(f"  per trajectory: Spearman vs true level {trajectories['spearman']:.3f}"
                     + (f", AUC expert vs random {trajectories['auc_expert_vs_random']:.3f}"
                        if "auc_expert_vs_random" in trajectories else ""))
    for path in report.get("plots", []):
        STDERR.print(f"  plot: {path}")


# --- inspect -----------------------------------------------------------------------------

@app.command()
def inspect(
    dataset: Path = typer.Argument(..., help="Dataset directory."),
    plot: Optional[Path] = typer.Option(None, help="Where to write the summary plot (default DATASET/summary.png)."),
    as_json: bool = JSON_OPTION,
):
    """Summarise a dataset: episodes, steps, agents, return and score distributions, per composition."""
    from teamsift.data import DatasetError, load_dataset, plot_summary, summarize

    try:
        ds = load_dataset(dataset)
    except DatasetError as exc:
        fail(str(exc))
    summary = summarize(ds)
    plot_path = plot or (Path(dataset) / "summary.png")
    try:
        plot_summary(ds, plot_path)
        summary["plot"] = str(plot_path)
    except OSError as exc:  # read-only dataset directory: the summary still stands
        STDERR.print(f"[yellow]could not write plot {plot_path}: {exc}[/]")
    emit(summary, as_json, _render_summary)


def _render_summary(summary: dict, max_rows: int = 20) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{summary.get('env_id')}[/]: {summary['episodes']} episodes, {summary['steps']} steps, "
                  f"{summary['agents']} agents ({', '.join(sorted(set(summary['agent_types'])))}), "
                  f"{summary.get('distinct_agent_ids', '?')} distinct agent ids")
    table = Table(title="team return and scores")
    for column in ("score", "mean", "std", "min", "median", "max"):
        table.add_column(column, justify="right" if column != "score" else "left")
    rows = {"return": summary["return"], **summary.get("scores", {})}
    for name, stats in rows.items():
        table.add_row(name, *(f"{v:.3f}" for v in (stats["mean"], stats["std"], stats["min"],
                                                     stats["quantiles"]["0.5"], stats["max"])))
    console.print(table)
    compositions = (summary.get("behaviour") or {}).get("compositions") or {}
    if compositions:
        ordered = sorted(compositions.items(), key=lambda item: -item[1]["count"])
        table = Table(title=f"per behaviour composition ({len(ordered)} compositions"
                            + (f", {max_rows} most frequent shown" if len(ordered) > max_rows else "") + ")")
        for column in ("composition", "episodes", "mean return", "std"):
            table.add_column(column, justify="left" if column == "composition" else "right")
        for name, stats in ordered[:max_rows]:
            table.add_row(name, str(stats["count"]), f"{stats['return_mean']:.3f}", f"{stats['return_std']:.3f}")
        console.print(table)
        abbreviations = (summary.get("behaviour") or {}).get("abbreviations") or {}
        if abbreviations:
            console.print("levels: " + ", ".join(f"{short} = {name}" for name, short in abbreviations.items()))
    if "plot" in summary:
        console.print(f"plot: {summary['plot']}")


# --- train / eval ------------------------------------------------------------------------

ALGOS = ("bc", "ev2bc", "group_bc", "icq", "mabcq", "macql", "sit", "td3bc", "omar", "maddpg_cql")
# Offline RL learners: module name -> config class name (defaults are the papers').
OFFLINE_ALGOS = {"icq": "ICQConfig", "mabcq": "MABCQConfig", "macql": "MACQLConfig", "sit": "SITConfig",
                 "td3bc": "TD3BCConfig", "omar": "OMARConfig", "maddpg_cql": "MADDPGCQLConfig"}


@app.command()
def train(
    dataset: Path = typer.Argument(..., help="Dataset directory."),
    algo: str = typer.Option("bc", help=f"Learner: {', '.join(ALGOS)}."),
    out: Path = typer.Option(Path("policy.msgpack"), help="Where to save the policy (seed 0 when --seeds > 1)."),
    updates: Optional[int] = typer.Option(None, help="Number of updates (default: the paper's)."),
    seeds: int = typer.Option(1, min=1, help="Seeds trained together as one vmapped program."),
    seed: int = typer.Option(0),
    recurrent: Optional[bool] = typer.Option(None, "--gru/--mlp",
                                             help="Agent network (default: GRU if partially observable and discrete)."),
    eval_episodes: int = typer.Option(100, help="Evaluate each seed in the environment afterwards (0: skip)."),
    score: Optional[str] = typer.Option(None, help="ev2bc/group_bc: the episode score (DVF) to select by "
                                                   "(default: the team return)."),
    valuation: str = typer.Option("ev", help="ev2bc: 'ev' (per individual) or 'ev-cluster' (anonymised data)."),
    rule: str = typer.Option("threshold", help="ev2bc: threshold | top_fraction | weighted."),
    threshold: float = typer.Option(0.0, help="ev2bc: keep individuals whose EV is above this."),
    fraction: float = typer.Option(0.5, help="ev2bc top_fraction / group_bc: the fraction kept."),
    per_slot: bool = typer.Option(False, "--per-slot", help="ev2bc: apply the rule within each slot (role), to "
                                                           "values centred on the slot's mean."),
    overrides: Optional[list[str]] = typer.Option(
        None, "--set", help="Set a field of the learner's config, FIELD=VALUE (repeatable; nested with dots), "
                            "e.g. --set beta=1 --set dper.alpha=2 for SIT; BC's config for bc, ev2bc, group_bc."),
    as_json: bool = JSON_OPTION,
):
    """Train a policy on a dataset, save it, and evaluate it in the dataset's environment."""
    import dataclasses

    from teamsift import envs as registry
    from teamsift.algos import bc
    from teamsift.algos.common import parse_assignment, policy_for_seed, with_overrides
    from teamsift.data import DatasetError, load_dataset
    from teamsift.evaluate import evaluate
    from teamsift.nets import save_policy

    if algo not in ALGOS:
        fail(f"--algo: expected one of {', '.join(ALGOS)}, got {algo!r}")
    try:
        ds = load_dataset(dataset)
    except DatasetError as exc:
        fail(str(exc))
    config = bc.BCConfig()
    if updates is not None:
        config = dataclasses.replace(config, num_updates=updates)
    if recurrent is not None:
        config = dataclasses.replace(config, recurrent=recurrent)
    try:
        assignments = dict(parse_assignment(text) for text in overrides or [])
        if algo not in OFFLINE_ALGOS:
            config = with_overrides(config, assignments)
        policy, logs = _train_algo(algo, config, ds, _key(seed), seeds, not as_json, score=score,
                                   valuation=valuation, rule=rule, threshold=threshold, fraction=fraction,
                                   per_slot=per_slot, updates=updates, overrides=assignments)
    except ValueError as exc:
        fail(str(exc))
    per_seed = [policy_for_seed(policy, s) for s in range(seeds)] if seeds > 1 else [policy]
    extra = {"algo": algo, "dataset": str(dataset), "seed": seed, "env_kwargs": ds.meta.get("env_kwargs", {})}
    if algo == "mabcq":
        from teamsift.algos.mabcq import policy_extra

        extra.update(policy_extra(per_seed[0]))
    saved = save_policy(per_seed[0], out, spec=ds.spec, extra=extra)
    result = {"algo": algo, "policy": str(saved), "dataset": str(dataset),
              "updates": logs.get("config", {}).get("num_updates", config.num_updates),
              "seeds": seeds, "final_loss": [float(x) for x in logs["loss"][:, -1]]}
    if "kept_fraction" in logs:
        result["kept_fraction"] = logs["kept_fraction"]
    if "values" in logs:
        result["values"] = logs["values"]
    if eval_episodes > 0 and ds.meta.get("env_id") in {e.env_id for e in registry.list_envs()}:
        env = registry.make(ds.meta["env_id"], **ds.meta.get("env_kwargs", {}))
        evals = [evaluate(env, p, _key(seed + 1000 + s), eval_episodes) for s, p in enumerate(per_seed)]
        result["eval"] = [e.to_dict() for e in evals]
        means = [e.team_return.mean for e in evals]
        result["return_mean_over_seeds"] = float(sum(means) / len(means))
    emit(result, as_json, lambda r: STDERR.print(
        f"saved {r['policy']}; final loss {r['final_loss']}"
        + (f"; return per seed {[round(e['scores']['return']['mean'], 3) for e in r['eval']]}" if "eval" in r else "")))


def _train_algo(algo: str, bc_config, ds, key, seeds: int, progress: bool, **options):
    """Dispatch `teamsift train --algo`: BC and its filtered variants share one BCConfig."""
    from teamsift.algos import bc, ev2bc, group_bc

    if algo == "bc":
        return bc.train(bc_config, ds, key, num_seeds=seeds, progress=progress)
    if algo in OFFLINE_ALGOS:
        import dataclasses
        import importlib

        import numpy as np

        from teamsift.algos.common import with_overrides

        module = importlib.import_module(f"teamsift.algos.{algo}")
        config = getattr(module, OFFLINE_ALGOS[algo])()
        if options.get("updates") is not None:
            config = dataclasses.replace(config, num_updates=options["updates"],
                                         log_every=max(1, min(config.log_every, options["updates"])))
        config = with_overrides(config, options.get("overrides") or {})
        policy, logs = module.train(config, ds, key, num_seeds=seeds, progress=progress)
        loss = np.asarray(logs["loss"])
        logs["loss"] = loss.reshape(seeds, -1) if loss.ndim != 2 else loss
        return policy, logs
    if algo == "ev2bc":
        config = ev2bc.EV2BCConfig(bc=bc_config, valuation=options["valuation"], score=options["score"],
                                   rule=options["rule"], threshold=options["threshold"],
                                   fraction=options["fraction"], per_slot=options["per_slot"])
        return ev2bc.train(config, ds, key, num_seeds=seeds, progress=progress)
    if algo == "group_bc":
        config = group_bc.GroupBCConfig(bc=bc_config, score=options["score"], fraction=options["fraction"])
        return group_bc.train(config, ds, key, num_seeds=seeds, progress=progress)
    raise ValueError(f"--algo: expected one of {', '.join(ALGOS)}, got {algo!r}")


IMITATORS = ("magail", "mild2", "mild2_gd")


@app.command()
def imitate(
    dataset: Path = typer.Argument(..., help="Expert dataset directory (e.g. from `teamsift suite expert`)."),
    algo: str = typer.Option("mild2", help=f"Adversarial imitation learner: {', '.join(IMITATORS)}."),
    out: Path = typer.Option(Path("policy.msgpack"), help="Where to save the generator policy (seed 0)."),
    timesteps: Optional[int] = typer.Option(None, min=1, help="Environment steps (default: the env's MAPPO budget)."),
    seeds: int = typer.Option(1, min=1, help="Seeds trained together as one vmapped program."),
    seed: int = typer.Option(0),
    centralised: bool = typer.Option(False, "--centralised", help="magail: one centralised discriminator."),
    bc_warm_start: bool = typer.Option(False, "--bc-warm-start", help="magail: start the generator from BC."),
    eval_episodes: int = typer.Option(100, help="Evaluate each seed in the environment afterwards (0: skip)."),
    as_json: bool = JSON_OPTION,
):
    """Imitate expert demonstrations by interacting with the dataset's environment
    (MAGAIL, MILD², MILD²-GD); prints the discriminator diagnostics and the evaluated return."""
    import numpy as np

    from teamsift import envs as registry
    from teamsift.data import DatasetError, load_dataset
    from teamsift.evaluate import evaluate

    if algo not in IMITATORS:
        fail(f"--algo: expected one of {', '.join(IMITATORS)}, got {algo!r}")
    try:
        ds = load_dataset(dataset)
    except DatasetError as exc:
        fail(str(exc))
    env_id = ds.meta.get("env_id")
    if env_id not in {e.env_id for e in registry.list_envs()}:
        fail(f"{dataset}/meta.json: field 'env_id' must name a registered environment to interact with, "
             f"found {env_id!r}")
    env = registry.make(env_id, **ds.meta.get("env_kwargs", {}))
    from teamsift.collect import ppo

    # MAGAIL and MILD² get the same env steps: --timesteps, else the env's MAPPO budget
    budget = {"total_timesteps": int(timesteps or ppo.config_for(env_id).total_timesteps)}
    try:
        if algo == "magail":
            from teamsift.algos import magail

            config = magail.config_for(env_id, generator=budget, centralised=centralised, bc_warm_start=bc_warm_start)
            result = magail.train(config, ds, env, _key(seed), progress=not as_json, num_seeds=seeds)
        else:
            from teamsift.algos import mild2

            config = mild2.config_for(generator=budget, global_dependencies=(algo == "mild2"))
            result = mild2.train(config, ds, env, _key(seed), progress=not as_json, num_seeds=seeds)
    except ValueError as exc:
        fail(str(exc))
    policies = [result.policy(-1, seed=s if seeds > 1 else None, deterministic=False) for s in range(seeds)]
    saved = _save_generator(policies[0], out, ds, {"algo": algo, "dataset": str(dataset), "seed": seed,
                                                   "env_kwargs": ds.meta.get("env_kwargs", {})})
    logs = result.logs
    pick = (lambda x: np.asarray(x)[0]) if seeds > 1 else np.asarray
    payload = {"algo": algo, "policy": str(saved), "dataset": str(dataset), "seeds": seeds,
               "env_steps": int(np.asarray(result.checkpoint_steps)[-1]), "wall_seconds": float(result.wall_time),
               "final_disc_loss": float(pick(logs["disc_loss"])[-1]),
               "generator_reward_var_first_last": [float(pick(logs["generator_reward_var"])[0]),
                                                   float(pick(logs["generator_reward_var"])[-1])]}
    if eval_episodes > 0:
        evals = [evaluate(env, p, _key(seed + 1000 + s), eval_episodes) for s, p in enumerate(policies)]
        payload["eval"] = [e.to_dict() for e in evals]
        payload["return_per_seed"] = [float(e.team_return.mean) for e in evals]
    emit(payload, as_json, lambda r: STDERR.print(
        f"saved {r['policy']}; {r['env_steps']:,} env steps in {r['wall_seconds']:.0f} s; final disc loss "
        f"{r['final_disc_loss']:.3f}" + (f"; return per seed {[round(x, 2) for x in r['return_per_seed']]}"
                                         if "return_per_seed" in r else "")))


def _save_generator(policy, out: Path, ds, extra: dict) -> Path:
    """MAPPO generators are NetworkPolicies; MILD²'s MAT generator has its own writer."""
    from teamsift.nets import NetworkPolicy, save_policy

    if isinstance(policy, NetworkPolicy):
        return save_policy(policy, out, spec=ds.spec, extra=extra)
    from teamsift.nets.mat import save_mat_policy

    return save_mat_policy(policy, out, spec=ds.spec, extra=extra)


@app.command("eval")
def eval_cmd(
    policy: str = typer.Argument(..., help="Policy file, or 'random' / 'scripted:<rule>'."),
    env_id: Optional[str] = typer.Option(None, "--env", help="Environment (default: the one the policy was trained on)."),
    episodes: int = typer.Option(100, min=1),
    seed: int = typer.Option(0),
    as_json: bool = JSON_OPTION,
):
    """Evaluate a policy: mean, std and 95% interval of the team return and every score."""
    from teamsift import envs as registry
    from teamsift.collect import behaviours
    from teamsift.evaluate import evaluate
    from teamsift.nets import PolicyFileError, load_policy

    env_kwargs = {}
    if env_id is None:
        if policy == "random" or policy.startswith("scripted:"):
            fail("--env is required for 'random' and scripted policies")
        try:
            _, header = load_policy(policy)
        except PolicyFileError as exc:
            fail(str(exc))
        env_id = (header.get("spec") or {}).get("env_id")
        env_kwargs = header.get("extra", {}).get("env_kwargs", {})
        if env_id is None:
            fail(f"{policy}: the policy does not record its environment; pass --env")
    try:
        env = registry.make(env_id, **env_kwargs)
        resolved, _ = behaviours.resolve(policy, env)
    except (KeyError, ValueError, PolicyFileError) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    result = evaluate(env, resolved, _key(seed), episodes)
    emit(result.to_dict(), as_json, lambda r: [STDERR.print(f"{name}: {summary}") for name, summary in result.scores.items()])


# --- demo --------------------------------------------------------------------------------

# --- benchmarks ----------------------------------------------------------------------------

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks of the papers' tables on our environments.")
app.add_typer(bench_app, name="bench")


@bench_app.command("sit")
def bench_sit(
    envs: Optional[str] = typer.Option(None, help="Comma-separated environments (default: the table's five)."),
    quality: str = typer.Option("low,medium", help="Dataset qualities: low, medium or both."),
    study: str = typer.Option("table", help="Comma-separated studies: table, ablations, stress, sweep, pjap."),
    stress_env: str = typer.Option("smax_2s3z", help="The map of the stress study (SIT Figure 4(b, c): 2s3z)."),
    methods: Optional[str] = typer.Option(None, help="Comma-separated methods to (re)run, e.g. 'SIT,SIT*' "
                                                     "(default: every method of each study)."),
    name: str = typer.Option("sit", help="Result file stem: <name>-<device>.{json,md}."),
    episodes: int = typer.Option(10_000, min=1, help="Episodes per dataset (SIT: 10 000)."),
    seeds: int = typer.Option(5, min=1, help="Seeds per learner, trained as one vmapped program."),
    updates: Optional[int] = typer.Option(None, min=1, help="Updates of every learner (default: the papers')."),
    ardnem_updates: Optional[int] = typer.Option(None, min=1, help="SIT Stage I updates (default: 20 000)."),
    eval_episodes: int = typer.Option(100, min=1, help="Evaluation episodes per seed."),
    data_dir: Path = typer.Option(Path("datasets/bench-sit"), help="Where the generated datasets are cached."),
    pools_dir: Optional[Path] = typer.Option(None, "--pools"),
    out: Path = typer.Option(Path("benchmarks/results"), help="Directory for the result files."),
    seed: int = typer.Option(0),
    as_json: bool = JSON_OPTION,
):
    """SIT's Table 1 on our environments: Behavior, BC, MABCQ, MACQL, ICQ, SIT and SIT* (continuous:
    BC, TD3+BC, OMAR, MADDPG+CQL, SIT, SIT*), plus SIT's ablations, stress cases and α × β sweep."""
    from teamsift.bench import sit as sit_bench
    from teamsift.bench.machine import describe, machine

    try:
        config = sit_bench.SITBenchConfig(
            envs=tuple(e.strip() for e in envs.split(",")) if envs else sit_bench.TABLE_ENVS,
            qualities=tuple(q.strip() for q in quality.split(",")), episodes=episodes, num_seeds=seeds,
            updates=updates, ardnem_updates=ardnem_updates, eval_episodes=eval_episodes, data_dir=str(data_dir),
            pools_dir=str(pools_dir) if pools_dir else None, seed=seed, stress_env=stress_env)
        studies = tuple(s.strip() for s in study.split(","))
        info = machine()
        report = sit_bench.run(config, studies, progress=not as_json, machine=describe(info),
                               command="teamsift bench sit " + " ".join(sys.argv[3:]), out_dir=out,
                               stem=f"{name}-{info['device'].split(':')[0]}",
                               methods=tuple(m.strip() for m in methods.split(",")) if methods else None)
    except ValueError as exc:
        fail(str(exc))
    emit(report, as_json, lambda r: STDERR.print(sit_bench.render(r)))


@bench_app.command("imitation")
def bench_imitation(
    envs: Optional[str] = typer.Option(None, help="Comma-separated environments (default: the expert suite's four)."),
    methods: Optional[str] = typer.Option(None, help="Comma-separated methods (default: all the action space allows)."),
    transitions: int = typer.Option(100_000, min=1, help="Expert transitions per dataset."),
    seeds: int = typer.Option(5, min=1, help="Seeds per method, trained as one vmapped program."),
    timesteps: Optional[int] = typer.Option(None, min=1, help="Env steps per adversarial run (default: the env's MAPPO budget)."),
    updates: Optional[int] = typer.Option(None, min=1, help="Updates of the offline learners (default: the papers')."),
    eval_episodes: int = typer.Option(100, min=1, help="Evaluation episodes per seed."),
    data_dir: Path = typer.Option(Path("datasets/bench-imitation"), help="Where the expert datasets are cached."),
    pools_dir: Optional[Path] = typer.Option(None, "--pools"),
    out: Path = typer.Option(Path("benchmarks/results"), help="Directory for imitation-<device>.{json,md} and plots."),
    seed: int = typer.Option(0),
    as_json: bool = JSON_OPTION,
):
    """MILD²'s table: MILD², MILD²-GD, MAGAIL, BC and offline baselines on the expert datasets."""
    from teamsift.bench import imitation
    from teamsift.bench.machine import describe, machine

    try:
        config = imitation.ImitationBenchConfig(
            envs=tuple(e.strip() for e in envs.split(",")) if envs else imitation.ImitationBenchConfig.envs,
            methods=tuple(m.strip() for m in methods.split(",")) if methods else None, transitions=transitions,
            num_seeds=seeds, timesteps=timesteps, updates=updates, eval_episodes=eval_episodes,
            data_dir=str(data_dir), pools_dir=str(pools_dir) if pools_dir else None, seed=seed)
        info = machine()
        report = imitation.run(config, progress=not as_json, machine=describe(info),
                               command="teamsift bench imitation " + " ".join(sys.argv[3:]), out_dir=out,
                               stem=f"imitation-{info['device'].split(':')[0]}")
    except ValueError as exc:
        fail(str(exc))
    emit(report, as_json, lambda r: STDERR.print(imitation.render(r)))


@bench_app.command("pjap")
def bench_pjap(
    quick: bool = typer.Option(False, help="One broad twin-peaks dataset, MADDPG vs MADDPG+PJAP."),
    updates: int = typer.Option(6000, min=1, help="Updates per polynomial-game run."),
    seeds: int = typer.Option(3, min=1, help="Seeds per polynomial-game run."),
    mabrax: bool = typer.Option(False, "--mabrax", help="Instead: MADDPG+CQL vs MADDPG+CQL+PJAP on halfcheetah_2x3 "
                                                        "datasets from the pools (pjap-mabrax-<device>.{json,md})."),
    mabrax_updates: int = typer.Option(20_000, min=1, help="--mabrax: updates per learner (paper: 500 000)."),
    mabrax_seeds: int = typer.Option(5, min=1, help="--mabrax: seeds, one vmapped program per learner."),
    episodes: int = typer.Option(2_000, min=1, help="--mabrax: episodes per dataset (200 steps each)."),
    data_dir: Path = typer.Option(Path("datasets/bench-sit"), help="--mabrax: where datasets are cached."),
    out: Path = typer.Option(Path("benchmarks/results"), help="Directory for the result files and plots."),
    as_json: bool = JSON_OPTION,
):
    """PJAP's polynomial games: MADDPG (BRUD) vs MADDPG+PJAP, with the trajectory plots; with
    --mabrax, MADDPG+CQL vs MADDPG+CQL+PJAP on MaBrax halfcheetah_2x3."""
    if mabrax:
        from teamsift.bench import sit as sit_bench
        from teamsift.bench.machine import describe, machine

        config = sit_bench.SITBenchConfig(envs=(sit_bench.PJAP_ENV,), episodes=episodes, num_seeds=mabrax_seeds,
                                          updates=mabrax_updates, data_dir=str(data_dir))
        info = machine()
        report = sit_bench.run(config, ("pjap",), progress=not as_json, machine=describe(info),
                               command="teamsift bench pjap " + " ".join(sys.argv[3:]), out_dir=out,
                               stem=f"pjap-mabrax-{info['device'].split(':')[0]}")
        emit(report, as_json, lambda r: STDERR.print(sit_bench.render(r)))
        return
    from teamsift.bench import poly

    report = poly.run_study(quick=quick, num_updates=updates, num_seeds=seeds, out_dir=out)
    emit(report, as_json, lambda r: STDERR.print(f"wrote {r['files']}"))


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), help="Working directory for the demo's files."),
    quick: bool = typer.Option(False, help="Smaller dataset and fewer updates (for tests)."),
    as_json: bool = JSON_OPTION,
):
    """A small end-to-end run: mixed-quality data → inspect → behaviour cloning → evaluation."""
    from teamsift.cli.demo import run_demo

    result = run_demo(out, quick=quick, progress=not as_json)
    emit(result, as_json, lambda r: None)


if __name__ == "__main__":
    app()
