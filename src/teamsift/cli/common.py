"""What every command shares: results on stdout (a table, or one JSON object with `--json`),
errors as one line on stderr, outputs checked before any work, keys from `--seed`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from teamsift.progress import STDERR

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object on stdout instead of tables.")

#: Where results go: stdout, so that `teamsift eval p.msgpack > out.txt` keeps them.
OUT = Console()


def emit(payload: dict, as_json: bool, render=None) -> None:
    """Print a command's result on stdout: `payload` as one JSON object with `--json`, else
    `render(payload)`. A render function prints with `OUT`; what it prints with
    `teamsift.progress.STDERR` is moved to stdout as well (styles kept, lines not rewrapped),
    so a result never ends up among the progress messages."""
    if as_json:
        sys.stdout.write(json.dumps(payload, default=json_default) + "\n")
    elif render is not None:
        with STDERR.capture() as captured:
            render(payload)
        text = captured.get()
        if text:
            OUT.print(Text.from_ansi(text), end="", soft_wrap=True)
        sys.stdout.flush()


def json_default(value):
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


def usage_error(exc: Exception) -> None:
    """Print click's usage error (a bad option value, a missing argument) as one line and exit."""
    from rich.markup import escape

    if type(exc).__name__ == "NoArgsIsHelpError":  # a group without a command: its help (already shown)
        if exc.format_message().strip():
            exc.show()
        sys.exit(exc.exit_code)
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    STDERR.print(f"[bold red]error:[/] {escape(exc.format_message())}{escape(hint)}", soft_wrap=True)
    sys.exit(exc.exit_code)


def check_output_file(option: str, path: Path | None, overwrite: bool, example: str = "policy.msgpack") -> None:
    """Refuse, before any work, an output file that would replace something without
    `--overwrite`, or that names a directory."""
    if path is None:
        return
    if path.is_dir():
        fail(f"{option} {path}: a directory; give a file name, e.g. {path / example}")
    if path.exists() and not overwrite:
        fail(f"{option} {path}: already exists; pass --overwrite to replace it")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        fail(f"{option} {path}: {parent} is a file, not a directory")


def check_output_dataset(path: Path, overwrite: bool, option: str | None = None) -> None:
    """Refuse, before any work, a dataset directory that exists (without `--overwrite`), or that
    --overwrite may not replace (a file, or a directory that is not a teamsift dataset)."""
    from teamsift.data.format import check_output_dir

    try:
        check_output_dir(path, overwrite, hint="pass --overwrite to replace it")
    except FileExistsError as exc:
        fail(f"{option} {exc}" if option else str(exc))


def error_text(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def key(seed: int):
    import jax

    return jax.random.key(seed)


def make_env_or_fail(env_id: str, **kwargs):
    from teamsift.collect.generate import make_env

    try:
        return make_env(env_id, **kwargs)
    except ValueError as exc:
        fail(str(exc))


def start_processes(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Join a multi-process run (`teamsift.devices.initialize`) before JAX does anything, or
    refuse inconsistent options in one line."""
    from teamsift.devices import initialize

    try:
        joined = initialize(coordinator, num_processes, process_id)
    except ValueError as exc:
        fail(str(exc))
    if joined:  # the collectives' libraries print to file descriptor 1: keep stdout for the results
        results = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        sys.stdout = results


def is_primary() -> bool:
    """Whether this is process 0 (the one that reports) of a run."""
    import jax

    return jax.process_index() == 0


def load_dataset_or_fail(path: Path, check_values: bool = True):
    from teamsift.data import DatasetError, load_dataset

    try:
        return load_dataset(path, check_values=check_values)
    except DatasetError as exc:
        fail(str(exc))
