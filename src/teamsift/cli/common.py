"""What every command shares: one JSON object on stdout with `--json`, errors as one line
on stderr, keys from `--seed`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from teamsift.progress import STDERR

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON object on stdout instead of tables.")


def emit(payload: dict, as_json: bool, render=None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload, default=json_default) + "\n")
    elif render is not None:
        render(payload)


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


def load_dataset_or_fail(path: Path):
    from teamsift.data import DatasetError, load_dataset

    try:
        return load_dataset(path)
    except DatasetError as exc:
        fail(str(exc))
