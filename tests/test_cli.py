"""The `teamsift` command: every reporting command prints exactly one JSON object with
--json, and bad input exits with a clear one-line error (no traceback)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from teamsift.cli.main import app

runner = CliRunner()


def run_json(*args):
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # one JSON object, nothing else on stdout


def run_fails(*args):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return result.stderr


def test_envs_lists_specs_as_json():
    payload = run_json("envs", "--family", "commons")
    (row,) = payload["envs"]
    assert row["env_id"] == "commons" and row["agents"] == 3 and row["scores"] == ["return", "v_final", "v_total", "v_min"]
    poly = run_json("envs", "--family", "poly")
    assert {r["env_id"] for r in poly["envs"]} == {"poly_sign", "poly_twin_peaks", "poly_coupled"}


def test_envs_json_stays_clean_when_jaxmarl_is_imported():
    payload = run_json("envs", "--family", "mpe")
    ids = {r["env_id"] for r in payload["envs"]}
    assert {"CN_3ls3l", "CN_4ls4l", "PP_3p1p", "mpe_spread", "mpe_tag"} <= ids


def test_generate_inspect_train_eval_round_trip(tmp_path):
    ds = tmp_path / "ds"
    made = run_json("generate", "commons", str(ds), "--episodes", "40", "--mix",
                    "--policy", "scripted:sustainable,scripted:greedy", "--seed", "3")
    assert made["episodes"] == 40 and made["steps"] == 4000
    assert set(made["behaviour"]["levels"]) == {"scripted:sustainable", "scripted:greedy"}
    summary = run_json("inspect", str(ds))
    assert summary["episodes"] == 40 and (ds / "summary.png").exists()
    policy = tmp_path / "bc.msgpack"
    trained = run_json("train", str(ds), "--algo", "bc", "--updates", "50", "--out", str(policy),
                       "--eval-episodes", "5", "--seeds", "2")
    assert trained["seeds"] == 2 and len(trained["eval"]) == 2 and policy.exists()
    evaluated = run_json("eval", str(policy), "--episodes", "7")
    assert evaluated["env_id"] == "commons" and evaluated["num_episodes"] == 7
    stats = evaluated["scores"]["return"]
    assert stats["ci95_low"] <= stats["mean"] <= stats["ci95_high"]
    scripted = run_json("eval", "scripted:sustainable", "--env", "commons", "--episodes", "3")
    assert scripted["scores"]["v_total"]["mean"] == pytest.approx(600.0)


def test_generate_same_seed_same_dataset(tmp_path):
    from teamsift.data import load_dataset

    for name in ("a", "b"):
        run_json("generate", "commons", str(tmp_path / name), "--episodes", "5", "--seed", "9")
    a, b = load_dataset(tmp_path / "a"), load_dataset(tmp_path / "b")
    np.testing.assert_array_equal(np.asarray(a.steps["actions"]), np.asarray(b.steps["actions"]))


def test_import_npz_from_the_cli(tmp_path):
    rng = np.random.default_rng(0)
    lengths = np.array([3, 5])
    n = int(lengths.sum())
    npz = tmp_path / "mine.npz"
    np.savez(npz, obs=rng.normal(size=(n, 2, 4)).astype(np.float32), actions=rng.integers(0, 3, (n, 2)),
             reward=rng.normal(size=n).astype(np.float32), episode_lengths=lengths,
             score_quality=np.array([1.0, 2.0]))
    payload = run_json("import", "npz", str(npz), str(tmp_path / "out"))
    assert payload["episodes"] == 2 and payload["steps"] == 8 and "quality" in payload["scores"]


def test_bad_input_gets_a_clear_error(tmp_path):
    assert "unknown environment id 'nope'" in run_fails("generate", "nope", str(tmp_path / "x"))
    assert "not understood" in run_fails("generate", "commons", str(tmp_path / "y"), "--policy", "smart")
    assert "give 1 behaviour or 3" in run_fails("generate", "commons", str(tmp_path / "z"),
                                                 "--policy", "random,random")
    (tmp_path / "exists").mkdir()
    assert "already exists" in run_fails("generate", "commons", str(tmp_path / "exists"))
    message = run_fails("inspect", str(tmp_path / "missing"))
    assert "missing" in message
    bad = tmp_path / "bad.npz"
    np.savez(bad, obs=np.zeros((4, 2, 3), np.float32))
    message = run_fails("import", "npz", str(bad), str(tmp_path / "o"))
    assert "bad.npz" in message and "actions" in message
    assert "no such policy file" in run_fails("eval", str(tmp_path / "nothing.msgpack"))
    long_path = str(tmp_path / ("a-long-policy-name-" * 8 + ".msgpack"))
    assert f"{long_path}: no such policy file" in run_fails("eval", long_path), "messages are never wrapped"
