"""`teamsift data` tools (subsample, combine, split, export vault), the pools lookup order and
the pools shipped as package data, and the static `teamsift envs` table."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from teamsift import __version__
from teamsift.cli.main import app
from teamsift.collect import pools as pools_mod
from teamsift.data import dataset_fingerprint, load_dataset, write_dataset
from teamsift.data.testing import make_arrays, tiny_spec
from teamsift.data.tools import apportion, combine, split, split_episodes, subsample

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def run_json(*args):
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def run_fails(*args) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.stderr.split())


def write_tiny(path, num_episodes=60, length=2, seed=1, returns=None, ids=None, behaviour=True):
    """A tiny valid dataset; `returns` sets each episode's return (on its first step)."""
    spec = tiny_spec()
    arrays = make_arrays(spec, np.full(num_episodes, length), seed=seed, behaviour=behaviour)
    arrays["avail"] = arrays["final_avail"] = None  # every logged action available
    if returns is not None:
        reward = np.zeros(num_episodes * length, np.float32)
        reward[::length] = returns
        arrays["reward"] = reward
    if ids is not None:
        arrays["agent_ids"] = np.asarray(ids)
    return write_dataset(path, **arrays)


def episode_obs(ds, e):
    return np.asarray(ds.episode(e)["obs"])


@pytest.fixture()
def source(tmp_path):
    return write_tiny(tmp_path / "src", returns=np.arange(60, dtype=np.float32))


# --- subsample -------------------------------------------------------------------------


def test_subsample_uniform_keeps_whole_episodes_and_records_provenance(source, tmp_path, monkeypatch):
    args = ["data", "subsample", str(source), str(tmp_path / "sub"), "--episodes", "10", "--seed", "3"]
    monkeypatch.setattr(sys, "argv", ["/opt/venv/bin/teamsift", *args, "--json"])  # as typed in a shell
    made = run_json(*args)
    assert made["episodes"] == 10 and made["steps"] == 20 and made["mode"] == "uniform"
    src, sub = load_dataset(source), load_dataset(tmp_path / "sub")
    prov = sub.meta["provenance"]
    taken = prov["episodes_taken"]
    assert len(set(taken)) == 10 and taken == sorted(taken)
    for out_e, src_e in enumerate(taken):
        np.testing.assert_array_equal(episode_obs(sub, out_e), episode_obs(src, src_e))
        assert sub.returns[out_e] == src.returns[src_e]
        assert list(sub.episodes["agent_ids"][out_e]) == list(src.episodes["agent_ids"][src_e])
        assert list(sub.episodes["behaviour"][out_e]) == list(src.episodes["behaviour"][src_e])
    np.testing.assert_array_equal(sub.score("coverage"), src.score("coverage")[taken])
    assert prov["tool"] == "teamsift data subsample" and prov["seed"] == 3
    assert prov["teamsift_version"] == __version__
    assert prov["command"] == f"teamsift data subsample {source} {tmp_path / 'sub'} --episodes 10 --seed 3 --json"
    (record,) = prov["sources"]
    assert record["path"] == str(source.resolve()) and record["fingerprint"] == dataset_fingerprint(src)
    again = subsample(source, tmp_path / "again", episodes=10, seed=3)
    other = subsample(source, tmp_path / "other", episodes=10, seed=4)
    assert load_dataset(again["dataset"]).meta["provenance"]["episodes_taken"] == taken
    assert load_dataset(other["dataset"]).meta["provenance"]["episodes_taken"] != taken


