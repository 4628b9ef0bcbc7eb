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
    dataset: Path = typer.Argument(..., help="Dataset directory."),
    method: str = typer.Option("ev", help="ev | ev-cluster | shapley | ardnem."),
    score: Optional[str] = typer.Option(None, help="The episode score (DVF) to value by (default: team return)."),
    clusters: Optional[int] = typer.Option(None, min=1, help="ev-cluster: number of clusters (default: chosen by "
                                                      "held-out error)."),
    permutations: int = typer.Option(200, min=1, help="shapley: sampled permutations."),
    updates: Optional[int] = typer.Option(None, min=1, help="ardnem: training updates (default: SIT's 20000)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="ardnem: the run directory (config, metrics, "
                                                                  "checkpoints; resumable)."),
    resume: bool = typer.Option(False, "--resume", help="ardnem: continue the run in --run-dir."),
    overwrite: bool = typer.Option(False, "--overwrite", help="ardnem: replace what --run-dir holds."),
    checkpoint_every: int = typer.Option(0, min=0, help="ardnem: checkpoint every this many updates (0: at the end)."),
    stage1_out: Optional[Path] = typer.Option(None, "--out", help="ardnem: save the Stage I result here, for "
                                                                  "`train --stage1 FILE` (SIT, --sampler dper)."),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", min=0.0,
                                                  help="ardnem: learning rate (default: SIT's 1e-4)."),
    ensemble: Optional[int] = typer.Option(None, min=1, help="ardnem: ensemble size M (default 5; 1 = w/o "
                                                             "ensemble)."),
    no_attention: bool = typer.Option(False, "--no-attention", help="ardnem: the 'w/o attention' ablation."),
    plots: Optional[Path] = typer.Option(None, help="Directory for plots (default: DATASET/value-<method>)."),
    seed: int = typer.Option(0),
    top: int = typer.Option(20, min=0, help="Rows shown in the table (all rows go to --json)."),
    as_json: bool = JSON_OPTION,
):
    """Value every individual (or slot) of a dataset, with uncertainty, and plot it.

    Where the dataset carries ground truth (behaviour levels), the report includes the
    mean value per level, the Spearman correlation with the level and the expert-vs-random AUC."""
    from teamsift.data import DatasetError, load_dataset
    from teamsift.value.report import plot_values, value_dataset

    from teamsift.engine import RunConfig, RunDirError

    ardnem_options, run = {}, None
    if method == "ardnem":
        ardnem_options = {name: value for name, value in (("ensemble_size", ensemble), ("learning_rate", learning_rate))
                          if value is not None}
        if no_attention:
            ardnem_options["attention"] = False
        try:
            run = RunConfig(updates=updates or 20_000, log_every=min(500, updates or 20_000),
                            checkpoint_every=checkpoint_every if run_dir else 0,
                            run_dir=None if run_dir is None else str(run_dir), resume=resume, overwrite=overwrite,
                            progress=not as_json, label="ARDNEM")
        except ValueError as exc:
            fail(str(exc))
    elif run_dir is not None or resume or stage1_out is not None:
        fail("--run-dir, --resume and --out belong to --method ardnem (the only valuation that trains)")
    elif updates is not None or learning_rate is not None or ensemble is not None or no_attention:
        fail("--updates, --learning-rate, --ensemble and --no-attention belong to --method ardnem")
    if clusters is not None and method != "ev-cluster":
        fail(f"--clusters belongs to --method ev-cluster, not {method}")
    out_dir = plots or (Path(dataset) / f"value-{method}")
    try:
        ds = load_dataset(dataset)
        report = value_dataset(ds, method, key(seed), score=score, num_clusters=clusters,
                               permutations=permutations, progress=not as_json, out_dir=out_dir, run=run,
                               stage1_out=stage1_out, **ardnem_options)
    except (DatasetError, ValueError, KeyError, RunDirError) as exc:
        fail(error_text(exc))
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
