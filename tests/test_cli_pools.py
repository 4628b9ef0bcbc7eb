"""`teamsift pools` and the pool-based `generate` / `suite` commands, end to end on commons."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from teamsift.cli.main import app

runner = CliRunner()


def run_json(*args):
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def pools_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pools")
    trained = run_json("pools", "train", "commons", "--dir", str(root), "--timesteps", "120000",
                       "--checkpoints", "6", "--eval-episodes", "20", "--cuts", "380,420")
    assert trained["checkpoints"] == 6 and trained["cuts"] == [380.0, 420.0]
    return root, trained


def test_pools_train_sorts_checkpoints_by_return(pools_dir):
    root, trained = pools_dir
    for level, members in trained["pools"].items():
        for member in members:
            low, high = {"random": (-np.inf, 380), "medium": (380, 420), "expert": (420, np.inf)}[level]
            assert low <= member["return"] < high
    listed = run_json("pools", "list", "--dir", str(root))
    assert [p["env_id"] for p in listed["pools"]] == ["commons"]
    assert listed["pools"][0]["pools"] == trained["pools"]


def test_pools_cut_resorts_without_retraining(pools_dir, tmp_path):
    import shutil

    root, trained = pools_dir
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    everything_expert = run_json("pools", "cut", "commons", "--dir", str(copy), "--cuts", "-1000,-999")
    assert len(everything_expert["pools"]["expert"]) == 6
    thirds = run_json("pools", "cut", "commons", "--dir", str(copy))
    assert thirds["cut_rule"].startswith("thirds")
    low, high = thirds["cuts"]
    best = max(m["return"] for ms in trained["pools"].values() for m in ms)
    assert high - low == pytest.approx((best - thirds["random_policy_return"]) / 3, rel=1e-6)


def test_generate_from_spec_and_population(pools_dir, tmp_path):
    root, trained = pools_dir
    levels_present = [lvl for lvl, members in trained["pools"].items() if members]
    short = {"random": "r", "medium": "m", "expert": "e"}
    spec = f"50%[all {short[levels_present[0]]}] + 50%[all {short[levels_present[-1]]}]"
    made = run_json("generate", "commons", str(tmp_path / "spec"), "--spec", spec, "--episodes", "10",
                    "--pools", str(root))
    assert made["episodes"] == 10
    from teamsift.data import load_dataset

    ds = load_dataset(tmp_path / "spec")
    assert ds.meta["provenance"]["spec"] == spec and ds.meta["provenance"]["episodes_per_term"] == [5, 5]
    pop = run_json("generate", "commons", str(tmp_path / "pop"), "--population", "12", "--group-size", "3",
                   "--appearances", "2", "--anonymise")
    assert pop["episodes"] == 8
    ds = load_dataset(tmp_path / "pop")
    assert len(set(ds.episodes["agent_ids"].ravel())) == 24
    assert sorted(set(ds.episodes["policy_ids"].ravel())) == [f"ind{j:02d}" for j in range(12)]
    ten = run_json("generate", "commons", str(tmp_path / "ten"), "--population", "20", "--group-size", "10",
                   "--episodes", "4")
    assert ten["agents"] == 10


def test_bad_specs_and_missing_pools_fail_before_any_work(pools_dir, tmp_path):
    root, _ = pools_dir
    for spec, message in [("50%[r,r] + 50%[r,r]", "has 2 slots; the environment has 3"),
                          ("60%[r,r,r] + 50%[m,m,m]", "add up to 110%"),
                          ("[r,q,m]", "unknown level")]:
        result = runner.invoke(app, ["generate", "commons", str(tmp_path / "bad"), "--spec", spec, "--pools", str(root)])
        assert result.exit_code == 2 and message in result.stderr
        assert not (tmp_path / "bad").exists()
    result = runner.invoke(app, ["generate", "CN_3ls3l", str(tmp_path / "nopools"), "--spec", "[r,m,e]",
                                 "--pools", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "teamsift pools train CN_3ls3l" in result.stderr
    suite = run_json("suite", "sit", "--envs", "CN_3ls3l", "--pools", str(tmp_path / "empty"), "--out", str(tmp_path))
    assert suite["datasets"] == {} and "CN_3ls3l" in suite["missing_pools"]