def test_outputs_are_never_overwritten_without_overwrite(source, tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    # checked before any work: the missing source is never reached
    for args in (["subsample", str(tmp_path / "missing"), str(existing), "-n", "3"],
                 ["combine", str(tmp_path / "missing"), str(source), str(existing)],
                 ["split", str(tmp_path / "missing"), str(existing), "--test-fraction", "0.5"]):
        assert "already exists; pass --overwrite" in run_fails("data", *args)
    # with --overwrite, still only a dataset (or a split) is replaced, never other files
    assert "not a teamsift dataset" in run_fails("data", "subsample", str(source), str(existing), "-n", "3",
                                                   "--overwrite")
    assert "not a split" in run_fails("data", "split", str(source), str(existing), "--test-fraction", "0.5",
                                      "--overwrite")
    assert (existing / "notes.txt").read_text() == "mine" and sorted(os.listdir(existing)) == ["notes.txt"]
    first = run_json("data", "subsample", str(source), str(tmp_path / "sub"), "-n", "5")
    assert "already exists" in run_fails("data", "subsample", str(source), str(tmp_path / "sub"), "-n", "7")
    assert load_dataset(first["dataset"]).num_episodes == 5
    assert run_json("data", "subsample", str(source), str(tmp_path / "sub"), "-n", "7", "--overwrite")["episodes"] == 7
    assert "inside the source" in run_fails("data", "split", str(source), str(source / "parts"), "--test-fraction", "0.5")


def test_subsample_to_target_returns_follows_the_target_histogram(source, tmp_path):
    target = np.array([40, 41, 44, 45, 46, 50, 52, 55, 58, 59], np.float64)
    (tmp_path / "target.txt").write_text("# returns\n" + ", ".join(map(str, target)) + "\n")
    made = run_json("data", "subsample", str(source), str(tmp_path / "m"), "--match-returns",
                    str(tmp_path / "target.txt"), "--bins", "6", "-n", "20", "--seed", "1")
    edges = np.asarray(made["bin_edges"])
    assert made["target_counts"] == [0, 0, 0, 0, 10, 10] and made["source_counts"] == [10] * 6
    got = load_dataset(made["dataset"]).returns
    assert np.histogram(got, edges)[0].tolist() == made["target_counts"]
    assert made["repeated_episodes"] == 0
    assert made["wasserstein_to_target"]["output"] < made["wasserstein_to_target"]["source"] / 5
    # a bin needing more episodes than the source has: an error, or repeats with --replace
    error = run_fails("data", "subsample", str(source), str(tmp_path / "m2"), "--target-returns", "45,55", "-n", "30",
                      "--bins", "6")
    assert "the source has 10 episodes with return in [39.33, 49.17), the target needs 15" in error
    assert "--replace" in error and not (tmp_path / "m2").exists()
    repeated = run_json("data", "subsample", str(source), str(tmp_path / "m2"), "--target-returns", "45,55",
                        "-n", "30", "--bins", "6", "--replace")
    assert repeated["episodes"] == 30 and repeated["repeated_episodes"] == 10
    taken = load_dataset(repeated["dataset"]).meta["provenance"]["episodes_taken"]
    assert set(taken) == set(range(40, 60))  # every episode of both bins at least once
    # a target the source cannot reach at all
    assert "has 0 episodes with return in" in run_fails("data", "subsample", str(source), str(tmp_path / "m3"),
                                                       "--target-returns", "500")
    # a dataset as the target
    high = run_json("data", "subsample", str(source), str(tmp_path / "high"), "-n", "10", "--seed", "2")
    matched = subsample(source, tmp_path / "m4", target_returns=tmp_path / "high", bins=4, seed=0)
    assert matched["episodes"] == 10
    assert load_dataset(matched["dataset"]).meta["provenance"]["target_source"]["fingerprint"] == \
        dataset_fingerprint(load_dataset(high["dataset"]))


def test_apportion_sums_to_total_in_proportion():
    assert apportion(np.array([1, 1, 2]), 8).tolist() == [2, 2, 4]
    counts = apportion(np.array([1, 1, 1]), 10)
    assert counts.sum() == 10 and sorted(counts.tolist()) == [3, 3, 4]
    assert apportion(np.array([0, 5, 0]), 7).tolist() == [0, 7, 0]


def test_subsample_refuses_bad_requests(source, tmp_path):
    assert "cannot draw 61 distinct" in run_fails("data", "subsample", str(source), str(tmp_path / "x"), "-n", "61")
    assert "give --episodes N" in run_fails("data", "subsample", str(source), str(tmp_path / "x"))
    assert "at most one of" in run_fails("data", "subsample", str(source), str(tmp_path / "x"), "--target-returns", "1",
                                         "--match-returns", str(source))
    (tmp_path / "bad.txt").write_text("1, 2, banana\n")
    error = run_fails("data", "subsample", str(source), str(tmp_path / "x"), "--match-returns", str(tmp_path / "bad.txt"))
    assert "bad.txt: field 'returns' expected numbers" in error and "banana" in error
    assert not (tmp_path / "x").exists()


# --- combine ---------------------------------------------------------------------------


def test_combine_concatenates_episodes_and_handles_ids(tmp_path):
    a = write_tiny(tmp_path / "a", num_episodes=4, seed=1, ids=[["p0", "p1", "p2"]] * 4)
    b = write_tiny(tmp_path / "b", num_episodes=3, length=3, seed=2, ids=[["p2", "p3", "p4"]] * 3, behaviour=False)
    made = run_json("data", "combine", str(a), str(b), str(tmp_path / "ab"))
    ab, da, db = load_dataset(tmp_path / "ab"), load_dataset(a), load_dataset(b)
    assert made["episodes"] == 7 and ab.num_steps == da.num_steps + db.num_steps
    for e in range(4):
        np.testing.assert_array_equal(episode_obs(ab, e), episode_obs(da, e))
    for e in range(3):
        np.testing.assert_array_equal(episode_obs(ab, 4 + e), episode_obs(db, e))
        np.testing.assert_array_equal(ab.steps["actions"][ab.episode_slice(4 + e)],
                                      db.steps["actions"][db.episode_slice(e)])
    np.testing.assert_allclose(ab.returns, np.concatenate([da.returns, db.returns]), rtol=1e-6)
    assert made["shared_ids"] == 1 and made["dropped_columns"] == ["behaviour", "policy_ids"]
    assert "behaviour" not in ab.episodes
    prov = ab.meta["provenance"]
    assert [s["fingerprint"] for s in prov["sources"]] == [dataset_fingerprint(da), dataset_fingerprint(db)]
    assert prov["episodes_per_source"] == [4, 3]
    separate = combine([a, b], tmp_path / "sep", ids="separate")
    ids = load_dataset(separate["dataset"]).episodes["agent_ids"]
    assert ids[0].tolist() == ["0:p0", "0:p1", "0:p2"] and ids[4].tolist() == ["1:p2", "1:p3", "1:p4"]


def test_combine_refuses_datasets_of_different_environments(tmp_path):
    a = write_tiny(tmp_path / "a", num_episodes=3)
    spec = tiny_spec(obs_dim=6)
    arrays = make_arrays(spec, np.full(3, 2), seed=3)
    arrays["avail"] = arrays["final_avail"] = None
    other = write_dataset(tmp_path / "other", **arrays)
    error = run_fails("data", "combine", str(a), str(other), str(tmp_path / "out"))
    assert f"{other}/meta.json: field 'spec.obs_dim' expected 4 as in {a}, found 6" in error
    assert "at least two source datasets" in run_fails("data", "combine", str(a), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# --- split -----------------------------------------------------------------------------


def test_split_by_episode_partitions_the_episodes(source, tmp_path):
    made = run_json("data", "split", str(source), str(tmp_path / "parts"), "--test-fraction", "0.25", "--seed", "5")
    assert made["train"]["episodes"] == 45 and made["test"]["episodes"] == 15
    assert sorted(os.listdir(tmp_path / "parts")) == ["test", "train"]
    train, test = (load_dataset(tmp_path / "parts" / part) for part in ("train", "test"))
    taken = {part.meta["provenance"]["part"]: part.meta["provenance"]["episodes_taken"] for part in (train, test)}
    assert sorted(taken["train"] + taken["test"]) == list(range(60))
    assert sorted(np.concatenate([train.returns, test.returns]).tolist()) == list(range(60))
    again = split(source, tmp_path / "again", test_fraction=0.25, seed=5)
    assert load_dataset(again["test"]["dataset"]).meta["provenance"]["episodes_taken"] == taken["test"]
    # an earlier split may be replaced with --overwrite
    replaced = run_json("data", "split", str(source), str(tmp_path / "parts"), "--test-fraction", "0.5", "--overwrite")
    assert replaced["test"]["episodes"] == 30 and sorted(os.listdir(tmp_path)).count("parts") == 1
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".parts")]


