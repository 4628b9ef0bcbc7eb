"""The `teamsift` command: offline multi-agent learning from team data of mixed quality.

Results go to stdout: a table, or exactly one JSON object with `--json`. Progress bars and
messages go to stderr. Exit codes: 0 done, 1 an unexpected error, 2 refused (bad input,
or an output that exists without `--overwrite`), 130 interrupted (Ctrl-C).

Each command group lives in its own module and only parses, calls one library function and
prints: `data` (envs, generate, suite, import, inspect), `pools`, `value`, `train` (train,
imitate, eval, algos), `bench` and `demo`."""

from __future__ import annotations

import os
import signal
import sys
import threading

INTERRUPTED = 130  # the exit code of a run stopped by Ctrl-C (128 + SIGINT)
_exiting = threading.Lock()


def _exit_interrupted(*_signal_args) -> None:
    """Write one line and end the process at once. `os._exit` skips the interpreter's
    shutdown: tearing down JAX/XLA while its threads still compile or run is what crashes
    (a segfault, "pure virtual method called"), and a KeyboardInterrupt raised inside a
    callback is only reported and then ignored. Every file teamsift writes is written
    atomically, so stopping here leaves either the old file or the new one."""
    if not _exiting.acquire(blocking=False):
        return  # the other path (handler or watcher) is already exiting
    try:
        tty = os.isatty(2)
        os.write(2, (b"\x1b[?25h\n" if tty else b"") + b"interrupted\n")
    finally:
        os._exit(INTERRUPTED)


def _watch(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        if not data:
            return
        if signal.SIGINT in data:
            _exit_interrupted()


def install_interrupt_handler() -> None:
    """Ctrl-C (SIGINT) at any moment ends the command with exit code 130 and one line on stderr.

    Python runs a signal handler only between bytecodes of the main thread, which can sit in
    one XLA call for seconds; the C-level handler also writes the signal to a pipe that a
    watcher thread reads, so the exit comes at once either way. Installed once, from the
    console script before anything heavy is imported (and by `app()`); importing this module
    elsewhere (tests, notebooks) leaves Ctrl-C alone. Only Python's own start-up, before the
    console script runs (some 50 ms), still ends with its traceback."""
    current = signal.getsignal(signal.SIGINT)
    if current in (_exit_interrupted, signal.SIG_IGN) or threading.current_thread() is not threading.main_thread():
        return  # installed already; or ignored on purpose (a background job of a script), which stays so
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, _exit_interrupted)
    threading.Thread(target=_watch, args=(read_fd,), name="teamsift-interrupt", daemon=True).start()


if __name__ == "__main__" or os.path.basename(sys.argv[0]).removesuffix(".exe") == "teamsift":
    install_interrupt_handler()  # the console script: before typer, rich, JAX

from pathlib import Path

import typer
from typer.core import TyperGroup

import teamsift
from teamsift.cli import bench, data, pools, train, value
from teamsift.cli.common import JSON_OPTION, emit, usage_error

#: click's error base class, whichever click typer uses (typer >= 0.25 carries its own copy)
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _Commands(TyperGroup):
    """The top-level group: usage errors (a bad option value, a missing argument) print one
    line, like every other refusal, instead of a usage block and a framed panel."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _CLICK_ERROR as exc:
            usage_error(exc)
        except typer.Abort:
            _exit_interrupted()
        sys.exit(code if isinstance(code, int) else 0)


class _App(typer.Typer):
    def __call__(self, *args, **kwargs):
        install_interrupt_handler()
        return super().__call__(*args, **kwargs)


def _print_version(show: bool) -> None:
    if show:
        sys.stdout.write(f"teamsift {teamsift.__version__}\n")
        raise typer.Exit()


HELP = ("teamsift: learn good multi-agent behaviour from data of mixed quality. Results go to stdout (tables, or one "
        "JSON object with --json); progress and messages go to stderr. Nothing is overwritten without --overwrite; "
        "exit codes: 0 done, 1 unexpected error, 2 refused, 130 interrupted.")

app = _App(cls=_Commands, add_completion=False, no_args_is_help=True, help=HELP)


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                          help="Print teamsift's version and exit.")) -> None:
    pass


for group in (data.app, value.app, train.app):
    app.registered_commands += group.registered_commands
app.add_typer(data.import_app, name="import")
app.add_typer(data.data_app, name="data")
app.add_typer(pools.app, name="pools")
app.add_typer(bench.app, name="bench")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), help="Directory for the demo's datasets, plot, policies and results."),
    quick: bool = typer.Option(False, help="Tiny sizes (for tests): seconds, not a minute."),
    seed: int = typer.Option(0, help="Seed of the data, the training and the evaluation."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the demo's files in a non-empty --out."),
    as_json: bool = JSON_OPTION,
):
    """Find the good individuals of a mixed population from the team score alone, then learn from them.

    Exchange Values, scored against the hidden types; then BC, EV2BC, group-BC and an oracle (docs/demo.md)."""
    from teamsift.bench.demo import DemoError, run_demo
    from teamsift.cli.common import fail
    from teamsift.cli.demo import render

    try:
        result = run_demo(out, quick=quick, seed=seed, overwrite=overwrite, progress=not as_json)
    except DemoError as exc:
        fail(str(exc))
    emit(result, as_json, render)


def main() -> None:
    """The console script `teamsift`."""
    install_interrupt_handler()
    app()


if __name__ == "__main__":
    main()
