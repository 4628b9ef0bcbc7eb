"""Data commands: environments, generating and importing datasets, inspecting them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from teamsift.cli.common import JSON_OPTION, check_output_dataset, emit, error_text, fail, key, load_dataset_or_fail
from teamsift.progress import STDERR

app = typer.Typer()
import_app = typer.Typer(no_args_is_help=True, help="Bring your own data: convert files into a teamsift dataset.")


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


@app.command()
def generate(
    env_id: str = typer.Argument(..., help="Environment id (see `teamsift envs`)."),
    out: Path = typer.Argument(..., help="Output dataset directory."),
    episodes: Optional[int] = typer.Option(None, "--episodes", "-n", min=1,
                                           help="Number of episodes (default 1000; with --population: see --appearances)."),
    policy: Optional[str] = typer.Option(None, show_default="random", help=(
        "Behaviour: 'random', 'scripted:<rule>' or a policy file of any kind. A comma-separated list gives one "
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
    from teamsift.collect import composition, generate as gen
    from teamsift.collect.pools import PoolError
    from teamsift.data import summarize
    from teamsift.nets import PolicyFileError

    if sum(x is not None for x in (spec, population)) > 1:
        fail("give at most one of --spec and --population")
    source = "--spec" if spec is not None else "--population" if population is not None else None
    if source and (policy is not None or mix):
        fail(f"{source} chooses every slot's behaviour; --policy and --mix are for per-slot behaviours, give one or "
             f"the other")
    alone = [name for name, given in (("--group-size", group_size), ("--appearances", appearances),
                                      ("--anonymise", anonymise or None)) if given is not None]
    if alone and population is None:
        fail(f"{alone[0]} belongs to --population; give --population P, or leave {alone[0]} out")
    policy = policy or "random"
    check_output_dataset(out, overwrite)
    progress = not as_json
    try:
        if spec is not None:
            path = gen.from_spec(env_id, out, spec, episodes or 1000, key(seed), pools_dir=pools_dir,
                                 overwrite=overwrite, progress=progress)
        elif population is not None:
            path = gen.from_population(env_id, out, population, key(seed), group_size=group_size, episodes=episodes,
                                       appearances=appearances, levels=levels.split(","),
                                       kinds=[k.strip() for k in kinds.split(",")], anonymise=anonymise,
                                       pools_dir=pools_dir, overwrite=overwrite, progress=progress)
        else:
            path = gen.from_behaviours(env_id, out, policy.split(","), episodes or 1000, key(seed), mix=mix,
                                       overwrite=overwrite, progress=progress)
    except (KeyError, ValueError, composition.SpecError, PoolError, PolicyFileError) as exc:
        fail(error_text(exc))
    summary = summarize(load_dataset_or_fail(path))
    emit({"dataset": str(path), **summary}, as_json,
         lambda p: STDERR.print(f"wrote {p['dataset']}: {p['episodes']} episodes, {p['steps']} steps, "
                                f"mean return {p['return']['mean']:.3f}"))


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
    from teamsift.collect.generate import SUITES, build_suite
    from teamsift.data import summarize

    try:
        made, missing = build_suite(name, out, seed, envs=[e.strip() for e in only.split(",")] if only else None,
                                    episodes=episodes, transitions=transitions, pools_dir=pools_dir,
                                    overwrite=overwrite, progress=not as_json)
    except ValueError as exc:
        fail(str(exc))
    specs = {}
    for env_id, entries in SUITES[name].items():
        for quality, spec in (entries.items() if name == "sit" else [("expert", entries)]):
            specs[f"{env_id}-{quality}"] = spec
    datasets = {label: {"spec": specs[label], **_brief(summarize(load_dataset_or_fail(path)))}
                for label, path in made.items()}
    emit({"suite": name, "datasets": datasets, "missing_pools": missing}, as_json, _render_suite)


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
        table.add_row(row["dataset"], escape(row["spec"]), str(row["episodes"]), str(row["steps"]),
                      f"{row['return_mean']:.2f}")
    Console().print(table)
    for env_id, why in payload["missing_pools"].items():
        STDERR.print(f"[yellow]skipped {env_id}:[/] {why}")


@import_app.command("npz")
def import_npz_cmd(
    file: Path = typer.Argument(..., help="NumPy archive with keys obs, actions, reward, episode_lengths, ..."),
    out: Path = typer.Argument(..., help="Output dataset directory."),
    env_id: Optional[str] = typer.Option(None, "--env", help="Check the arrays against this environment's spec."),
    discount: float = typer.Option(0.99, min=0.0, max=1.0),
    overwrite: bool = typer.Option(False),
    as_json: bool = JSON_OPTION,
):
    """Build a dataset from a .npz archive (keys documented in `teamsift.data.import_npz`)."""
    from teamsift.data import DatasetError, import_npz, load_dataset, summarize

    check_output_dataset(out, overwrite)

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

    check_output_dataset(out, overwrite)

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
    horizon: Optional[int] = typer.Option(None, min=1, help="Cut every game to its first HORIZON steps."),
    lenient: bool = typer.Option(False, help="Record replay mismatches instead of failing on the first."),
    overwrite: bool = typer.Option(False),
    as_json: bool = JSON_OPTION,
):
    """Import the human–human Overcooked trials of Carroll et al. (2019), shipped with overcooked-ai.

    The games are replayed through the JaxMARL environment: one-time agent ids, the game score as DVF."""
    from teamsift.data import (
        DatasetError,
        import_overcooked_human,
        load_dataset,
        summarize,
    )

    check_output_dataset(out, overwrite)

    try:
        path = import_overcooked_human(layout, split, out, horizon=horizon, overwrite=overwrite,
                                       progress=not as_json, strict=not lenient)
    except (DatasetError, ImportError, ValueError) as exc:
        fail(str(exc))
    summary = summarize(load_dataset(path))
    emit({"dataset": str(path), **summary}, as_json,
         lambda p: STDERR.print(f"imported {p['episodes']} human games ({p['steps']} steps) into {p['dataset']}"))



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
