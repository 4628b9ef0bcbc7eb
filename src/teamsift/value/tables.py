"""Exchange Values over episode tables larger than memory (issue 20, "valuation beyond
memory"): the dataset estimator of `teamsift.value.exchange.dataset_ev`,

    EV̂_i = mean{v_m : i ∈ G_m} − mean{v_m : i ∉ G_m},      SE_i = sqrt(s₁²/n₁ + s₀²/n₀)

(Select to Perfect, methods.md §1, Welch standard error), computed by DuckDB over Parquet
files — one file, a directory of shards, a glob, 10⁸ episodes and more — in bounded
memory: DuckDB scans the files in streams and aggregates in a hash table that spills to
`temp_directory` past `memory_limit`. No table is loaded into Python; what comes back is
one row per individual.

    >>> result = table_ev("shards/*.parquet", score="return", memory_limit="2GB")
    >>> result.ranking()[:10]

Layouts (one row per episode in both; extra columns are ignored):

* **list** — one list column of ids (`ids="agent_ids"`, the default) and a score column.
  A teamsift dataset's ``episodes.parquet`` is this layout (scores in ``return`` and
  ``score_<name>``; `score="v_final"` finds ``score_v_final``), so a dataset directory is
  a source as it is, and ``teamsift data export table`` writes it as shards. Lists may
  differ in length (groups of different sizes); each must be non-empty.
* **wide** — one id column per slot (`ids=["p0", "p1", "p2"]`) and a score column.

Ids are strings or integers (the same kind in every file; a null id is refused), scores
integers, floats or decimals (read as float64; null, NaN and ±inf are refused). A bad
value is reported with its file, column and row. A long table (one row per episode and
member) is not read: ``SELECT episode, list(individual), any_value(score) ... GROUP BY
episode`` in DuckDB turns it into the list layout.

How, in three streaming scans (the first two read the score column only):

1. E, Σv, min, max and the number of null or non-finite scores (refused before going on);
2. with the global mean m = Σv/E and x = v − m: Σx and Σx² over all episodes;
3. per individual i, over the episodes containing it: n₁ = count, s₁ = Σx, q₁ = Σx², after
   de-duplicating the ids of each episode (``list_distinct``: membership is a set, as in
   `dataset_ev`).

The "not containing" side is the difference (n₀ = E − n₁, s₀ = Σx − s₁, q₀ = Σx² − q₁)
and `exchange.contrast_from_sums` — the code `dataset_ev` ends in — turns the sums into
values and standard errors, so every edge case is the same: NaN where an individual is
in every episode, a +inf standard error where one side rests on one episode.

Numerics: float64 throughout, and every sum is DuckDB's compensated (Kahan) ``fsum``, so
the rounding error does not grow with the 10⁸ terms. Scores are centred on the exact
global mean (scan 2) before squaring, so the variances s² = (q − n·mean²)/(n − 1)
subtract numbers of the size of the spread, not of the mean: no catastrophic cancellation
when |mean| ≫ spread. The result equals `dataset_ev` on the same episodes to ~1e-12.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np

from teamsift.data.errors import DatasetError, short_exc
from teamsift.value.exchange import EVResult, contrast_from_sums

#: DuckDB's memory limit unless told otherwise (its own default is 80% of the machine's RAM).
DEFAULT_MEMORY_LIMIT = "2GB"
#: A teamsift dataset directory's episode table (`teamsift.data.format.EPISODES_FILE`).
DATASET_EPISODES = "episodes.parquet"
DATASET_META = "meta.json"
#: Named scores of a teamsift episode table are stored as columns `score_<name>`.
SCORE_PREFIX = "score_"
LAYOUTS = ("list", "wide")
_GLOB_CHARS = set("*?[")
_CHUNK = 1 << 20  # individuals per chunk of `TableStatistics.ev`
_FILE_COLUMN = "_teamsift_file"  # the column DuckDB adds with each row's file, to locate bad rows

Source = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


# ---------------------------------------------------------------------------------------
# Which files, which columns
# ---------------------------------------------------------------------------------------


def _sources(source: Source) -> list[str]:
    if isinstance(source, (str, os.PathLike)):
        return [os.fspath(source)]
    items = [os.fspath(s) for s in source]
    if not items:
        raise DatasetError("(no source)", "source", "at least one Parquet file, directory or glob", "an empty list")
    return items


def table_files(source: Source) -> list[Path]:
    """The Parquet files of `source`, in order, each once: a file; a teamsift dataset
    directory (its ``episodes.parquet``); another directory (every ``*.parquet`` below it,
    sorted, hidden names skipped); a glob (``shards/*.parquet``, ``**`` recursive); or a
    list of these. Raises `DatasetError` naming the source when nothing is there."""
    files: list[Path] = []
    for item in _sources(source):
        path = Path(item)
        if path.is_dir():
            if (path / DATASET_META).is_file() and (path / DATASET_EPISODES).is_file():
                found = [path / DATASET_EPISODES]
            else:
                found = sorted(p for p in path.rglob("*.parquet") if p.is_file()
                               and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise DatasetError(item, "source", "a directory holding Parquet files (*.parquet)",
                                   "none in it")
        elif path.is_file():
            found = [path]
        elif _GLOB_CHARS & set(item):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                raise DatasetError(item, "source", "Parquet files matching the glob", "no file matches")
        else:
            raise DatasetError(item, "source", "a Parquet file, a directory of them or a glob", "no such file")
        files += found
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def table_root(source: Source) -> Path:
    """Where a table's outputs go beside: the directory or file named, or a glob's leading
    directory (``shards/*.parquet`` -> ``shards``)."""
    items = _sources(source)
    if len(items) != 1:
        raise ValueError(f"source: {len(items)} sources have no one place for outputs beside them; name --out")
    path = Path(items[0])
    if not path.exists() and _GLOB_CHARS & set(items[0]):
        fixed = []
        for part in path.parts:
            if _GLOB_CHARS & set(part):
                break
            fixed.append(part)
        path = Path(*fixed) if fixed else Path(".")
    return path


@dataclasses.dataclass(frozen=True)
class TableSource:
    """A checked episode table: its files, layout and columns.

    Attributes:
        files: the Parquet files, in order.
        layout: "list" (one list column of ids) or "wide" (one id column per slot).
        id_columns: the id column(s).
        score_column: the score column (the `score` asked for, or ``score_<score>``).
        id_kind: "string" or "integer".
    """

    files: tuple[Path, ...]
    layout: str
    id_columns: tuple[str, ...]
    score_column: str
    id_kind: str


def _id_kind(t) -> str | None:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t):
        return "string"
    if pa.types.is_integer(t):
        return "integer"
    return None


def _list_value_type(t):
    import pyarrow as pa

    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or \
            getattr(pa.types, "is_list_view", bool)(t) or getattr(pa.types, "is_large_list_view", bool)(t):
        return t.value_type
    return None


def _is_numeric(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def check_table(source: Source, *, ids: str | Sequence[str] = "agent_ids", score: str = "return") -> TableSource:
    """Check every file's schema (its footer only) and return the `TableSource`.

    `ids` names one list column (list layout) or one or more scalar id columns, one per
    slot (wide layout); `score` names the score column, or ``score_<score>`` where only
    that exists (a teamsift episode table). Raises `DatasetError` naming the file, the
    column and what was expected: an unreadable file, a missing column, ids that are not
    strings or integers (or a different kind than in the first file), a score that is
    not numeric."""
    import pyarrow.parquet as pq

    columns = [ids] if isinstance(ids, str) else list(ids)
    if not columns or not all(isinstance(c, str) and c for c in columns) or len(set(columns)) != len(columns):
        raise ValueError(f"ids: expected a column name or distinct column names (one per slot), got {ids!r}")
    if not isinstance(score, str) or not score:
        raise ValueError(f"score: expected a column name, got {score!r}")
    files = table_files(source)
    layout = kind = score_column = None
    for path in files:
        try:
            schema = pq.read_schema(path)
        except Exception as exc:  # noqa: BLE001 - any reader failure means: not a Parquet file we can read
            raise DatasetError(path, "(file)", "a readable Parquet file", short_exc(exc)) from None
        names = schema.names
        if score_column is None:
            score_column = score if score in names or SCORE_PREFIX + score not in names else SCORE_PREFIX + score
        for column in columns:
            if column not in names:
                raise DatasetError(path, column, "a column of ids" + (" (a list per episode)" if len(columns) == 1
                                                                       else " (one per slot)"),
                                   f"no such column (columns: {', '.join(names)})")
        if score_column not in names:
            alias = f" or {SCORE_PREFIX + score!r}" if score_column == score else ""
            raise DatasetError(path, score, f"a score column {score!r}{alias}", f"none (columns: {', '.join(names)})")
        types = [schema.field(c).type for c in columns]
        values = [_list_value_type(t) for t in types]
        if len(columns) == 1 and values[0] is not None:
            file_layout, kinds = "list", [_id_kind(values[0])]
        elif all(v is None for v in values):
            file_layout, kinds = "wide", [_id_kind(t) for t in types]
        else:
            lists = [c for c, v in zip(columns, values) if v is not None]
            raise DatasetError(path, lists[0], "one list column of ids, or scalar id columns (one per slot)",
                               f"a list column among {len(columns)} id columns")
        for column, t, k in zip(columns, types, kinds):
            what = "a list of strings or integers" if file_layout == "list" else "strings or integers"
            if k is None:
                raise DatasetError(path, column, f"ids: {what}", f"type {t}")
            if kind is not None and k != kind:
                raise DatasetError(path, column, f"{kind} ids (as in {files[0]})", f"{k} ids (type {t})")
            kind = k
        if layout is not None and file_layout != layout:
            raise DatasetError(path, columns[0], f"the {layout} layout (as in {files[0]})",
                               f"the {file_layout} layout")
        layout = file_layout
        score_type = schema.field(score_column).type
        if not _is_numeric(score_type):
            raise DatasetError(path, score_column, "numeric scores (integer, float or decimal)", f"type {score_type}")
    return TableSource(tuple(files), layout, tuple(columns), score_column, kind)


# ---------------------------------------------------------------------------------------
# DuckDB
# ---------------------------------------------------------------------------------------


def _check_settings(memory_limit, threads) -> str:
    if threads is not None and (not isinstance(threads, (int, np.integer)) or isinstance(threads, bool)
                                or threads < 1):
        raise ValueError(f"threads: expected an integer >= 1 (or None: every core), got {threads!r}")
    if isinstance(memory_limit, (int, np.integer)) and not isinstance(memory_limit, bool) and memory_limit > 0:
        return f"{int(memory_limit)}B"
    if not isinstance(memory_limit, str) or not memory_limit.strip():
        raise ValueError(f"memory_limit: expected a size such as '2GB' or '512MiB' (or bytes as an int), "
                         f"got {memory_limit!r}")
    return memory_limit


@contextlib.contextmanager
def connect(*, memory_limit: str | int = DEFAULT_MEMORY_LIMIT, threads: int | None = None,
            temp_directory: str | os.PathLike | None = None) -> Iterator:
    """An in-memory DuckDB connection that keeps to `memory_limit` (a size such as "2GB",
    or bytes) and `threads` (None: every core) and spills what does not fit to
    `temp_directory` (None: a fresh directory under the system's temporary directory,
    removed afterwards). Closed on exit."""
    import duckdb

    memory_limit = _check_settings(memory_limit, threads)
    if threads is not None and not isinstance(threads, int):
        threads = int(threads)
    own = temp_directory is None
    spill = Path(tempfile.mkdtemp(prefix="teamsift-duckdb-")) if own else Path(temp_directory)
    try:
        con = duckdb.connect(":memory:", config={"threads": threads} if threads else {})
        try:
            try:
                con.execute(f"SET memory_limit = '{_literal(memory_limit)}'")
            except duckdb.Error as exc:
                raise ValueError(f"memory_limit: expected a size such as '2GB' or '512MiB', got {memory_limit!r} "
                                 f"({short_exc(exc)})") from None
            con.execute(f"SET temp_directory = '{_literal(str(spill))}'")
            con.execute("SET preserve_insertion_order = false")  # no ordering to keep: less memory
            con.execute("SET enable_progress_bar = false")
            yield con
        finally:
            con.close()
    finally:
        if own:
            shutil.rmtree(spill, ignore_errors=True)


def _literal(text: str) -> str:
    return text.replace("'", "''")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_READ = "read_parquet($files, union_by_name = true, hive_partitioning = false{extra})"


def _read(extra: str = "") -> str:
    return _READ.format(extra=extra)


def _members(src: TableSource) -> tuple[str, str]:
    """(SQL list of an episode's ids, SQL condition of a malformed episode)."""
    columns = [_ident(c) for c in src.id_columns]
    if src.layout == "list":
        ids = columns[0]
        return ids, f"{ids} IS NULL OR len({ids}) = 0 OR list_count({ids}) < len({ids})"
    return "[" + ", ".join(columns) + "]", " OR ".join(f"{c} IS NULL" for c in columns)


def _first_bad_row(con, src: TableSource, condition: str, value: str):
    """(file, row, value) of the first row where `condition` holds."""
    extra = f", filename = '{_FILE_COLUMN}', file_row_number = true"
    row = con.execute(f"SELECT {_FILE_COLUMN}, file_row_number, {value} FROM {_read(extra)} WHERE {condition} "
                      f"ORDER BY {_FILE_COLUMN}, file_row_number LIMIT 1",
                      {"files": [str(f) for f in src.files]}).fetchall()
    return row[0] if row else (src.files[0], "?", None)


@dataclasses.dataclass(frozen=True, eq=False)
class TableStatistics:
    """The sufficient statistics of the dataset estimator over a table (module doc).

    Attributes:
        source: the checked table.
        score: the score's name as asked for.
        ids: every individual, sorted (as `np.unique` sorts) [n].
        n1, s1, q1: per individual, over the episodes containing it: their number, Σx,
            Σx² with x = v − mean [n].
        episodes: E; mean: the global mean score; total_sum, total_sq: Σx, Σx² over all
            episodes; lowest, highest: the smallest and largest score.
    """

    source: TableSource
    score: str
    ids: np.ndarray
    n1: np.ndarray
    s1: np.ndarray
    q1: np.ndarray
    episodes: int
    mean: float
    total_sum: float
    total_sq: float
    lowest: float
    highest: float

    def ev(self) -> EVResult:
        """The Exchange Values (`dataset_ev`'s result on the same episodes), computed in
        chunks of individuals so that a population of 10⁷ needs no 10⁷-sized temporaries."""
        n = len(self.ids)
        values, stderr = np.empty(n), np.empty(n)
        for lo in range(0, n, _CHUNK):
            part = slice(lo, lo + _CHUNK)
            values[part], stderr[part], _ = contrast_from_sums(self.n1[part], self.s1[part], self.q1[part],
                                                               self.episodes, self.total_sum, self.total_sq)
        return EVResult(self.ids, values, stderr, self.n1, method="dataset", score=self.score)


def table_statistics(source: Source, *, ids: str | Sequence[str] = "agent_ids", score: str = "return",
                     memory_limit: str | int = DEFAULT_MEMORY_LIMIT, threads: int | None = None,
                     temp_directory: str | os.PathLike | None = None) -> TableStatistics:
    """Check the table (`check_table`) and compute the estimator's sufficient statistics
    with DuckDB in three streaming scans (module doc) under `memory_limit` and `threads`,
    spilling to `temp_directory` (`connect`)."""
    import duckdb

    src = check_table(source, ids=ids, score=score)
    files = {"files": [str(f) for f in src.files]}
    v = f"CAST({_ident(src.score_column)} AS DOUBLE)"
    members, malformed = _members(src)
    with connect(memory_limit=memory_limit, threads=threads, temp_directory=temp_directory) as con:
        try:
            # Scan 1: E, Σv, range, and the scores no estimate can use.
            episodes, total, lowest, highest, bad = con.execute(
                f"SELECT count(*), fsum(v), min(v), max(v), count(*) FILTER (WHERE v IS NULL OR NOT isfinite(v)) "
                f"FROM (SELECT {v} AS v FROM {_read()})", files).fetchall()[0]
            if bad:
                file, row, value = _first_bad_row(con, src, f"{v} IS NULL OR NOT isfinite({v})", v)
                raise DatasetError(file, src.score_column, "finite scores (no null, NaN or ±inf)",
                                   f"{value} at row {row}")
            if episodes == 0:
                raise DatasetError(src.files[0], src.score_column, "at least one episode", "no rows in any file")
            mean = total / episodes
            if not np.isfinite(mean):  # Σv overflowed float64: centre on the midrange instead
                mean = lowest / 2 + highest / 2
            params = {**files, "mean": mean}
            # Scan 2: Σx and Σx² over all episodes, x = v − mean.
            total_sum, total_sq = con.execute(
                f"SELECT fsum(x), fsum(x * x) FROM (SELECT {v} - $mean AS x FROM {_read()})", params).fetchall()[0]
            # Scan 3: per individual over the episodes containing it (ids de-duplicated per
            # episode); a malformed episode's row goes to the NULL id, reported below.
            rows = con.sql(
                f"SELECT id, count(*) AS n1, fsum(x) AS s1, fsum(x * x) AS q1 FROM ("
                f"  SELECT unnest(CASE WHEN {malformed} THEN [NULL] ELSE list_distinct({members}) END) AS id,"
                f"         {v} - $mean AS x FROM {_read()}"
                f") GROUP BY id ORDER BY id", params=params).to_arrow_table()  # Arrow: no second copy
            if rows.column("id").null_count:
                what = ("a non-empty list of ids without nulls" if src.layout == "list"
                        else "an id in every slot (no nulls)")
                column = src.id_columns[0] if src.layout == "list" else None
                file, row, value = _first_bad_row(con, src, malformed, members)
                if column is None:
                    column = next(c for c, x in zip(src.id_columns, value or []) if x is None) \
                        if value else src.id_columns[0]
                raise DatasetError(file, column, what, f"{value!r} at row {row}")
        except duckdb.OutOfMemoryException as exc:
            raise MemoryError(f"DuckDB ran out of memory under memory_limit={memory_limit!r} "
                              f"(temp_directory: {temp_directory or 'a fresh temporary directory'}): raise "
                              f"memory_limit, or give a temp_directory on a disk with room to spill "
                              f"({short_exc(exc)})") from None
        except duckdb.Error as exc:
            raise DatasetError(_describe(source), "(scan)", "readable Parquet files of one layout",
                               short_exc(exc)) from None
    columns = {name: _column(rows, name) for name in ("n1", "s1", "q1")}
    ids = _ids_array(rows, src.id_kind)
    del rows
    return TableStatistics(source=src, score=score, ids=ids, n1=columns["n1"].astype(np.int64, copy=False),
                           s1=columns["s1"], q1=columns["q1"], episodes=int(episodes), mean=float(mean),
                           total_sum=float(total_sum), total_sq=float(total_sq), lowest=float(lowest),
                           highest=float(highest))


def _column(table, name: str) -> np.ndarray:
    chunks = table.column(name).chunks
    return np.concatenate([c.to_numpy() for c in chunks]) if chunks else np.zeros(0)


def _ids_array(table, kind: str) -> np.ndarray:
    if kind == "string":
        return np.asarray(table.column("id").to_pylist(), dtype=str) if table.num_rows else np.asarray([], dtype=str)
    return _column(table, "id").astype(np.int64, copy=False)


def _describe(source: Source) -> str:
    return ", ".join(_sources(source))


def table_ev(source: Source, *, ids: str | Sequence[str] = "agent_ids", score: str = "return",
             memory_limit: str | int = DEFAULT_MEMORY_LIMIT, threads: int | None = None,
             temp_directory: str | os.PathLike | None = None) -> EVResult:
    """Exchange Values of every individual of an episode table on disk — `dataset_ev`
    (EV̂_i = mean{v : i ∈ G} − mean{v : i ∉ G}, Welch SE, counts, the same edge cases)
    computed by DuckDB over Parquet in bounded memory (module doc).

    Args:
        source: a Parquet file, a directory of shards, a teamsift dataset directory, a
            glob, or a list of these (`table_files`).
        ids: the list column of ids ("agent_ids"; "policy_ids" gives the true individuals
            of anonymised teamsift data), or the id columns of a wide table, one per slot.
        score: the score column ("return"; a name with a ``score_<name>`` column works).
        memory_limit: DuckDB's memory limit ("2GB", "512MiB", or bytes).
        threads: DuckDB's threads (None: every core).
        temp_directory: where DuckDB spills (None: a fresh temporary directory).

    Raises:
        DatasetError: a missing file or column, a wrong type, a null id or a non-finite
            score (the message names the file, the column, what was expected).
        MemoryError: DuckDB could not keep within `memory_limit` even by spilling.
    """
    return table_statistics(source, ids=ids, score=score, memory_limit=memory_limit, threads=threads,
                            temp_directory=temp_directory).ev()
