"""Progress on consoles that are not terminals (nohup, CI, `2> log`) is written as plain lines."""

import io
import time

from rich.console import Console
from rich.progress import TextColumn

from teamsift.progress import LoggedProgress, progress_bar


def test_a_non_terminal_console_gets_plain_progress_lines():
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False, width=60)
    with progress_bar(True, TextColumn("loss {task.fields[loss]}"), console=console) as bar:
        assert isinstance(bar, LoggedProgress)
        bar.log_interval_s = 0.0  # every step writes a line
        task = bar.add_task("ARDNEM", total=4, loss="-")
        for step in range(4):
            bar.update(task, advance=1, loss=f"{1.0 / (step + 1):.2f}")
        bar.advance(task, 0)  # a finished task writes its last line once
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("ARDNEM 1/4 · 0:00:00 elapsed") and lines[0].endswith("loss 1.00")
    assert lines[-1].startswith("ARDNEM 4/4") and "left" not in lines[-1] and lines[-1].endswith("loss 0.25")
    assert len(lines) == 4  # long lines are not wrapped over two


def test_lines_wait_for_the_interval_and_a_disabled_bar_writes_nothing():
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False)
    with progress_bar(True, console=console) as bar:
        task = bar.add_task("slow", total=3)
        bar.advance(task)  # well inside the 30 s interval: no line yet
        assert stream.getvalue() == ""
        bar.advance(task, 2)  # finished: always one line
    assert stream.getvalue().splitlines() == [line for line in stream.getvalue().splitlines() if "slow 3/3" in line]
    quiet = io.StringIO()
    with progress_bar(False, console=Console(file=quiet, force_terminal=False)) as bar:
        bar.advance(bar.add_task("quiet", total=1))
    assert quiet.getvalue() == ""


def test_a_task_that_does_not_advance_still_gets_a_line_every_interval():
    stream = io.StringIO()
    with LoggedProgress(TextColumn("{task.description}"), console=Console(file=stream, force_terminal=False),
                        log_interval_s=0.2) as bar:
        bar.add_task("one long step", total=2)
        deadline = time.monotonic() + 30.0  # generous: the heartbeat thread writes after 0.2 s
        while stream.getvalue().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the caller is busy: no update, no advance
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2 and all(line.startswith("one long step 0/2 · ") for line in lines), lines
    after_stop = stream.getvalue()
    time.sleep(0.5)
    assert stream.getvalue() == after_stop  # leaving the `with` stops the heartbeat


def test_a_terminal_gets_the_live_bar():
    console = Console(file=io.StringIO(), force_terminal=True)
    assert not isinstance(progress_bar(True, console=console), LoggedProgress)
