"""Exchange Values over Parquet episode tables with DuckDB (`teamsift.value.tables`): the
same estimator as `dataset_ev` (methods.md §1), one file or many shards, the list and wide
layouts, the edge cases, and clear errors for bad input; `teamsift data export table` and
`teamsift value --table`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from teamsift.cli.main import app
from teamsift.data import DatasetError, load_dataset, write_dataset
from teamsift.data.testing import make_arrays, tiny_spec
from teamsift.data.tools import export_table
from teamsift.value.exchange import dataset_ev, dataset_ev_from
from teamsift.value.tables import connect, table_ev, table_files, table_statistics

runner = CliRunner()
TOL = dict(rtol=1e-9, atol=1e-9)


def assert_same(result, reference):
    """Same ids, counts, values and standard errors (NaN and inf where the reference has them)."""
    assert result.ids.tolist() == reference.ids.tolist()
    assert result.counts.tolist() == reference.counts.tolist()
    np.testing.assert_allclose(result.values, reference.values, equal_nan=True, **TOL)
    np.testing.assert_allclose(result.stderr, reference.stderr, equal_nan=True, **TOL)
    assert np.array_equal(np.isnan(result.values), np.isnan(reference.values))
    assert np.array_equal(np.isinf(result.stderr), np.isinf(reference.stderr))


def brute_force(groups, scores):
    """EV̂_i = mean{v : i ∈ G} − mean{v : i ∉ G} and the Welch SE, by masks and two-pass
    variances (the definition, without sums of squares); groups are sets."""
    scores = np.asarray(scores, np.float64)
    ids = sorted({i for g in groups for i in g})
    values, stderr, counts = [], [], []
    for i in ids:
        inside = np.array([i in set(g) for g in groups])
        a, b = scores[inside], scores[~inside]
        counts.append(len(a))
        values.append(a.mean() - b.mean() if len(b) else np.nan)
        if not len(b):
            stderr.append(np.nan)
        elif len(a) < 2 or len(b) < 2:
            stderr.append(np.inf)
        else:
            stderr.append(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    return np.array(ids), np.array(values), np.array(stderr), np.array(counts)


def write_list_table(path, groups, scores, *, id_type=None, score_name="return", **extra):
    id_type = id_type or (pa.string() if isinstance(groups[0][0], str) else pa.int64())
    columns = {"agent_ids": pa.array([list(g) for g in groups], pa.list_(id_type)), score_name: pa.array(scores),
               **extra}
    pq.write_table(pa.table(columns), path)
    return path


def random_groups(rng, episodes, population, size, *, names=True):
    codes = rng.integers(0, population, size=(episodes, size))
    return np.char.add("ind", codes.astype(str)) if names else codes


# --- the estimator ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A real (small) teamsift dataset: 5 individuals over 3 slots, repeats inside episodes."""
    arrays = make_arrays(tiny_spec(num_agents=3), [3] * 60, seed=4)
    return load_dataset(write_dataset(tmp_path_factory.mktemp("tables") / "pop", **arrays))


def test_a_teamsift_dataset_is_a_table_and_gives_dataset_ev(dataset):
    assert table_files(dataset.path) == [dataset.path / "episodes.parquet"]
    assert (np.sort(dataset.episodes["agent_ids"], axis=1)[:, 1:]
            == np.sort(dataset.episodes["agent_ids"], axis=1)[:, :-1]).any()  # duplicates to drop
    for score in ("return", "coverage", "incidents"):  # coverage: the column score_coverage
        result = table_ev(dataset.path, score=score, threads=1)
        assert_same(result, dataset_ev_from(dataset, score))
        assert result.method == "dataset" and result.score == score
    assert_same(table_ev(dataset.path, ids="policy_ids"), dataset_ev_from(dataset, id_column="policy_ids"))


