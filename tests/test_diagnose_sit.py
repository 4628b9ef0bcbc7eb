"""benchmarks/diagnose_sit.py: restores a SIT run's state from its checkpoints (without
writing into the run directory) and measures the filter, DPER and the critic on it."""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift.algos import pipeline
from teamsift.data import testing
from teamsift.engine import RunConfig


def test_returns_to_go_is_the_discounted_sum_with_a_bootstrapped_tail(benchmark_script):
    diagnose = benchmark_script("diagnose_sit")
    # One agent, two trajectories of 3 and 2 steps (T = 3); the second ends at a time limit.
    reward = jnp.asarray([[1.0, 2.0, 4.0], [1.0, 3.0, 0.0]])[..., None]
    has_next = jnp.asarray([[True, True, False], [True, False, False]])[..., None]
    continues = jnp.asarray([[True, True, False], [True, True, False]])[..., None]
    tail = jnp.asarray([[10.0], [10.0]])
    got = np.asarray(diagnose.returns_to_go(reward, has_next, continues, tail, 0.5))[..., 0]
    np.testing.assert_allclose(got[0], [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4.0])
    np.testing.assert_allclose(got[1, :2], [1 + 0.5 * (3 + 0.5 * 10), 3 + 0.5 * 10])


def test_readings_of_eq7(benchmark_script):
    diagnose = benchmark_script("diagnose_sit")
    from teamsift.data import dper

    raw = np.linspace(-5.0, 0.0, 101)
    config = dper.DPERConfig()
    ours = diagnose.reading_probabilities(raw, 0.2, "ours", config)
    np.testing.assert_allclose(ours, dper.buffer_priorities(raw, config)[1])
    per = diagnose.reading_probabilities(raw, 1.0, "per_exponent", config)
    np.testing.assert_allclose(per, dper.min_max(raw, 0.0, 20.0) / dper.min_max(raw, 0.0, 20.0).sum())
    # α = 0.2 over [0, 20], 101 evenly spaced priorities: each step of 0.2 is a factor e, so the
    # ESS is the geometric series' (1 − e⁻²) / (1 − e⁻¹)² ≈ 2.16 of 101
    e = np.exp(-1.0)
    assert 1.0 / np.sum(ours ** 2) == pytest.approx((1 - e ** 2) / (1 - e) ** 2, rel=1e-6)


def snapshot(path: Path) -> dict:
    return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.stat().st_size) for p in path.rglob("*")}


# Trains ARDNEM, SIT and ICQ and compiles the script's probes (about 100 s on 2 cores): a
# benchmark tool's end-to-end check, run with `make bench` to keep CI's budget for the library.
@pytest.mark.bench
def test_diagnosis_of_a_short_run(tmp_path, benchmark_script):
    diagnose = benchmark_script("diagnose_sit")
    terms = np.asarray([["expert", "poor", "poor", "poor"], ["poor", "poor", "expert", "poor"]])
    dataset = testing.contribution_dataset(tmp_path / "data", terms, {"poor": 0.1, "expert": 0.95}, episodes=40,
                                           length=6, width=4)
    run_dir = tmp_path / "run"
    run = RunConfig(updates=4, seeds=2, log_every=2, checkpoint_every=2, run_dir=str(run_dir), progress=False)
    pipeline.train("sit", dataset, jax.random.key(0), run,
                   overrides={"batch_size": 4, "ardnem.batch_size": 4, "ardnem.ensemble_size": 2},
                   stage_updates={"ardnem": 3})
    icq_dir = tmp_path / "icq"
    pipeline.train("icq", dataset, jax.random.key(1), dataclasses.replace(run, run_dir=str(icq_dir)),
                   overrides={"batch_size": 4})
    before = snapshot(run_dir), snapshot(icq_dir)
    out = tmp_path / "out" / "diag"
    report = diagnose.main(["--run-dir", str(run_dir), "--dataset", str(dataset.path), "--minibatches", "2",
                            "--icq-run-dir", str(icq_dir), "--out", str(out)])
    assert (snapshot(run_dir), snapshot(icq_dir)) == before  # nothing written into the run directories
    assert report["icq"]["step"] == 4
    assert 1 / 4 - 1e-6 <= report["icq"]["filter"]["0.1"]["ess_fraction_mean"] <= 1 + 1e-6
    assert "stages/ardnem/result.msgpack" in report["stage1"]["source"]
    assert report["run"]["step"] == 4 and report["policy_files_agree"] == [True, True]
    for kind in ("dper", "uniform"):
        for stats in report["batches"][kind]["filter"].values():
            assert 1 / 4 - 1e-6 <= stats["ess_fraction_mean"] <= 1 + 1e-6
    assert set(report["dper"]) == {"0.2", "1"} and set(report["dper"]["0.2"]) == {"x", "y"}
    for buffer in report["dper"]["0.2"].values():
        assert 1 - 1e-9 <= buffer["ess"] <= buffer["size"] + 1e-9
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["run"]["seeds"] == 2 and "## Findings" in out.with_suffix(".md").read_text()
    # an earlier checkpoint restores too (its actor is not the saved policy's: not compared)
    earlier = diagnose.main(["--run-dir", str(run_dir), "--dataset", str(dataset.path), "--minibatches", "1",
                             "--step", "2", "--out", str(tmp_path / "out" / "early")])
    assert earlier["run"]["step"] == 2 and earlier["policy_files_agree"] is None
    with pytest.raises(SystemExit, match="--step 3"):
        diagnose.main(["--run-dir", str(run_dir), "--dataset", str(dataset.path), "--step", "3",
                       "--out", str(tmp_path / "out" / "bad")])
