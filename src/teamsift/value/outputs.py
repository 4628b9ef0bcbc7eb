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
    from teamsift.value.report import METHODS, plot_values, value_dataset

    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    target = check_out_dir(default_out_dir(dataset_path, method) if out is None else out, dataset_path, overwrite)
    dataset = load_dataset(dataset_path)
    warnings = advise(dataset, method, score)

    def write(tmp: Path) -> dict:
        stage_options = {**options, "stage1_out": tmp / STAGE1_FILE} if method == "ardnem" else options
        report = value_dataset(dataset, method, key, score=score, progress=progress, out_dir=tmp, **stage_options)
        plots = [str(p) for p in plot_values(report, tmp)] + report.pop("extra_plots", [])
        report = _replace_paths(_jsonable({"format": VALUES_FORMAT, **report, "warnings": warnings,
                                           "plots": plots}), str(tmp), str(target))
        report["out"] = str(target)
        (tmp / VALUES_CSV).write_text(values_csv(report), encoding="utf-8")
        report["files"] = sorted([str(target / p.name) for p in tmp.iterdir()] + [str(target / VALUES_JSON)])
        (tmp / VALUES_JSON).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return report

    # still ours to replace when it appeared meanwhile
    return write_directory(target, write, overwrite=overwrite, check=lambda t: check_out_dir(t, dataset_path, overwrite))
