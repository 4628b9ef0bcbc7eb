"""What every benchmark's result file shares: one file per budget, rows merged across runs."""

from __future__ import annotations

import json
import shlex
import zlib
from pathlib import Path

import jax

from teamsift.fileio import atomic_write_text


def named_key(key: jax.Array, *names: str) -> jax.Array:
    """`key` folded with a stable hash of each name (a row, a method): a cell's randomness does
    not depend on which other rows or methods a run includes, or in what order."""
    for name in names:
        key = jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)
    return key


def budget_differences(report: dict, other: dict, budget_fields: tuple[str, ...]) -> list[str]:
    """The budget fields (under "config") in which two results differ."""
    return [f for f in budget_fields if report.get("config", {}).get(f) != other.get("config", {}).get(f)]


def commands_of(report: dict) -> list[str]:
    return [c for c in report.get("commands") or [report.get("command", "")] if c]


def _words(command: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(command))
    except ValueError:  # not shell syntax: compared as it is
        return (command,)


def joined_commands(earlier: dict, later: dict) -> list[str]:
    """Both results' commands, each once (the same words, however quoted), `later`'s last."""
    later_commands = commands_of(later)
    later_words = {_words(c) for c in later_commands}
    return [c for c in commands_of(earlier) if _words(c) not in later_words] + later_commands


def merge_previous(report: dict, path: Path, budget_fields: tuple[str, ...], keep: tuple[str, ...]) -> dict:
    """Keep the `keep` entries (rows, studies, notes) of the earlier result at `path` when it
    ran with the same budget: a run over some environments adds to, or replaces, those rows.
    The earlier result's machine stays the report's: the cells made now on another machine
    carry theirs (`other_machine`), and the tables mark them."""
    if not path.is_file():
        return report
    previous = json.loads(path.read_text())
    if budget_differences(report, previous, budget_fields):
        return report
    report["commands"] = joined_commands(previous, report)
    if previous.get("machine"):
        report["machine"] = previous["machine"]
    for name in keep:
        if name in previous:
            report[name] = previous[name]
    return report


def other_machine(report: dict, machine: str) -> str | None:
    """`machine` when it is not the report's (the cells made there record it), else None."""
    return machine if machine and report.get("machine") != machine else None


def write_report(report: dict, markdown: str, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write <stem>.json (the report) and <stem>.md (its rendering) atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / f"{stem}.json", out_dir / f"{stem}.md")
    atomic_write_text(paths[0], json.dumps(report, indent=2) + "\n")
    atomic_write_text(paths[1], markdown)
    return paths
