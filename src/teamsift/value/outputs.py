"""`teamsift value` end to end: check where the outputs go, check that the method fits the
data, value, and write the values (CSV and JSON) and plots to one directory.

    >>> report = value_to_dir("data/pop", "ev", jax.random.key(0), score="v_final")
    >>> report["out"], report["files"], report["warnings"]

The output directory defaults to ``<dataset>-values-<method>`` beside the dataset, never
inside it. It is written as a hidden sibling and renamed into place when complete; an
existing non-empty one is replaced only with overwrite=True and only if an earlier run
wrote it (its values.json says so).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from teamsift.fileio import write_directory

VALUES_FORMAT = "teamsift-values"
VALUES_JSON = "values.json"
VALUES_CSV = "values.csv"
STAGE1_FILE = "ardnem-stage1.msgpack"
CSV_COLUMNS = ("rank", "id", "value", "stderr", "count", "true_level")


def default_out_dir(dataset_path: str | os.PathLike, method: str) -> Path:
    """``<dataset>-values-<method>``, beside the dataset directory (relative if the dataset path is)."""
    path = Path(dataset_path)
    if path.name in ("", ".", ".."):
        path = path.resolve()
    return path.parent / f"{path.name}-values-{method}"


def _is_values_dir(path: Path) -> bool:
    try:
        return json.loads((path / VALUES_JSON).read_text(encoding="utf-8")).get("format") == VALUES_FORMAT
    except Exception:  # noqa: BLE001
        return False


def check_out_dir(out: str | os.PathLike, dataset_path: str | os.PathLike, overwrite: bool) -> Path:
    """The resolved output directory, or FileExistsError / ValueError saying why not.

    Refused: a path inside the dataset (or the dataset itself, or one holding it), an
    existing file, and a non-empty directory unless `overwrite` and an earlier
    `teamsift value` wrote it.
    """
    out_path = Path(out).resolve()
    dataset = Path(dataset_path).resolve()
    if out_path == dataset or dataset in out_path.parents:
        raise ValueError(f"--out {out}: inside the dataset directory {dataset_path}; outputs never go into a dataset "
                         f"(default: {default_out_dir(dataset_path, 'METHOD')})")
    if out_path in dataset.parents:
        raise ValueError(f"--out {out}: holds the dataset {dataset_path}; choose a directory of its own")
    if out_path.exists() or out_path.is_symlink():
        if not out_path.is_dir():
            raise FileExistsError(f"--out {out}: exists and is not a directory")
        if any(out_path.iterdir()):
            if not overwrite:
                raise FileExistsError(f"--out {out}: exists and is not empty (pass --overwrite to replace it)")
            if not _is_values_dir(out_path):
                raise FileExistsError(f"--out {out}: exists and was not written by `teamsift value` (no {VALUES_JSON}"
                                      f" of format {VALUES_FORMAT!r}); refusing to replace it")
    return out_path


def values_csv(report: dict[str, Any]) -> str:
    """The report's table as CSV (empty cells for undefined values)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.get("table", []):
        writer.writerow(["" if row.get(column) is None else row[column] for column in CSV_COLUMNS])
    return buffer.getvalue()


