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
    STDERR.print(f"[bold red]error:[/] {message}")
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
    episodes: int = typer.Option(1000, "--episodes", "-n", min=1, help="Number of episodes."),
    policy: str = typer.Option("random", help=(
        "Behaviour: 'random', 'scripted:<rule>' or a policy file. A comma-separated list gives one "
        "behaviour per slot (as many as agents), or with --mix the candidates each slot draws from.")),
    mix: bool = typer.Option(False, help="Each episode, each slot draws its behaviour uniformly from --policy."),
    seed: int = typer.Option(0, help="Seed of every random choice."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset at OUT."),
    as_json: bool = JSON_OPTION,
):
    """Roll behaviour policies out in an environment and write a dataset."""
    import jax
    import numpy as np

    from teamsift import envs as registry
    from teamsift.collect import behaviours
    from teamsift.collect.rollouts import collect
    from teamsift.nets.policy import PolicyBank
    from teamsift.data import load_dataset, summarize

    try:
        env = registry.make(env_id)
    except KeyError as exc:
        fail(str(exc.args[0]))
    if out.exists() and not overwrite:
        fail(f"{out} already exists; pass --overwrite to replace it")
    tokens = [t for t in policy.split(",") if t.strip()]
    num_agents = env.spec.num_agents
    if not mix and len(tokens) not in (1, num_agents):
        fail(f"--policy: give 1 behaviour or {num_agents} (one per slot of {env_id}), got {len(tokens)}")
    try:
        resolved = [behaviours.resolve(t, env) for t in tokens]
    except (ValueError, OSError) as exc:
        fail(str(exc))
    labels = [label for _, label in resolved]
    key = _key(seed)
    if mix:
        assignment = np.asarray(jax.random.randint(jax.random.fold_in(key, 1), (episodes, num_agents), 0, len(tokens)))
    elif len(tokens) == 1:
        assignment = np.zeros((episodes, num_agents), np.int32)
    else:
        assignment = np.tile(np.arange(num_agents, dtype=np.int32), (episodes, 1))
    bank = PolicyBank(tuple(p for p, _ in resolved))
    behaviour = np.asarray(labels, dtype=str)[assignment]
    provenance = {"command": "generate", "policy": policy, "mix": mix, "seed": seed, "episodes": episodes}
    path = collect(env, bank, jax.random.fold_in(key, 2), episodes, out, assignment=assignment,
                   behaviour=behaviour, policy_ids=behaviour, provenance=provenance, overwrite=overwrite,
                   progress=not as_json)
    summary = summarize(load_dataset(path))
    emit({"dataset": str(path), **summary}, as_json,
         lambda p: STDERR.print(f"wrote {p['dataset']}: {p['episodes']} episodes, {p['steps']} steps, "
                                f"mean return {p['return']['mean']:.3f}"))


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

ALGOS = ("bc",)


@app.command()
def train(
    dataset: Path = typer.Argument(..., help="Dataset directory."),
    algo: str = typer.Option("bc", help=f"Learner: {', '.join(ALGOS)}."),
    out: Path = typer.Option(Path("policy.msgpack"), help="Where to save the policy (seed 0 when --seeds > 1)."),
    updates: Optional[int] = typer.Option(None, help="Number of updates (default: the paper's)."),
    seeds: int = typer.Option(1, min=1, help="Seeds trained together as one vmapped program."),
    seed: int = typer.Option(0),
    recurrent: Optional[bool] = typer.Option(None, "--gru/--mlp", help="Agent network (default: GRU if partially observable)."),
    eval_episodes: int = typer.Option(100, help="Evaluate each seed in the environment afterwards (0: skip)."),
    as_json: bool = JSON_OPTION,
):
    """Train a policy on a dataset, save it, and evaluate it in the dataset's environment."""
    import dataclasses

    from teamsift import envs as registry
    from teamsift.algos import bc
    from teamsift.algos.common import policy_for_seed
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
    policy, logs = bc.train(config, ds, _key(seed), num_seeds=seeds, progress=not as_json)
    per_seed = [policy_for_seed(policy, s) for s in range(seeds)] if seeds > 1 else [policy]
    saved = save_policy(per_seed[0], out, spec=ds.spec, extra={"algo": algo, "dataset": str(dataset), "seed": seed,
                                                                "env_kwargs": ds.meta.get("env_kwargs", {})})
    result = {"algo": algo, "policy": str(saved), "dataset": str(dataset), "updates": config.num_updates,
              "seeds": seeds, "final_loss": [float(x) for x in logs["loss"][:, -1]]}
    if eval_episodes > 0 and ds.meta.get("env_id") in {e.env_id for e in registry.list_envs()}:
        env = registry.make(ds.meta["env_id"], **ds.meta.get("env_kwargs", {}))
        evals = [evaluate(env, p, _key(seed + 1000 + s), eval_episodes) for s, p in enumerate(per_seed)]
        result["eval"] = [e.to_dict() for e in evals]
        means = [e.team_return.mean for e in evals]
        result["return_mean_over_seeds"] = float(sum(means) / len(means))
    emit(result, as_json, lambda r: STDERR.print(
        f"saved {r['policy']}; final loss {r['final_loss']}"
        + (f"; return per seed {[round(e['scores']['return']['mean'], 3) for e in r['eval']]}" if "eval" in r else "")))


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
