"""benchmarks/carry_runs.py: an interrupted run packed on one machine and unpacked on another
resumes there to exactly the uninterrupted run's state, and the archive holds each run's
last checkpoint only."""

import tarfile

import jax
import numpy as np
import pytest

from teamsift import envs
from teamsift.algos import bc
from teamsift.collect import collect, commons_team
from teamsift.data import load_dataset
from teamsift.engine import RunConfig, checkpoints, fit

CONFIG = bc.BCConfig(learning_rate=3e-3, optimizer="adam", hidden=(16,))


class Interrupted(Exception):
    pass


def flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def test_a_packed_run_resumes_elsewhere_to_the_uninterrupted_state(tmp_path, monkeypatch, benchmark_script):
    carry = benchmark_script("carry_runs")
    dataset = load_dataset(collect(envs.make("commons"), commons_team(("greedy", "sustainable", "adaptive")),
                                   jax.random.key(0), 20, tmp_path / "commons"))
    learner = bc.learner(CONFIG, dataset)

    def run(run_dir, resume=False):
        return RunConfig(updates=40, seeds=2, log_every=10, checkpoint_every=10, run_dir=str(run_dir),
                         resume=resume, progress=False)

    whole = fit(learner, dataset, jax.random.key(5), run(tmp_path / "whole"))

    # the session ends after the checkpoint of update 30: checkpoints 10, 20, 30 are on disk
    save = checkpoints.Checkpoints.save

    def interrupting_save(self, update, *args):
        save(self, update, *args)
        if update == 30:
            self.wait()
            raise Interrupted

    monkeypatch.setattr(checkpoints.Checkpoints, "save", interrupting_save)
    runs = tmp_path / "machine-a" / "runs" / "bench-cpu"
    with pytest.raises(Interrupted):
        fit(learner, dataset, jax.random.key(5), run(runs / "cell"))
    monkeypatch.undo()
    assert sorted(p.name for p in (runs / "cell" / "checkpoints").iterdir() if p.name.isdigit()) == ["10", "20", "30"]

    archive = tmp_path / "carried" / "bench-cpu.tar.gz"
    carry.pack(runs, archive, overwrite=False)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert any(n.startswith("cell/checkpoints/30/") for n in names)
    assert not any(n.startswith(("cell/checkpoints/10/", "cell/checkpoints/20/")) for n in names)
    assert {"cell/config.json", "cell/metrics.csv"} <= set(names)

    elsewhere = tmp_path / "machine-b" / "runs" / "bench-cpu"
    carry.unpack(archive, elsewhere, overwrite=False)
    resumed = fit(learner, dataset, jax.random.key(5), run(elsewhere / "cell", resume=True))
    assert resumed.resumed_from == 30
    np.testing.assert_array_equal(flat(resumed.state), flat(whole.state))

    # nothing the user had is replaced without --overwrite
    with pytest.raises(SystemExit, match="already holds cell"):
        carry.unpack(archive, elsewhere, overwrite=False)
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        carry.pack(runs, archive, overwrite=False)
