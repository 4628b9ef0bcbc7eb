"""`teamsift value`: who in a dataset was good, from the team signal alone."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from teamsift.cli.common import JSON_OPTION, emit, error_text, fail, key
from teamsift.progress import STDERR

app = typer.Typer()


@app.command()
def value(
    dataset: Optional[Path] = typer.Argument(None, help="Dataset directory (or give --table)."),
    method: str = typer.Option("ev", help="ev | ev-cluster | shapley | ardnem."),
    score: Optional[str] = typer.Option(None, help="The episode score (DVF) to value by (default: team return)."),
    clusters: Optional[int] = typer.Option(None, min=1, help="ev-cluster: number of clusters (default: chosen by "
                                                      "held-out error)."),
    features: Optional[str] = typer.Option(None, "--features", help="ev-cluster: the behaviour features, histogram "
                                                                     "(default: action frequencies per coarse "
                                                                     "observation bin), policy-mixture (an EM "
                                                                     "mixture of behaviour-cloning policies; discrete "
                                                                     "actions) or policy-likelihood (the same "
                                                                     "mixture's per-decision log-likelihoods)."),
    k_rule: Optional[str] = typer.Option(None, "--k-rule", help="ev-cluster: how the number of clusters is chosen "
                                                                "by held-out error, one-se (default: the fewest "
                                                                "within a standard error of the lowest) or lowest."),
    permutations: int = typer.Option(200, min=1, help="shapley: sampled permutations."),
    updates: Optional[int] = typer.Option(None, min=1, help="ardnem: training updates (default: SIT's 20000)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="ardnem: the run directory (config, metrics, "
                                                                  "checkpoints; resumable)."),
    resume: bool = typer.Option(False, "--resume", help="ardnem: continue the run in --run-dir."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier output in --out (and, for "
                                                            "ardnem, what --run-dir holds)."),
    checkpoint_every: int = typer.Option(0, min=0, help="ardnem: checkpoint every this many updates (0: at the end)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for values.csv, values.json and the plots "
                                                           "(default: DATASET-values-METHOD beside the dataset; never "
                                                           "inside it). ardnem also saves its Stage I result there "
                                                           "(ardnem-stage1.msgpack, for `train --stage1`)."),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", min=0.0,
                                                  help="ardnem: learning rate (default: SIT's 1e-4)."),
    ensemble: Optional[int] = typer.Option(None, min=1, help="ardnem: ensemble size M (default 5; 1 = w/o "
                                                             "ensemble)."),
    no_attention: bool = typer.Option(False, "--no-attention", help="ardnem: the 'w/o attention' ablation."),
    mixer: Optional[str] = typer.Option(None, "--mixer", help="ardnem: how the agents' rewards make the team's: "
                                                             "attention (SIT eqs. 1–2, the default) | monotonic "
                                                             "(QMIX's mixer, SIT's MNC ablation, Fig. 7)."),
    table: Optional[str] = typer.Option(None, "--table", help="ev out of core: an episode table in Parquet (a file, a "
                                                             "directory of shards, a glob such as 'shards/*.parquet' "
                                                             "or a dataset directory) valued by DuckDB in bounded "
                                                             "memory, instead of DATASET."),
    ids: Optional[str] = typer.Option(None, "--ids", help="--table: the list column of ids (default agent_ids), or "
                                                          "the id columns of a wide table, comma-separated (p0,p1,p2)."),
    memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="--table: DuckDB's memory limit "
                                                                            "(default 2GB); past it, DuckDB spills "
                                                                            "to --temp-directory."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="--table: DuckDB's threads (default: every "
                                                                         "core)."),
    temp_directory: Optional[Path] = typer.Option(None, "--temp-directory", help="--table: where DuckDB spills "
                                                                                 "(default: a fresh temporary "
                                                                                 "directory, removed afterwards)."),
    seed: int = typer.Option(0),
    top: int = typer.Option(20, min=0, help="Rows shown in the table (all rows go to --out and --json)."),
    as_json: bool = JSON_OPTION,
):
    """Value every individual (or slot) of a dataset, with uncertainty, into --out (CSV, JSON, plots).

    Before any work it checks that the method fits the data: where the values would be
    meaningless (e.g. ev on data where every id appears once) it stops and names the
    method that fits; where only part of them is, it warns on stderr (and in --json's
    "warnings"). Where the dataset carries ground truth (behaviour levels), the report
    includes the mean value per level, the Spearman correlation with the level and the
    expert-vs-random AUC.

    With --table instead of DATASET, Exchange Values come from an episode table in Parquet
    that need not fit in memory (one row per episode: a list column of ids, or one id column
    per slot, and a score column; `teamsift data export table` writes one from a dataset),
    computed by DuckDB under --memory-limit."""
    from teamsift.data import DatasetError
    from teamsift.engine import RunConfig, RunDirError
    from teamsift.value.outputs import value_to_dir

    if table is not None:
        if dataset is not None:
            fail(f"give DATASET or --table, not both (got {dataset} and --table {table})")
        if method != "ev":
            fail(f"--table values by --method ev only (Exchange Values out of core), not {method}")
        if clusters is not None or features is not None or k_rule is not None or run_dir is not None or resume \
                or updates is not None or learning_rate is not None or ensemble is not None or no_attention \
                or mixer is not None:
            fail("--clusters, --features, --k-rule, --run-dir, --resume, --updates, --learning-rate, --ensemble, "
                 "--no-attention and --mixer do not apply to --table")
        _value_table(table, ids, score, out, overwrite, memory_limit, threads, temp_directory, top, as_json)
        return
    if dataset is None:
        fail("give a DATASET directory, or an episode table with --table")
    if ids is not None or threads is not None or temp_directory is not None or memory_limit is not None:
        fail("--ids, --memory-limit, --threads and --temp-directory belong to --table")
    options: dict = {}
    if method == "ardnem":
        options = {name: value for name, value in (("ensemble_size", ensemble), ("learning_rate", learning_rate))
                   if value is not None}
        if no_attention:
            options["attention"] = False
        if mixer is not None:
            options["mixer"] = mixer
        try:
            options["run"] = RunConfig(updates=updates or 20_000, log_every=min(500, updates or 20_000),
                                       checkpoint_every=checkpoint_every if run_dir else 0,
                                       run_dir=None if run_dir is None else str(run_dir), resume=resume,
                                       overwrite=overwrite, progress=not as_json, label="ARDNEM")
        except ValueError as exc:
            fail(str(exc))
    elif run_dir is not None or resume:
        fail("--run-dir and --resume belong to --method ardnem (the only valuation that trains)")
    elif updates is not None or learning_rate is not None or ensemble is not None or no_attention or mixer is not None:
        fail("--updates, --learning-rate, --ensemble, --no-attention and --mixer belong to --method ardnem")
    if clusters is not None and method != "ev-cluster":
        fail(f"--clusters belongs to --method ev-cluster, not {method}")
    if features is not None and method != "ev-cluster":
        fail(f"--features belongs to --method ev-cluster, not {method}")
    if k_rule is not None and method != "ev-cluster":
        fail(f"--k-rule belongs to --method ev-cluster, not {method}")
    if method == "ev-cluster":
        from teamsift.value.clustering import FEATURE_KINDS, K_RULES

        if features is not None and features not in FEATURE_KINDS:
            fail(f"--features: expected one of {', '.join(FEATURE_KINDS)}, got {features!r}")
        if k_rule is not None and k_rule not in K_RULES:
            fail(f"--k-rule: expected one of {', '.join(K_RULES)}, got {k_rule!r}")
        if k_rule is not None and clusters is not None:
            fail(f"--k-rule chooses the number of clusters; --clusters {clusters} fixes it: give one of them")
        options["num_clusters"] = clusters
        options["features"] = features
        options["k_rule"] = k_rule
    elif method == "shapley":
        options["permutations"] = permutations
    try:
        report = value_to_dir(dataset, method, key(seed), out=out, overwrite=overwrite, score=score,
                              progress=not as_json, **options)
    except (DatasetError, ValueError, KeyError, RunDirError, FileExistsError) as exc:
        fail(error_text(exc))
    from rich.markup import escape

    for line in report["warnings"]:
        STDERR.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)
    emit(report, as_json, lambda r: _render_values(r, top))


def _value_table(table, ids, score, out, overwrite, memory_limit, threads, temp_directory, top, as_json) -> None:
    from teamsift.data import DatasetError
    from teamsift.value.outputs import value_table_to_dir

    id_columns = "agent_ids" if ids is None else [c.strip() for c in ids.split(",") if c.strip()]
    if isinstance(id_columns, list) and len(id_columns) == 1:
        id_columns = id_columns[0]
    try:
        report = value_table_to_dir(table, out=out, overwrite=overwrite, score=score, ids=id_columns,
                                    memory_limit=memory_limit, threads=threads, temp_directory=temp_directory)
    except (DatasetError, ValueError, FileExistsError, MemoryError) as exc:
        fail(error_text(exc))
    from rich.markup import escape

    for line in report["warnings"]:
        STDERR.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)
    emit(report, as_json, lambda r: _render_values(r, top))


def _render_values(report: dict, top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    rows = report.get("table", [])
    table = Table(title=f"{report['method']} on {report['dataset']} (score: {report['score']})")
    for column in ("rank", "id", "value", "stderr", "count", "true_level"):
        table.add_column(column)
    for row in rows[:top]:
        table.add_row(*[("—" if row.get(c) is None else f"{row[c]:.3f}" if isinstance(row[c], float) else
                         str(row[c])) for c in ("rank", "id", "value", "stderr", "count", "true_level")])
    console.print(table)
    if len(rows) > top:
        console.print(f"… {len(rows) - top} more rows (--top; all rows are in values.csv)")
    clusters = report.get("clusters")
    if clusters:
        values = ", ".join(f"{v:.3f} ({n})" for v, n in zip(clusters["values"], clusters["sizes"]))
        count = len(clusters["values"])
        chosen = {"given": "K given", "one-se": "K by the one-se rule", "lowest": "K of the lowest held-out error"}[
            "given" if clusters["selection"]["rule"] == "given" else clusters["k_rule"]]
        console.print(f"  {count} cluster{'' if count == 1 else 's'} from {clusters['features']} features ({chosen}), "
                      f"value (individuals): {values}")
    for name, stats in report.get("accuracy", {}).get("per_level", {}).items():
        console.print(f"  {name}: mean value {stats['mean_value']:.3f} over {stats['individuals']}")
    accuracy = report.get("accuracy", {})
    if accuracy.get("spearman") is not None:
        console.print(f"  Spearman vs true level {accuracy['spearman']:.3f}"
                      + (f", AUC expert vs random {accuracy['auc_expert_vs_random']:.3f}"
                         if "auc_expert_vs_random" in accuracy else ""))
    trajectories = report.get("trajectory_accuracy", {})
    if trajectories.get("spearman") is not None:
        console.print(f"  per trajectory: Spearman vs true level {trajectories['spearman']:.3f}"
                      + (f", AUC expert vs random {trajectories['auc_expert_vs_random']:.3f}"
                         if "auc_expert_vs_random" in trajectories else ""))
    source = report.get("table_source")
    if source:
        console.print(f"  {source['engine']} over {source['files']} file(s), {source['episodes']} episodes "
                      f"({source['layout']} layout, memory limit {source['memory_limit']})")
    out = Path(report["out"])
    shown = out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out
    console.print(f"  written to {shown}: " + ", ".join(Path(p).name for p in report.get("files", [])))
