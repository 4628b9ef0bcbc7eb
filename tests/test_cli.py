"""The `teamsift` command: every reporting command prints exactly one JSON object with
--json, and bad input exits with a clear one-line error (no traceback)."""

import json
from pathlib import Path

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
    assert {r["env_id"] for r in poly["envs"]} == {"poly_sign", "poly_twin_peaks", "poly_coupled",
                                                   "poly_decoupled"}


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
    assert summary["episodes"] == 40 and summary["plot"] == str(ds.parent / f"{ds.name}-summary.png")
    assert Path(summary["plot"]).is_file() and not (ds / "summary.png").exists()
    policy = tmp_path / "bc.msgpack"
    trained = run_json("train", str(ds), "--algo", "bc", "--updates", "50", "--out", str(policy),
                       "--eval-episodes", "5", "--seeds", "2", "--run-dir", str(tmp_path / "run"))
    assert trained["seeds"] == 2 and len(trained["eval"]) == 2 and policy.exists()
    assert len(trained["final_loss"]) == 2 and trained["run_dir"] == str(tmp_path / "run")
    assert [Path(p).name for p in trained["policies"]] == ["seed-0.msgpack", "seed-1.msgpack"]
    assert policy.read_bytes() == Path(trained["policies"][0]).read_bytes()  # --out: seed 0's policy
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


def test_algos_lists_every_learner_with_its_paper_and_defaults():
    payload = run_json("algos")
    rows = {row["name"]: row for row in payload["algorithms"]}
    assert {"bc", "ev2bc", "group_bc", "icq", "mabcq", "macql", "sit", "td3bc", "omar", "maddpg_cql",
            "maddpg_cql_pjap", "ardnem", "magail", "mild2", "mild2_gd"} <= set(rows)
    assert rows["sit"]["paper"].startswith("Tian et al.") and rows["sit"]["stages"] == {"ardnem": 20000}
    assert rows["sit"]["sampler"] == "dper" and rows["sit"]["sampler_config"]["alpha"] == 0.2
    assert rows["sit"]["hyperparameters"]["beta"] == 0.1 and rows["icq"]["updates"] == 15000
    assert rows["ev2bc"]["weights"] == "ev" and rows["group_bc"]["selection"]["fraction"] == 0.5


def _policy_of_every_kind(tmp_path):
    import jax

    from teamsift import envs
    from teamsift.nets import AgentNetConfig, BCQPolicy, NetworkPolicy, init_params, save_policy
    from teamsift.nets.mat import MATNetConfig, MATPolicy, init_mat_params

    spec = envs.make("commons").spec
    net = AgentNetConfig(num_agents=3, obs_dim=spec.obs_dim, num_actions=spec.num_actions, discrete=True,
                         recurrent=True, hidden=(8,))
    params = init_params(net, jax.random.key(0))
    mat = MATNetConfig.for_spec(spec, n_embd=16)
    policies = {"network": NetworkPolicy(params, net, deterministic=False),
                "bcq": BCQPolicy({"q": params, "behaviour": params}, net, threshold=0.3),
                "mat": MATPolicy(init_mat_params(mat, jax.random.key(1)), mat, deterministic=False)}
    return {kind: save_policy(policy, tmp_path / f"{kind}.msgpack", spec=spec) for kind, policy in policies.items()}


def test_every_policy_kind_round_trips_through_eval_and_generate(tmp_path):
    from teamsift.nets import read_header

    for kind, path in _policy_of_every_kind(tmp_path).items():
        assert read_header(path)["kind"] == kind
        evaluated = run_json("eval", str(path), "--episodes", "3")
        assert evaluated["env_id"] == "commons" and evaluated["num_episodes"] == 3
        made = run_json("generate", "commons", str(tmp_path / f"data-{kind}"), "--policy", str(path),
                        "--episodes", "2")
        assert made["episodes"] == 2


def test_a_policy_with_flipped_weight_bytes_is_refused(tmp_path):
    path = _policy_of_every_kind(tmp_path)["network"]
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # inside the weights
    path.write_bytes(bytes(blob))
    message = run_fails("eval", str(path))
    assert "do not match their checksum" in message and str(path) in message


def test_train_refuses_what_it_cannot_do_before_any_work(tmp_path):
    ds = tmp_path / "ds"
    run_json("generate", "commons", str(ds), "--episodes", "4")
    assert "expected one of bc, ev2bc" in run_fails("train", str(ds), "--algo", "nope")
    assert "TD3+BC learns continuous actions" in run_fails("train", str(ds), "--algo", "td3bc", "--run-dir",
                                                           str(tmp_path / "r1"))
    assert "--resume: give the --run-dir" in run_fails("train", str(ds), "--resume")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    assert "not empty; pass --resume" in run_fails("train", str(ds), "--run-dir", str(tmp_path / "full"),
                                                   "--updates", "2")
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep me"
    (tmp_path / "taken.msgpack").write_text("mine")
    assert "already exists; pass --overwrite" in run_fails("train", str(ds), "--out", str(tmp_path / "taken.msgpack"),
                                                           "--run-dir", str(tmp_path / "r2"))
    assert "needs a learner that reports joint-action proximity" in run_fails(
        "train", str(ds), "--sampler", "pjap", "--updates", "2", "--run-dir", str(tmp_path / "r3"))


KILLED_TRAIN = """
import os, signal, sys
from teamsift.engine import checkpoints
save = checkpoints.Checkpoints.save
def killing_save(self, update, *args):
    save(self, update, *args)
    if update == 20:
        os.kill(os.getpid(), signal.SIGKILL)
checkpoints.Checkpoints.save = killing_save
from teamsift.cli.main import app
app(sys.argv[1:])
"""


def test_train_resumes_a_killed_run_to_the_same_policy(tmp_path):
    import os
    import subprocess
    import sys

    from teamsift.nets import load_policy

    ds = tmp_path / "ds"
    run_json("generate", "commons", str(ds), "--episodes", "20", "--policy", "scripted:adaptive")
    args = ["train", str(ds), "--algo", "bc", "--updates", "60", "--seeds", "2", "--checkpoint-every", "20",
            "--eval-episodes", "3"]
    whole = run_json(*args, "--run-dir", str(tmp_path / "whole"))
    script = tmp_path / "killed_train.py"
    script.write_text(KILLED_TRAIN)
    killed = subprocess.run([sys.executable, str(script), *args, "--run-dir", str(tmp_path / "killed")],
                            capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = run_json(*args, "--run-dir", str(tmp_path / "killed"), "--resume")
    assert resumed["final_loss"] == whole["final_loss"]
    assert resumed["eval"] == whole["eval"]
    for seed in (0, 1):
        a, _ = load_policy(tmp_path / "whole" / "policies" / f"seed-{seed}.msgpack")
        b, _ = load_policy(tmp_path / "killed" / "policies" / f"seed-{seed}.msgpack")
        for x, y in zip(jax_leaves(a.params), jax_leaves(b.params)):
            np.testing.assert_array_equal(x, y)


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]
