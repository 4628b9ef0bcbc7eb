"""Progress bars for long work, always on stderr so that `--json` output on stdout stays clean."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

STDERR = Console(stderr=True)


def progress_bar(enabled: bool = True, *extra_columns) -> Progress:
    """A rich progress bar on stderr: label, bar, n/total, extra columns, elapsed, remaining."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=STDERR,
        disable=not enabled,
        transient=True,
    )