def test_split_by_individual_keeps_held_out_ids_out_of_train(tmp_path):
    teams = [[f"p{i}" for i in team] for team in itertools.combinations(range(6), 3)]  # 20 teams of 6 ids
    ids = teams * 4
    src = write_tiny(tmp_path / "pop", num_episodes=80, ids=ids)
    made = run_json("data", "split", str(src), str(tmp_path / "parts"), "--test-fraction", "0.5", "--by", "individual")
    held = set(made["held_out_ids"])
    assert len(held) == 3 and made["individuals"] == 6
    train, test = (load_dataset(tmp_path / "parts" / part) for part in ("train", "test"))
    assert not held & set(np.unique(train.episodes["agent_ids"]).tolist())
    has_held = np.array([bool(held & set(row)) for row in ids])
    assert test.num_episodes == has_held.sum() and train.num_episodes == 80 - has_held.sum()
    mixed = np.array([bool(held & set(row)) and not set(row) <= held for row in ids])
    assert made["mixed_episodes"] == mixed.sum() > 0
    assert test.meta["provenance"]["held_out_ids"] == sorted(held)
    dropped = run_json("data", "split", str(src), str(tmp_path / "pure"), "--test-fraction", "0.5", "--by",
                       "individual", "--mixed", "drop")
    assert dropped["held_out_ids"] == sorted(held)
    assert dropped["test"]["episodes"] == has_held.sum() - mixed.sum()
    assert dropped["train"]["episodes"] == train.num_episodes and dropped["dropped_episodes"] == mixed.sum()
    pure = load_dataset(tmp_path / "pure" / "test")
    assert set(np.unique(pure.episodes["agent_ids"]).tolist()) == held
    assert (train.num_episodes, test.num_episodes, made["mixed_episodes"], pure.num_episodes) == (4, 76, 72, 4)