def test_exported_shards_give_the_same_values_as_one_file(dataset, tmp_path):
    manifest = export_table(dataset.path, tmp_path / "shards", rows_per_shard=7)
    shards = sorted((tmp_path / "shards").glob("*.parquet"))
    assert len(shards) == len(manifest["shards"]) == 9 and manifest["episodes"] == 60
    assert "start" not in manifest["columns"] and {"agent_ids", "return", "score_coverage"} <= set(manifest["columns"])
    one = table_ev(dataset.path, score="coverage")
    for source in (tmp_path / "shards", str(tmp_path / "shards" / "*.parquet"), shards[::-1],
                   [*shards, shards[0]]):  # a directory, a glob, a list in any order; a file listed twice counts once
        assert_same(table_ev(source, score="coverage"), one)
    with pytest.raises(FileExistsError, match="already exists"):
        export_table(dataset.path, tmp_path / "shards")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not an episode table"):
        export_table(dataset.path, tmp_path / "mine", overwrite=True)
    with pytest.raises(ValueError, match="inside the source"):
        export_table(dataset.path, dataset.path / "table")


@pytest.mark.parametrize("names", [True, False], ids=["string ids", "integer ids"])
def test_synthetic_tables_equal_dataset_ev_and_the_definition(tmp_path, names):
    rng = np.random.default_rng(1)
    groups = random_groups(rng, 400, 40, 4, names=names)
    scores = rng.normal(size=400) * 2.0 + 1e6  # |mean| ≫ spread: sums of squares must be centred
    path = write_list_table(tmp_path / "t.parquet", groups.tolist(), scores)
    result = table_ev(path)
    assert_same(result, dataset_ev(groups, scores))
    ids, values, stderr, counts = brute_force(groups.tolist(), scores)
    assert result.ids.tolist() == ids.tolist() and result.counts.tolist() == counts.tolist()
    np.testing.assert_allclose(result.values, values, **TOL)
    np.testing.assert_allclose(result.stderr, stderr, **TOL)
    assert result.ids.dtype.kind == ("U" if names else "i")


def test_ids_sort_as_numpy_sorts_them_beyond_ascii(tmp_path):
    names = np.array(["Zoë", "zoe", "émile", "日本", "ß", "a b", "Ω", "😀", "A"])
    rng = np.random.default_rng(5)
    groups = names[rng.integers(0, len(names), size=(80, 3))]
    scores = rng.normal(size=80)
    assert_same(table_ev(write_list_table(tmp_path / "u.parquet", groups.tolist(), scores)),
                dataset_ev(groups, scores))


def test_wide_layout_equals_the_list_layout(tmp_path):
    rng = np.random.default_rng(2)
    groups = random_groups(rng, 300, 25, 3)
    scores = rng.normal(size=300)
    pq.write_table(pa.table({"p0": groups[:, 0], "p1": groups[:, 1], "p2": groups[:, 2], "v": scores,
                             "other": np.arange(300)}), tmp_path / "wide.parquet")
    assert_same(table_ev(tmp_path / "wide.parquet", ids=["p0", "p1", "p2"], score="v"), dataset_ev(groups, scores))
    single = table_ev(tmp_path / "wide.parquet", ids="p0", score="v")  # one scalar column: one slot
    assert_same(single, dataset_ev(groups[:, :1], scores))


def test_edge_cases_are_those_of_dataset_ev(tmp_path):
    # "a" in every episode (undefined: NaN, NaN), "z" in one episode (SE +inf), "b" absent
    # from one episode only (SE +inf), "c" twice in one episode (counts once).
    groups = np.array([["a", "b", "z"], ["a", "b", "c"], ["a", "c", "c"], ["a", "b", "d"], ["a", "b", "d"]])
    scores = np.array([5.0, 1.0, 2.0, -1.0, 3.0])
    result = table_ev(write_list_table(tmp_path / "e.parquet", groups.tolist(), scores))
    assert_same(result, dataset_ev(groups, scores))
    row = dict(zip(result.ids.tolist(), range(len(result.ids))))
    assert np.isnan(result.values[row["a"]]) and np.isnan(result.stderr[row["a"]])
    assert np.isfinite(result.values[row["z"]]) and np.isinf(result.stderr[row["z"]])
    assert np.isfinite(result.values[row["b"]]) and np.isinf(result.stderr[row["b"]])
    assert result.counts[row["c"]] == 2 and result.values[row["c"]] == pytest.approx(1.5 - 7.0 / 3.0)


