"""Progress bars for long work, always on stderr so that `--json` output on stdout stays clean.

On a terminal the bar redraws in place. When stderr is a file or a pipe (`nohup`, CI, `2> log`)
a live bar draws nothing, so the same progress is written as plain lines instead: one line
per task every `LOG_INTERVAL_S` seconds, even while a long step has not advanced it (a
heartbeat with the elapsed time), and one when it completes, e.g.

    SIT Stage I (ARDNEM) 4000/20000 · 0:01:02 elapsed · 0:04:08 left · loss 0.0312
"""

from __future__ import annotations

import datetime
import threading
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn

STDERR = Console(stderr=True)
LOG_INTERVAL_S = 30.0


def _clock(seconds: float | None) -> str:
    return str(datetime.timedelta(seconds=int(seconds or 0)))


class LoggedProgress(Progress):
    """A Progress that also writes plain progress lines, for consoles that are not terminals."""

    def __init__(self, *columns, log_interval_s: float = LOG_INTERVAL_S, **kwargs):
        super().__init__(*columns, **kwargs)
        self.log_interval_s = log_interval_s
        self._logged_at: dict[TaskID, float] = {}
        self._closed: set[TaskID] = set()  # finished tasks whose last line is written
        self._stopped = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def start(self) -> None:
        """No live display (it would only add blank lines to a log); a heartbeat thread writes
        the due lines of tasks that a long step keeps from advancing."""
        if self.disable or self._heartbeat is not None:
            return
        self._stopped.clear()
        self._heartbeat = threading.Thread(target=self._beat, name="teamsift-progress-log", daemon=True)
        self._heartbeat.start()

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._stopped.set()
            self._heartbeat.join()
            self._heartbeat = None

    def _beat(self) -> None:
        while not self._stopped.wait(min(max(self.log_interval_s / 4, 0.05), 5.0)):
            with self._lock:  # add_task may grow the dict meanwhile
                task_ids = list(self._logged_at)
            for task_id in task_ids:
                self._maybe_log(task_id)

    def add_task(self, *args, **kwargs) -> TaskID:
        with self._lock:
            task_id = super().add_task(*args, **kwargs)
            self._logged_at[task_id] = time.monotonic()  # its first line comes one interval later
        return task_id

    def update(self, task_id: TaskID, **kwargs) -> None:
        super().update(task_id, **kwargs)
        self._maybe_log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_log(task_id)

    def _maybe_log(self, task_id: TaskID) -> None:
        if self.disable:
            return
        with self._lock:  # the heartbeat thread and the caller's updates take turns
            task, now = self._tasks.get(task_id), time.monotonic()
            if task is None or task_id in self._closed:
                return
            if not task.finished and now - self._logged_at[task_id] < self.log_interval_s:
                return
            self._logged_at[task_id] = now
            if task.finished:
                self._closed.add(task_id)
            line = self._line(task)
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    @staticmethod
    def _line(task) -> str:
        total = "?" if task.total is None else f"{task.total:g}"
        parts = [f"{task.description} {task.completed:g}/{total}", f"{_clock(task.elapsed)} elapsed"]
        if not task.finished and task.time_remaining is not None:
            parts.append(f"{_clock(task.time_remaining)} left")
        parts += [f"{name} {value}" for name, value in task.fields.items()]
        return " · ".join(parts)


def progress_bar(enabled: bool = True, *extra_columns, console: Console | None = None) -> Progress:
    """A rich progress bar on stderr: label, bar, n/total, extra columns, elapsed, remaining;
    plain progress lines instead where stderr is not a terminal."""
    console = STDERR if console is None else console
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *extra_columns,
               TimeElapsedColumn(), TimeRemainingColumn())
    kind = Progress if console.is_terminal else LoggedProgress
    return kind(*columns, console=console, disable=not enabled, transient=True)