def _jsonable(value):
    """Plain JSON: numpy scalars and arrays as Python values, NaN and ±inf as None."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _replace_paths(value, old: str, new: str):
    if isinstance(value, str):
        return new + value[len(old):] if value == old or value.startswith(old + os.sep) else value
    if isinstance(value, list):
        return [_replace_paths(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace_paths(v, old, new) for k, v in value.items()}
    return value


def value_to_dir(dataset_path: str | os.PathLike, method: str, key, *, out: str | os.PathLike | None = None,
                 overwrite: bool = False, score: str | None = None, progress: bool = False,
                 **options) -> dict[str, Any]:
    """Value a dataset with `method` and write the outputs; return the report.

    Order: the output directory is checked (before anything is loaded or trained), the
    dataset loaded, `guidance.advise` run (an unsuitable method raises
    `guidance.UnsuitableMethod`), then `report.value_dataset` with `options`.

    Writes into `out` (default `default_out_dir`): values.csv (rank, id, value, stderr,
    count, true_level), values.json (the whole report), values.png and, for ardnem, the
    SIT Figure 3 plots and the Stage I result (`STAGE1_FILE`, for `train --stage1`).
    The report adds "out", "files", "plots" and "warnings".
    """
    from teamsift.data import load_dataset
    from teamsift.value.guidance import advise
    from teamsift.value.report import METHODS, value_dataset

    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    target = check_out_dir(default_out_dir(dataset_path, method) if out is None else out, dataset_path, overwrite)
    dataset = load_dataset(dataset_path)
    warnings = advise(dataset, method, score)

    def make(tmp: Path) -> dict:
        stage_options = {**options, "stage1_out": tmp / STAGE1_FILE} if method == "ardnem" else options
        return {**value_dataset(dataset, method, key, score=score, progress=progress, out_dir=tmp, **stage_options),
                "warnings": warnings}

    # still ours to replace when it appeared meanwhile
    return _write_values(target, make, overwrite, check=lambda t: check_out_dir(t, dataset_path, overwrite))


def _write_values(target: Path, make, overwrite: bool, check) -> dict[str, Any]:
    """Write `make(tmp)`'s report into `target` atomically: values.csv, values.json and
    values.png (plus the method's own plots, `extra_plots`); return the report with "out",
    "files" and "plots"."""
    from teamsift.value.report import plot_values

    def write(tmp: Path) -> dict:
        report = make(tmp)
        plots = [str(p) for p in plot_values(report, tmp)] + report.pop("extra_plots", [])
        report = _replace_paths(_jsonable({"format": VALUES_FORMAT, **report, "plots": plots}), str(tmp),
                                str(target))
        report["out"] = str(target)
        (tmp / VALUES_CSV).write_text(values_csv(report), encoding="utf-8")
        report["files"] = sorted([str(target / p.name) for p in tmp.iterdir()] + [str(target / VALUES_JSON)])
        (tmp / VALUES_JSON).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return report

    return write_directory(target, write, overwrite=overwrite, check=check)


def value_table_to_dir(source, *, out: str | os.PathLike | None = None, overwrite: bool = False,
                       score: str | None = None, ids="agent_ids", memory_limit=None, threads: int | None = None,
                       temp_directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """`value_to_dir` for an episode table too large for memory (`teamsift.value.tables`):
    Exchange Values computed by DuckDB over Parquet shards under `memory_limit`, written
    as the same files (values.csv, values.json, values.png) to `out` (default
    ``<table>-values-ev`` beside the table's file, directory or a glob's directory).

    The output directory is checked first; the guidance checks of `guidance.advise` that
    the table's statistics allow (at least two episodes, a score that varies, not every
    id in one episode only, not every id in every episode; warnings for the rest) run on
    the statistics, so a refusal comes after the scans but before anything is written.
    A table carries no ground truth: `true_level` is empty and there is no accuracy.
    """
    from teamsift.value.guidance import IdLayout, check_scores, ev_warnings
    from teamsift.value.tables import DEFAULT_MEMORY_LIMIT, table_root, table_statistics

    roots = [table_root(s) for s in ([source] if isinstance(source, (str, os.PathLike)) else source)]
    if out is None:
        if len(roots) != 1:
            raise ValueError("--out: several table sources have no one place for outputs beside them; name --out")
        out = default_out_dir(roots[0].with_suffix("") if roots[0].suffix == ".parquet" else roots[0], "ev")

    def check(path) -> Path:
        for root in roots:
            checked = check_out_dir(path, root, overwrite)
        return checked

    target = check(out)
    name = score or "return"
    stats = table_statistics(source, ids=ids, score=name, memory_limit=memory_limit or DEFAULT_MEMORY_LIMIT,
                             threads=threads, temp_directory=temp_directory)
    check_scores("ev", stats.episodes, stats.lowest, stats.highest, name)
    warnings = ev_warnings(IdLayout(episodes=stats.episodes, ids=stats.ids, appearances=stats.n1, fixed_slots=(),
                                    slots=0))
    result = stats.ev()
    table = result.to_table()
    for row in table:
        row["true_level"] = None
    described = str(source) if isinstance(source, (str, os.PathLike)) else ", ".join(map(str, source))
    report = {"dataset": described, "method": "ev", "score": name, "individuals": len(result.ids), "table": table,
              "accuracy": {}, "warnings": warnings,
              "table_source": {"files": len(stats.source.files), "layout": stats.source.layout,
                               "ids": list(stats.source.id_columns), "score_column": stats.source.score_column,
                               "episodes": stats.episodes, "engine": _duckdb_version(),
                               "memory_limit": str(memory_limit or DEFAULT_MEMORY_LIMIT), "threads": threads}}
    return _write_values(target, lambda tmp: report, overwrite, check=check)


def _duckdb_version() -> str:
    import duckdb

    return f"duckdb {duckdb.__version__}"
