"""The `teamsift` command. Every command that reports results takes `--json` and then prints
exactly one JSON object on stdout (progress bars and messages go to stderr).

Each command group lives in its own module and only parses, calls one library function and
prints: `data` (envs, generate, suite, import, inspect), `pools`, `value`, `train` (train,
imitate, eval, algos), `bench` and `demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from teamsift.cli import bench, data, pools, train, value
from teamsift.cli.common import JSON_OPTION, emit

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n")[0])
for group in (data.app, value.app, train.app):
    app.registered_commands += group.registered_commands
app.add_typer(data.import_app, name="import")
app.add_typer(data.data_app, name="data")
app.add_typer(pools.app, name="pools")
app.add_typer(bench.app, name="bench")


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