def test_split_episodes_refuses_degenerate_splits():
    key = __import__("jax").random.key(0)
    ids = np.array([["a", "b"], ["a", "b"]])
    with pytest.raises(ValueError, match="leaves the train part empty"):
        split_episodes(ids, 0.5, key, by="individual")
    with pytest.raises(ValueError, match=r"test fraction must be in \(0, 1\)"):
        split_episodes(ids, 1.0, key)
    with pytest.raises(ValueError, match="only 1 distinct agent id"):
        split_episodes(np.array([["a", "a"]]), 0.5, key, by="individual")


# --- export vault ----------------------------------------------------------------------


def test_export_vault_round_trips_through_the_importer(source, tmp_path):
    made = run_json("data", "export", "vault", str(source), str(tmp_path / "vault"), "--uid", "mine")
    assert made["uid"] == "mine"
    run_fails("data", "export", "vault", str(source), str(tmp_path / "vault"), "--uid", "mine")  # no --overwrite
    back = load_dataset(run_json("import", "vault", str(tmp_path / "vault"), str(tmp_path / "back"),
                                 "--uid", "mine")["dataset"])
    src = load_dataset(source)
    assert back.num_episodes == src.num_episodes
    np.testing.assert_allclose(back.returns, src.returns, rtol=1e-6)
    np.testing.assert_array_equal(back.steps["obs"], src.steps["obs"])
    np.testing.assert_array_equal(back.steps["actions"], src.steps["actions"])


# --- pools: lookup order and package data ------------------------------------------------


def fake_pools(root: Path, env_id: str) -> Path:
    directory = root / env_id
    directory.mkdir(parents=True)
    (directory / "pools.json").write_text("{}")
    (directory / "checkpoints.msgpack").write_bytes(b"")
    return directory


