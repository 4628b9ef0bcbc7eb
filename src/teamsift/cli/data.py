"""Data commands: environments, generating and importing datasets, inspecting them, and the
`teamsift data` tools (subsample, combine, split, export)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from teamsift.cli.common import JSON_OPTION, check_output_dataset, emit, error_text, fail, key
from teamsift.progress import STDERR

app = typer.Typer()
import_app = typer.Typer(no_args_is_help=True, help="Bring your own data: convert files into a teamsift dataset.")

data_app = typer.Typer(no_args_is_help=True,
                       help="Dataset tools: subsample, combine, split (train/test), export to other formats.")
export_app = typer.Typer(no_args_is_help=True, help="Write a dataset in another format.")
data_app.add_typer(export_app, name="export")

POOLS_HELP = ("Pools directory (default: the first of $TEAMSIFT_POOLS, ./pools and the pools shipped with teamsift "
              "that has the environment's pools).")


@app.command()
def envs(
    family: Optional[str] = typer.Option(None, help="Only this family: mpe, overcooked, smax, mabrax, commons, poly."),
    specs: bool = typer.Option(True, "--specs/--no-specs", help="Show each spec's sizes (or the descriptions)."),
    as_json: bool = JSON_OPTION,
):
    """List the registered environments and their specs.

    The specs: agents, observation and state widths, actions, episode length T, scores."""
    from teamsift.envs.specs import describe_envs

    emit({"envs": describe_envs(family, specs=specs)}, as_json, lambda p: _render_envs(p["envs"], specs))


#: Below this terminal width `teamsift envs` puts each spec in one wrapped cell.
WIDE_ENVS_TABLE = 120


def _render_envs(rows: list[dict], specs: bool) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="teamsift environments", box=box.SIMPLE_HEAD)
    if not specs:
        table.add_column("env_id", no_wrap=True)
        table.add_column("family")
        table.add_column("description", ratio=1)
        for row in rows:
            table.add_row(row["env_id"], row["family"], row["description"])
        console.print(table)
        return

    def agents(row):
        counts = row["agent_type_counts"]
        if len(counts) > 2 and set(counts.values()) == {1}:  # one type per agent (MaBrax)
            return f"{row['agents']}: {', '.join(counts)}"
        return ", ".join(f"{count} {name}" for name, count in counts.items())

    def actions(row):
        kind, size = row["actions"].split()
        return f"{size} discrete" if kind == "discrete" else f"{size}-dim continuous"

    if console.width >= WIDE_ENVS_TABLE:
        for column in ("env_id", "agents", "obs", "state", "actions", "T", "scores"):
            table.add_column(column, no_wrap=column == "env_id",
                             justify="right" if column in ("obs", "state", "T") else "left")
        for row in rows:
            table.add_row(row["env_id"], agents(row), str(row["obs_dim"]), str(row["state_dim"]), actions(row),
                          str(row["episode_length"]), ", ".join(row["scores"]))
    else:
        table.add_column("env_id", no_wrap=True)
        table.add_column("spec", ratio=1)
        for row in rows:
            table.add_row(row["env_id"], f"{agents(row)}; {actions(row)} actions; T {row['episode_length']}\n"
                                         f"obs {row['obs_dim']}, state {row['state_dim']}; "
                                         f"scores: {', '.join(row['scores'])}")
    console.print(table)


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
    pools_dir: Optional[Path] = typer.Option(None, "--pools", help=POOLS_HELP),
    seed: int = typer.Option(0, help="Seed of every random choice."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset at OUT."),
    as_json: bool = JSON_OPTION,
):
    """Generate a dataset: behaviour policies per slot, a composition spec over pools, or a population."""
    from teamsift.collect import composition, generate as gen
    from teamsift.collect.pools import PoolError
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
    summary = _written_summary(path)
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
    pools_dir: Optional[Path] = typer.Option(None, "--pools", help=POOLS_HELP),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False),
    as_json: bool = JSON_OPTION,
):
    """Build a ready-made suite of datasets from the pools (environments without pools are listed)."""
    from teamsift.collect.generate import SUITES, build_suite

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
    datasets = {label: {"spec": specs[label], **_brief(_written_summary(path))} for label, path in made.items()}
    emit({"suite": name, "datasets": datasets, "missing_pools": missing}, as_json, _render_suite)


def _written_summary(path: Path) -> dict:
    """The summary of a dataset just written, from its meta.json and episode table only.
    The step arrays were checked chunk by chunk as they were written; reading them again
    would map every page of the dataset into this process, and the table's per-slot
    strings are read as codes, so memory does not grow with the dataset beyond a few
    numbers per episode."""
    from teamsift.data import DatasetError, summarize

    try:
        return summarize(path)
    except DatasetError as exc:
        fail(str(exc))


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
    plot: Optional[Path] = typer.Option(None, help="Where to write the summary plot (default: DATASET-summary.png "
                                                   "beside the dataset; never inside it)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing plot file."),
    as_json: bool = JSON_OPTION,
):
    """Summarise a dataset: episodes, steps, agents, return and score distributions, per composition."""
    from teamsift.data import DatasetError, load_dataset, plot_summary, summarize

    root = Path(dataset).resolve()
    shown = Path(dataset) if Path(dataset).name not in ("", ".", "..") else root
    plot_path = Path(plot) if plot is not None else shown.parent / f"{shown.name}-summary.png"
    if plot_path.resolve() == root or root in plot_path.resolve().parents:
        fail(f"--plot {plot_path}: inside the dataset directory {dataset}; plots never go into a dataset")
    if plot_path.is_dir():
        fail(f"--plot {plot_path}: is a directory; expected a file name such as summary.png")
    if plot_path.exists() and not overwrite:
        fail(f"--plot {plot_path}: already exists (pass --overwrite to replace it)")
    try:
        ds = load_dataset(dataset)
    except DatasetError as exc:
        fail(str(exc))
    summary = summarize(ds)
    try:
        plot_summary(ds, plot_path)
        summary["plot"] = str(plot_path)
    except OSError as exc:  # e.g. read-only storage: the summary still stands
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


# --- teamsift data: subsample, combine, split, export ------------------------------------

TOOL_ERRORS = (KeyError, ValueError, FileExistsError)  # DatasetError is a ValueError


def _parse_returns(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise typer.BadParameter(f"expected numbers separated by commas, got {text!r}",
                                 param_hint="--target-returns") from None
    if not values:
        raise typer.BadParameter("expected at least one return", param_hint="--target-returns")
    return values


@data_app.command("subsample")
def data_subsample(
    src: Path = typer.Argument(..., help="Source dataset directory."),
    out: Path = typer.Argument(..., help="Output dataset directory."),
    episodes: Optional[int] = typer.Option(None, "--episodes", "-n", min=1,
                                           help="Episodes to keep (with a target: default, as many as targets)."),
    match_returns: Optional[Path] = typer.Option(
        None, "--match-returns", help="Follow the return distribution in FILE: a dataset directory, a .npy array "
                                      "or a text file of numbers."),
    target_returns: Optional[str] = typer.Option(None, "--target-returns", help="Follow these returns, e.g. '1,2.5,4'."),
    bins: int = typer.Option(20, min=1, help="Return bins shared by source and target (with a target)."),
    replace: bool = typer.Option(False, "--replace", help="Repeat episodes where a bin has too few (with a target)."),
    seed: int = typer.Option(0, help="Seed of the draw."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset at OUT."),
    as_json: bool = JSON_OPTION,
):
    """Keep N episodes drawn uniformly, or episodes whose returns follow a target distribution."""
    from teamsift.data.tools import subsample

    if match_returns is not None and target_returns is not None:
        fail("give at most one of --match-returns and --target-returns")
    target = match_returns if match_returns is not None else (
        _parse_returns(target_returns) if target_returns is not None else None)
    if target is None and episodes is None:
        fail("give --episodes N, or a target: --match-returns FILE or --target-returns R1,R2,...")
    try:
        result = subsample(src, out, episodes=episodes, target_returns=target, bins=bins, replace=replace,
                           seed=seed, overwrite=overwrite)
    except TOOL_ERRORS as exc:
        fail(error_text(exc))
    emit(result, as_json, _render_subsample)


def _render_subsample(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"wrote {result['dataset']}: {result['episodes']} episodes, {result['steps']} steps, "
                  f"mean return {result['return_mean']:.4g} (from {result['source']})", soft_wrap=True)
    if result["mode"] != "match-returns":
        return
    table = Table(title="returns per bin")
    for column in ("return bin", "target", "source has"):
        table.add_column(column, justify="left" if column == "return bin" else "right")
    edges = result["bin_edges"]
    for b, (want, have) in enumerate(zip(result["target_counts"], result["source_counts"])):
        if want or have:
            table.add_row(f"{edges[b]:.4g} … {edges[b + 1]:.4g}", str(want), str(have))
    console.print(table)
    distance = result["wasserstein_to_target"]
    console.print(f"distance to the target's returns (Wasserstein-1): source {distance['source']:.4g}, "
                  f"output {distance['output']:.4g}; repeated episodes: {result['repeated_episodes']}")


@data_app.command("combine")
def data_combine(
    sources: list[Path] = typer.Argument(..., help="Two or more source datasets, then the output directory."),
    ids: str = typer.Option("keep", help="'keep': an agent id is the same individual in every source; 'separate': "
                                         "prefix each source's ids with its position ('0:', '1:', ...)."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset at OUT."),
    as_json: bool = JSON_OPTION,
):
    """Write the episodes of several datasets of one environment into one dataset (the last path)."""
    from teamsift.data.tools import combine

    if len(sources) < 3:
        fail(f"give at least two source datasets and the output directory, got {len(sources)} path(s)")
    try:
        result = combine(sources[:-1], sources[-1], ids=ids, overwrite=overwrite)
    except TOOL_ERRORS as exc:
        fail(error_text(exc))

    def render(r):
        from rich.console import Console

        console = Console()
        console.print(f"wrote {r['dataset']}: {r['episodes']} episodes ({' + '.join(map(str, r['episodes_per_source']))}),"
                      f" {r['steps']} steps, mean return {r['return_mean']:.4g}", soft_wrap=True)
        if r["shared_ids"] and r["ids"] == "keep":
            console.print(f"{r['shared_ids']} agent ids appear in several sources and are taken as the same "
                          "individuals (--ids separate keeps them apart)")
        if r["dropped_columns"]:
            console.print(f"dropped {', '.join(r['dropped_columns'])}: not in every source")

    emit(result, as_json, render)


@data_app.command("split")
def data_split(
    src: Path = typer.Argument(..., help="Source dataset directory."),
    out: Path = typer.Argument(..., help="Output directory: receives the datasets train/ and test/."),
    test_fraction: float = typer.Option(..., "--test-fraction", min=0.0, max=1.0,
                                        help="Share of episodes (by episode) or of individuals (by individual) in test."),
    by: str = typer.Option("episode", help="'episode', or 'individual': hold out agent ids; every episode where a "
                                           "held-out id plays goes to test."),
    mixed: str = typer.Option("test", help="By individual, episodes with held-out and other ids together: 'test' "
                                           "(into test) or 'drop' (in neither part)."),
    seed: int = typer.Option(0, help="Seed of the draw."),
    overwrite: bool = typer.Option(False, help="Replace an existing split at OUT."),
    as_json: bool = JSON_OPTION,
):
    """Split a dataset into train and test datasets, by episode or by individual."""
    from teamsift.data.tools import split

    try:
        result = split(src, out, test_fraction=test_fraction, by=by, mixed=mixed, seed=seed, overwrite=overwrite)
    except TOOL_ERRORS as exc:
        fail(error_text(exc))

    def render(r):
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{r['source']} split by {r['by']}")
        for column in ("part", "dataset", "episodes", "steps", "mean return"):
            table.add_column(column, justify="right" if column in ("episodes", "steps", "mean return") else "left")
        for part in ("train", "test"):
            table.add_row(part, r[part]["dataset"], str(r[part]["episodes"]), str(r[part]["steps"]),
                          f"{r[part]['return_mean']:.4g}")
        console = Console()
        console.print(table)
        if r["by"] == "individual":
            console.print(f"held out {len(r['held_out_ids'])} of {r['individuals']} individuals; "
                          f"{r['mixed_episodes']} episodes mix held-out and other ids "
                          f"({'in test' if r['mixed'] == 'test' else 'dropped'})")

    emit(result, as_json, render)


@export_app.command("vault")
def data_export_vault(
    src: Path = typer.Argument(..., help="Source dataset directory."),
    out: Path = typer.Argument(..., help="Vault directory (flashbax rel_dir/vault_name)."),
    uid: str = typer.Option("teamsift", help="Vault uid (sub-directory of OUT)."),
    overwrite: bool = typer.Option(False, help="Replace an existing vault uid at OUT."),
    as_json: bool = JSON_OPTION,
):
    """Write a dataset as an OG-MARL / flashbax Vault (readable by flashbax and `teamsift import vault`)."""
    from teamsift.data.importers import export_vault

    try:
        path = export_vault(src, out, vault_uid=uid, overwrite=overwrite)
    except TOOL_ERRORS as exc:
        fail(error_text(exc))
    emit({"vault": str(path), "uid": uid, "dataset": str(src)}, as_json,
         lambda p: typer.echo(f"wrote vault {p['vault']} (uid {p['uid']}) from {p['dataset']}"))


@export_app.command("table")
def data_export_table(
    src: Path = typer.Argument(..., help="Source dataset directory."),
    out: Path = typer.Argument(..., help="Directory for the shards (part-00000.parquet, …) and table.json."),
    rows_per_shard: int = typer.Option(1_000_000, "--rows-per-shard", min=1, help="Episodes per Parquet shard."),
    overwrite: bool = typer.Option(False, help="Replace an earlier export at OUT."),
    as_json: bool = JSON_OPTION,
):
    """Write a dataset's episode table (ids, return, scores; no steps) as Parquet shards.

    The shards are the list layout `teamsift value --table` values out of core."""
    from teamsift.data.tools import export_table

    try:
        manifest = export_table(src, out, rows_per_shard=rows_per_shard, overwrite=overwrite)
    except TOOL_ERRORS as exc:
        fail(error_text(exc))
    def render(m: dict) -> None:
        shown = Path(m["out"])
        shown = shown.relative_to(Path.cwd()) if shown.is_relative_to(Path.cwd()) else shown
        typer.echo(f"wrote {len(m['shards'])} shard(s), {m['episodes']} episodes, to {shown} "
                   f"(columns: {', '.join(m['columns'])})")

    emit(manifest, as_json, render)