def test_duplicates_in_an_episode_count_once_and_groups_may_differ_in_size(tmp_path):
    groups = [["a", "a", "a"], ["a", "b"], ["b", "c", "c", "d"], ["c"], ["a", "d", "d", "b", "c"], ["d", "b"]]
    scores = [4.0, 1.0, -2.0, 0.5, 3.0, 2.5]
    result = table_ev(write_list_table(tmp_path / "v.parquet", groups, scores))
    ids, values, stderr, counts = brute_force(groups, scores)
    assert result.ids.tolist() == ids.tolist() and result.counts.tolist() == counts.tolist() == [3, 4, 3, 3]
    np.testing.assert_allclose(result.values, values, **TOL)
    np.testing.assert_allclose(result.stderr, stderr, **TOL)


def test_shards_with_other_column_orders_and_widths_give_the_one_file_result(tmp_path):
    rng = np.random.default_rng(3)
    groups = random_groups(rng, 240, 30, 3, names=False)
    scores = rng.normal(size=240)
    whole = table_ev(write_list_table(tmp_path / "whole.parquet", groups.tolist(), scores))
    assert_same(whole, dataset_ev(groups, scores))
    (tmp_path / "shards").mkdir()
    cuts = [0, 1, 1, 100, 170, 240]  # an empty shard and a one-episode shard among them
    for i, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:])):
        table = pa.table({"return": pa.array(scores[lo:hi]),
                          "agent_ids": pa.array(groups[lo:hi].tolist(), pa.list_(pa.int32() if i % 2 else pa.int64()))})
        pq.write_table(table, tmp_path / "shards" / f"s{i}.parquet")
    assert_same(table_ev(tmp_path / "shards", memory_limit="64MB", threads=2), whole)


def test_duckdb_keeps_to_the_memory_limit_and_threads_and_cleans_its_spill_directory(tmp_path):
    with connect(memory_limit="300MB", threads=1, temp_directory=tmp_path / "spill") as con:
        limit, threads, temp = con.execute("SELECT current_setting('memory_limit'), current_setting('threads'), "
                                           "current_setting('temp_directory')").fetchall()[0]
    assert limit.startswith("286.1 MiB") and threads == 1 and temp == str(tmp_path / "spill")
    with connect() as con:
        own = Path(con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0])
    assert own.name.startswith("teamsift-duckdb-") and not own.exists()
    with pytest.raises(ValueError, match="memory_limit: expected a size such as '2GB'"):
        with connect(memory_limit="lots"):
            pass
    with pytest.raises(ValueError, match="threads: expected an integer >= 1"):
        with connect(threads=0):
            pass
    table = write_list_table(tmp_path / "t.parquet", [["a", "b"], ["b", "c"]] * 50, np.arange(100.0))
    with pytest.raises(MemoryError, match=r"DuckDB ran out of memory under memory_limit='1MB'.*raise memory_limit"):
        table_ev(table, memory_limit="1MB", threads=1)
    assert "ran out of memory" in run_fails("value", "--table", str(table), "--memory-limit", "1MB")
    assert "memory_limit: expected a size" in run_fails("value", "--table", str(table), "--memory-limit", "lots")


def test_statistics_are_the_sums_of_the_estimator(tmp_path):
    groups = [["a", "b"], ["b", "c"], ["a", "c"], ["a", "b"]]
    scores = np.array([1.0, 2.0, 4.0, 5.0])
    stats = table_statistics(write_list_table(tmp_path / "s.parquet", groups, scores))
    x = scores - scores.mean()
    assert stats.episodes == 4 and stats.mean == 3.0 and (stats.lowest, stats.highest) == (1.0, 5.0)
    assert stats.ids.tolist() == ["a", "b", "c"] and stats.n1.tolist() == [3, 3, 2]
    np.testing.assert_allclose(stats.s1, [x[[0, 2, 3]].sum(), x[[0, 1, 3]].sum(), x[[1, 2]].sum()], atol=1e-12)
    np.testing.assert_allclose(stats.q1, [(x[[0, 2, 3]] ** 2).sum(), (x[[0, 1, 3]] ** 2).sum(),
                                          (x[[1, 2]] ** 2).sum()], atol=1e-12)
    assert stats.total_sq == pytest.approx((x ** 2).sum())


# --- bad input ----------------------------------------------------------------------------