def test_pools_are_found_in_the_documented_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TEAMSIFT_POOLS", raising=False)
    shipped = pools_mod.shipped_root()
    assert shipped == REPO / "pools"  # a source checkout ships its pools/
    assert pools_mod.find_pools("mpe_spread") == shipped / "mpe_spread"  # from any directory
    here = fake_pools(tmp_path / "pools", "mpe_spread")
    assert pools_mod.find_pools("mpe_spread").resolve() == here
    env = fake_pools(tmp_path / "env", "mpe_spread")
    monkeypatch.setenv("TEAMSIFT_POOLS", str(tmp_path / "env"))
    assert pools_mod.find_pools("mpe_spread") == env
    assert pools_mod.find_pools("CN_3ls3l") == shipped / "CN_3ls3l"  # falls through to the shipped copy
    given = fake_pools(tmp_path / "given", "mpe_spread")
    assert pools_mod.find_pools("mpe_spread", tmp_path / "given") == given
    assert "CN_3ls3l" in pools_mod.list_pools() and "mpe_spread" in pools_mod.list_pools(tmp_path / "given")
    with pytest.raises(pools_mod.PoolError) as error:
        pools_mod.find_pools("smax_6h_vs_8z")
    message = str(error.value)
    for place in (tmp_path / "env" / "smax_6h_vs_8z", tmp_path / "pools" / "smax_6h_vs_8z", shipped / "smax_6h_vs_8z"):
        assert str(place) in message
    assert "Pools exist for CN_3ls3l" in message and "teamsift pools train smax_6h_vs_8z" in message
    with pytest.raises(pools_mod.PoolError, match="looked in .*given/CN_3ls3l \\(given\\)"):
        pools_mod.find_pools("CN_3ls3l", tmp_path / "given")  # --pools: only there


def test_pyproject_ships_every_package_and_the_pools():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(REPO / "src").parts) for p in (REPO / "src").rglob("__init__.py")}
    envs = {p.name for p in (REPO / "pools").iterdir() if p.is_dir()}
    assert set(config["packages"]) == found | {"teamsift.pools"} | {f"teamsift.pools.{env}" for env in envs}
    assert config["package-dir"] == {"": "src", "teamsift.pools": "pools"}
    shipped = {p.name for p in (REPO / "pools").glob("*/*") if p.is_file()}
    assert shipped and shipped <= set(config["package-data"]["*"])


@pytest.mark.slow
def test_an_installed_wheel_finds_its_pools_from_any_directory(tmp_path):
    checkout = tmp_path / "checkout"  # setuptools builds in the source tree: build a copy
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, checkout / name)
    for name in ("src", "pools"):
        shutil.copytree(REPO / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheel"),
                    str(checkout)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("teamsift-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "teamsift/pools/smax_3m/pools.json" in names and "teamsift/pools/smax_3m/checkpoints.msgpack" in names
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TEAMSIFT_POOLS"} | {"PYTHONPATH": str(tmp_path / "site")}
    found = subprocess.run([sys.executable, "-c", "import teamsift.collect.pools as p; "
                            "print(p.find_pools('smax_3m')); print(p.load_pools('smax_3m').num_checkpoints)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert found[0] == str(tmp_path / "site" / "teamsift" / "pools" / "smax_3m") and int(found[1]) > 1


# --- teamsift envs ---------------------------------------------------------------------


def test_envs_lists_every_registered_environment_from_static_specs():
    from teamsift import envs
    from teamsift.envs.specs import STATIC_SPECS

    assert set(STATIC_SPECS) == {item.env_id for item in envs.list_envs()}
    rows = run_json("envs", "--family", "smax")["envs"]
    row = next(r for r in rows if r["env_id"] == "smax_2s3z")
    assert row["agents"] == 5 and row["agent_type_counts"] == {"stalker": 2, "zealot": 3}
    assert row["actions"] == "discrete 10" and row["scores"] == ["return", "win"]


@pytest.mark.parametrize("columns", [80, 140])
def test_envs_table_is_readable_at_the_terminal_width(columns, monkeypatch):
    from teamsift import envs

    monkeypatch.setenv("COLUMNS", str(columns))
    result = runner.invoke(app, ["envs"], catch_exceptions=False)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns and "…" not in result.stdout
    words = set(result.stdout.split())
    assert {item.env_id for item in envs.list_envs()} <= words  # every id whole, never cut
    assert {"hydralisk;" if columns < 120 else "hydralisk", "win"} <= words