def test_missing_files_and_columns_are_named(tmp_path):
    good = write_list_table(tmp_path / "good.parquet", [["a", "b"], ["b", "c"]], [1.0, 2.0])
    with pytest.raises(DatasetError, match=r"nope\.parquet: field 'source' expected a Parquet file.*found no such"):
        table_ev(tmp_path / "nope.parquet")
    with pytest.raises(DatasetError, match=r"\*\.pq: field 'source' expected Parquet files matching the glob, "
                                           r"found no file matches"):
        table_ev(str(tmp_path / "*.pq"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: field 'source' expected a directory holding Parquet files"):
        table_ev(tmp_path / "empty")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DatasetError, match=r"junk\.parquet: field '\(file\)' expected a readable Parquet file"):
        table_ev([good, tmp_path / "junk.parquet"])
    with pytest.raises(DatasetError, match=r"good\.parquet: field 'players' expected a column of ids.*found no such "
                                           r"column \(columns: agent_ids, return\)"):
        table_ev(good, ids="players")
    with pytest.raises(DatasetError, match=r"good\.parquet: field 'v_final' expected a score column 'v_final' or "
                                           r"'score_v_final', found none"):
        table_ev(good, score="v_final")


def test_wrong_types_are_named_with_file_column_and_expectation(tmp_path):
    float_ids = tmp_path / "float_ids.parquet"
    pq.write_table(pa.table({"agent_ids": pa.array([[1.5, 2.5]], pa.list_(pa.float64())), "return": [1.0]}),
                   float_ids)
    with pytest.raises(DatasetError, match=r"float_ids\.parquet: field 'agent_ids' expected ids: a list of strings "
                                           r"or integers, found type list<element: double>"):
        table_ev(float_ids)
    text_score = tmp_path / "text_score.parquet"
    pq.write_table(pa.table({"agent_ids": pa.array([["a"]], pa.list_(pa.string())), "return": ["high"]}), text_score)
    with pytest.raises(DatasetError, match=r"text_score\.parquet: field 'return' expected numeric scores.*found type "
                                           r"string"):
        table_ev(text_score)
    strings = write_list_table(tmp_path / "a.parquet", [["a", "b"]], [1.0])
    integers = write_list_table(tmp_path / "b.parquet", [[1, 2]], [2.0])
    with pytest.raises(DatasetError, match=r"b\.parquet: field 'agent_ids' expected string ids \(as in .*a\.parquet\)"
                                           r", found integer ids"):
        table_ev([strings, integers])
    wide = tmp_path / "wide.parquet"
    pq.write_table(pa.table({"p0": ["a"], "p1": pa.array([["b"]], pa.list_(pa.string())), "return": [1.0]}), wide)
    with pytest.raises(DatasetError, match=r"wide\.parquet: field 'p1' expected one list column of ids, or scalar id "
                                           r"columns"):
        table_ev(wide, ids=["p0", "p1"])
    with pytest.raises(ValueError, match="ids: expected a column name or distinct column names"):
        table_ev(strings, ids=["p0", "p0"])


def test_bad_values_are_named_with_file_column_and_row(tmp_path):
    good = write_list_table(tmp_path / "a.parquet", [["a", "b"], ["b", "c"]], [1.0, 2.0])
    nan = write_list_table(tmp_path / "nan.parquet", [["a", "b"], ["b", "c"], ["a", "c"]], [1.0, 2.0, np.nan])
    with pytest.raises(DatasetError, match=r"nan\.parquet: field 'return' expected finite scores \(no null, NaN or "
                                           r"±inf\), found nan at row 2"):
        table_ev([good, nan])
    null = write_list_table(tmp_path / "null.parquet", [["a", "b"], ["b", "c"]], pa.array([None, 1.0]))
    with pytest.raises(DatasetError, match=r"null\.parquet: field 'return' expected finite scores.*found None at row 0"):
        table_ev(null)
    null_id = write_list_table(tmp_path / "null_id.parquet", [["a", "b"], ["b", None]], [1.0, 2.0])
    with pytest.raises(DatasetError, match=r"null_id\.parquet: field 'agent_ids' expected a non-empty list of ids "
                                           r"without nulls, found \['b', None\] at row 1"):
        table_ev([good, null_id])
    empty = write_list_table(tmp_path / "empty_list.parquet", [["a", "b"], []], [1.0, 2.0], id_type=pa.string())
    with pytest.raises(DatasetError, match=r"empty_list\.parquet: field 'agent_ids' expected a non-empty list.*found "
                                           r"\[\] at row 1"):
        table_ev(empty)
    wide = tmp_path / "wide.parquet"
    pq.write_table(pa.table({"p0": ["a", "b", "c"], "p1": ["b", None, "a"], "v": [1.0, 2.0, 3.0]}), wide)
    with pytest.raises(DatasetError, match=r"wide\.parquet: field 'p1' expected an id in every slot \(no nulls\), "
                                           r"found \['b', None\] at row 1"):
        table_ev(wide, ids=["p0", "p1"], score="v")


# --- the command line ---------------------------------------------------------------------


def run_json(*args):
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def run_fails(*args) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.stderr


def test_value_table_writes_what_value_dataset_writes(dataset, tmp_path):
    export = run_json("data", "export", "table", str(dataset.path), str(tmp_path / "shards"), "--rows-per-shard", "25")
    assert len(export["shards"]) == 3
    in_memory = run_json("value", str(dataset.path), "--score", "coverage", "--out", str(tmp_path / "mem"))
    out_of_core = run_json("value", "--table", str(tmp_path / "shards" / "*.parquet"), "--score", "coverage",
                           "--memory-limit", "256MB", "--threads", "1")
    assert out_of_core["out"] == str(tmp_path / "shards-values-ev")  # beside the glob's directory
    assert sorted(Path(p).name for p in out_of_core["files"]) == ["values.csv", "values.json", "values.png"]
    assert [r["id"] for r in out_of_core["table"]] == [r["id"] for r in in_memory["table"]]
    for key in ("value", "stderr", "count"):
        assert [r[key] for r in out_of_core["table"]] == pytest.approx([r[key] for r in in_memory["table"]],
                                                                       rel=1e-9, abs=1e-9)
    assert out_of_core["table_source"] | {"engine": None} == {
        "files": 3, "layout": "list", "ids": ["agent_ids"], "score_column": "score_coverage", "episodes": 60,
        "engine": None, "memory_limit": "256MB", "threads": 1}
    assert out_of_core["warnings"] == in_memory["warnings"]
    rows = list(csv.DictReader((tmp_path / "shards-values-ev" / "values.csv").open()))
    assert [r["id"] for r in rows] == [r["id"] for r in in_memory["table"]]
    # the same refusals as for a dataset
    stderr = run_fails("value", "--table", str(tmp_path / "shards"), "--score", "coverage")
    assert "exists and is not empty (pass --overwrite" in stderr  # shards-values-ev again
    assert "inside the dataset directory" in run_fails("value", "--table", str(tmp_path / "shards"),
                                                       "--out", str(tmp_path / "shards" / "vals"))
    assert run_json("value", "--table", str(dataset.path), "--score", "coverage", "--out",
                    str(tmp_path / "direct"))["table"] == out_of_core["table"]


def test_value_table_refusals(tmp_path):
    path = write_list_table(tmp_path / "t.parquet", [["a", "b"], ["b", "c"], ["c", "a"]], [1.0, 2.0, 4.0])
    assert "field 'x' expected a column of ids" in run_fails("value", "--table", str(path), "--ids", "x")
    assert "no such file" in run_fails("value", "--table", str(tmp_path / "missing.parquet"))
    assert "--table values by --method ev only" in run_fails("value", "--table", str(path), "--method", "shapley")
    assert "not both" in run_fails("value", str(tmp_path), "--table", str(path))
    assert "belong to --table" in run_fails("value", str(tmp_path), "--threads", "2")
    assert "give a DATASET directory" in run_fails("value")
    anonymous = write_list_table(tmp_path / "anon.parquet", [[f"e{e}_s{s}" for s in range(3)] for e in range(5)],
                                 [1.0, 2.0, 3.0, 4.0, 5.0])
    assert "--method ev-cluster" in run_fails("value", "--table", str(anonymous))
    assert not (tmp_path / "anon-values-ev").exists()
    lineup = write_list_table(tmp_path / "lineup.parquet", [["a", "b"], ["b", "a"], ["a", "b"]], [1.0, 2.0, 4.0])
    assert "every individual appears in every episode" in run_fails("value", "--table", str(lineup))
    constant = write_list_table(tmp_path / "flat.parquet", [["a", "b"], ["b", "c"]], [2.0, 2.0])
    assert "is 2 in every episode" in run_fails("value", "--table", str(constant))
    result = runner.invoke(app, ["value", "--table", str(path), "--ids", "agent_ids", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["out"] == str(tmp_path / "t-values-ev")
