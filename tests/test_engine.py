"""The training engine (issue: one training engine for every learner): one `fit` loop whose
result does not depend on chunking, compiles the update once, writes a complete run record,
and resumes a run killed at any point — after a checkpoint or while writing one — to exactly
the policy of the uninterrupted run."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from teamsift import envs
from teamsift.algos import bc
from teamsift.collect import collect, commons_team
from teamsift.data import DPER, PJAP, Uniform, item_space, load_dataset
from teamsift.data.dper import DPERConfig
from teamsift.engine import Learner, RunConfig, RunDirError, fit
from teamsift.nets import load_policy

CONFIG = bc.BCConfig(learning_rate=3e-3, optimizer="adam", hidden=(32,))


@pytest.fixture(scope="module")
def commons(tmp_path_factory):
    env = envs.make("commons")
    path = collect(env, commons_team(("greedy", "sustainable", "adaptive")), jax.random.key(0), 60,
                   tmp_path_factory.mktemp("engine") / "commons")
    return env, load_dataset(path)


def flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def test_chunking_does_not_change_the_result_and_the_update_compiles_once(commons):
    _, dataset = commons
    traces = []
    base = bc.make_learner(CONFIG, bc.net_config(CONFIG, dataset.spec), int(dataset.lengths.max()))

    def counted_update(state, key, arrays, items):
        traces.append(1)  # runs when JAX traces the update, not when the compiled program runs
        return base.update(state, key, arrays, items)

    learner = Learner("bc-counted", base.init, counted_update, base.policy, prepare=base.prepare, unit=base.unit,
                      batch_size=base.batch_size)
    # log points every 7 updates and checkpoints-free chunks of 7, 7, 7, 7, 2: one program
    chunked = fit(learner, dataset, jax.random.key(3), RunConfig(updates=30, seeds=2, log_every=7, progress=False))
    traced_for_five_chunks = len(traces)
    whole = fit(bc.learner(CONFIG, dataset), dataset, jax.random.key(3),
                RunConfig(updates=30, seeds=2, log_every=30, progress=False))
    np.testing.assert_array_equal(flat(chunked.state), flat(whole.state))
    assert traced_for_five_chunks <= 2  # the loop body and its shape probe: once, however many chunks
    np.testing.assert_array_equal(chunked.history["update"], [7, 14, 21, 28, 30])
    assert chunked.history["loss"].shape == (2, 5)
    np.testing.assert_array_equal(chunked.final(), whole.final())


def test_fit_writes_a_complete_run_record(commons, tmp_path):
    env, dataset = commons
    run_dir = tmp_path / "run"
    result = fit(bc.learner(CONFIG, dataset), dataset, jax.random.key(1),
                 RunConfig(updates=60, seeds=2, log_every=20, eval_every=30, eval_episodes=8, checkpoint_every=30,
                           run_dir=str(run_dir), progress=False), env=env, record={"command": "pytest"})
    config = json.loads((run_dir / "config.json").read_text())
    assert config["learner"] == "bc" and config["hyperparameters"]["learning_rate"] == 3e-3
    assert config["schedule"] == {"updates": 60, "seeds": 2, "log_every": 20, "eval_every": 30, "eval_episodes": 8,
                                  "snapshot_every": 0}
    assert config["command"] == "pytest" and config["versions"]["jax"] == jax.__version__
    assert config["dataset"] == str(dataset.path) and len(config["dataset_fingerprint"]) == 16
    assert {"cpu", "cores", "device"} <= set(config["machine"])

    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert rows[0] == "update,seed,elapsed_s,loss"
    assert [tuple(r.split(",")[:2]) for r in rows[1:]] == [(u, s) for u in ("20", "40", "60") for s in ("0", "1")]
    assert float(rows[-1].split(",")[3]) == pytest.approx(result.history["loss"][1, -1], rel=1e-6)
    for seed in (0, 1):
        assert any((run_dir / "events" / f"seed-{seed}").glob("events.out.tfevents.*"))

    evaluations = json.loads((run_dir / "evaluations.json").read_text())
    runs = evaluations["commons"]["commons"]["bc"]
    assert sorted(runs) == ["seed_0", "seed_1"]
    assert runs["seed_0"]["step_0"]["step_count"] == 30 and runs["seed_0"]["step_1"]["step_count"] == 60
    assert len(runs["seed_0"]["step_0"]["return"]) == 8 and runs["seed_0"]["step_0"]["elapsed_time"] > 0
    assert runs["seed_1"]["absolute_metrics"]["return"] == runs["seed_1"]["step_1"]["return"]
    assert result.final_returns() == [pytest.approx(np.mean(runs[f"seed_{s}"]["step_1"]["return"])) for s in (0, 1)]

    for seed in (0, 1):
        policy, header = load_policy(run_dir / "policies" / f"seed-{seed}.msgpack")
        np.testing.assert_array_equal(flat(policy.params), flat(result.policy(seed).params))
        assert header["kind"] == "network" and header["extra"]["seed"] == seed
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["30", "60"]


def test_a_run_directory_is_never_overwritten_or_resumed_with_another_run(commons, tmp_path):
    _, dataset = commons
    run = RunConfig(updates=10, log_every=10, run_dir=str(tmp_path / "run"), progress=False)
    fit(bc.learner(CONFIG, dataset), dataset, jax.random.key(0), run)
    with pytest.raises(RunDirError, match="not empty; pass --resume"):
        fit(bc.learner(CONFIG, dataset), dataset, jax.random.key(0), run)
    other = bc.BCConfig(learning_rate=1e-3, optimizer="adam", hidden=(32,))
    with pytest.raises(RunDirError, match="--resume continues the same run, but hyperparameters"):
        fit(bc.learner(other, dataset), dataset, jax.random.key(0), RunConfig(**{**run.__dict__, "resume": True}))
    replaced = fit(bc.learner(other, dataset), dataset, jax.random.key(0),
                   RunConfig(**{**run.__dict__, "overwrite": True}))
    assert json.loads((Path(run.run_dir) / "config.json").read_text())["hyperparameters"]["learning_rate"] == 1e-3
    assert replaced.resumed_from is None


def test_the_schedule_is_validated():
    with pytest.raises(ValueError, match="RunConfig.updates: expected an integer >= 0, got -1"):
        RunConfig(updates=-1)
    with pytest.raises(ValueError, match="RunConfig.seeds: expected an integer >= 1, got 0"):
        RunConfig(updates=10, seeds=0)
    with pytest.raises(ValueError, match="RunConfig.checkpoint_every"):
        RunConfig(updates=10, checkpoint_every=5)  # checkpoints need a run directory


SCRIPT = textwrap.dedent('''
    import os, signal, sys
    import jax, numpy as np
    import teamsift
    from teamsift.algos import bc
    from teamsift.data import load_dataset
    from teamsift.engine import RunConfig, fit

    mode, data, run_dir, out = sys.argv[1:5]
    if mode == "kill-after":  # SIGKILL as soon as the checkpoint of update 200 is on disk
        from teamsift.engine import checkpoints
        save = checkpoints.Checkpoints.save
        def killing_save(self, update, *args):
            save(self, update, *args)
            if update == 200:
                self.wait()  # saves are asynchronous: until its files are complete
                os.kill(os.getpid(), signal.SIGKILL)
        checkpoints.Checkpoints.save = killing_save
    elif mode == "kill-during":  # SIGKILL while the checkpoint of update 300 is written, before its rename
        from orbax.checkpoint._src.path import atomicity
        finalize = atomicity.AtomicRenameTemporaryPath.finalize
        async def killing_finalize(self):
            if self.get_final().name == "300":
                os.kill(os.getpid(), signal.SIGKILL)
            return await finalize(self)
        atomicity.AtomicRenameTemporaryPath.finalize = killing_finalize
    dataset = load_dataset(data)
    config = bc.BCConfig(learning_rate=3e-3, optimizer="adam", hidden=(32,))
    run = RunConfig(updates=400, seeds=2, log_every=50, checkpoint_every=100, run_dir=run_dir,
                    resume=(mode == "resume"), progress=False)
    result = fit(bc.learner(config, dataset), dataset, jax.random.key(11), run)
    np.save(out, np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(result.state)]))
    print("resumed from", result.resumed_from)
''')


def run_script(tmp_path, mode, dataset, run_dir, out):
    script = tmp_path / "engine_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, str(script), mode, str(dataset.path), str(run_dir), str(out)],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("kill", ["kill-after", "kill-during"])
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_policy(commons, tmp_path, kill):
    _, dataset = commons
    whole = run_script(tmp_path, "whole", dataset, tmp_path / "whole", tmp_path / "whole.npy")
    assert whole.returncode == 0, whole.stderr[-2000:]

    killed = run_script(tmp_path, kill, dataset, tmp_path / "killed", tmp_path / "killed.npy")
    assert killed.returncode == -9  # SIGKILL
    checkpoints = tmp_path / "killed" / "checkpoints"
    complete = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
    if kill == "kill-during":  # the interrupted write left its temporary directory, the earlier ones intact
        assert complete == [100, 200, 300][:len(complete)] and 300 not in complete
        assert any(".orbax-checkpoint-tmp" in p.name for p in checkpoints.iterdir())
    else:
        assert complete[-1] == 200

    resumed = run_script(tmp_path, "resume", dataset, tmp_path / "killed", tmp_path / "resumed.npy")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from 200" in resumed.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "whole.npy"))
    strip = lambda path: [",".join(r.split(",")[:2] + r.split(",")[3:]) for r in path.read_text().splitlines()]  # noqa: E731
    assert strip(tmp_path / "killed" / "metrics.csv") == strip(tmp_path / "whole" / "metrics.csv")
    config = json.loads((tmp_path / "killed" / "config.json").read_text())
    assert config["resumed"] == 1 and len(config["commands"]) == 2


def test_samplers_draw_the_documented_items(commons):
    _, dataset = commons
    key = jax.random.key(0)
    # Uniform: exactly the draw the learners used before the engine (randint over the items)
    space = item_space(dataset, "step")
    arrays = Uniform().arrays(space, dataset)
    np.testing.assert_array_equal(Uniform().draw(arrays, None, key, 64, "step"),
                                  jax.random.randint(key, (64,), 0, dataset.num_steps, dtype=np.int32))
    # DPER on a joint unit: episode probability = mean over type-wise buffers of P_J(k, ·)
    priorities = np.zeros((dataset.num_episodes, 3))
    priorities[:5] = 20.0  # five clearly better episodes
    sampler = DPER(DPERConfig(alpha=1.0), priorities=priorities)
    episodes = np.asarray(sampler.draw(sampler.arrays(item_space(dataset, "episode"), dataset), None, key, 512,
                                       "episode"))
    assert np.isin(episodes, np.arange(5)).mean() > 0.99
    steps = np.asarray(sampler.draw(sampler.arrays(space, dataset), None, key, 512, "step"))
    assert np.isin(dataset.episode_index[steps], np.arange(5)).mean() > 0.99
    with pytest.raises(ValueError, match="expected shape \\[E=60, A=3\\]"):
        DPER(priorities=np.zeros((3, 3))).arrays(space, dataset)
    # PJAP adapts from the learner's proximity: BC reports none
    with pytest.raises(ValueError, match="sampler 'pjap' needs a learner that reports joint-action proximity"):
        fit(bc.learner(CONFIG, dataset), dataset, key, RunConfig(updates=1, progress=False), sampler=PJAP())


def test_valuation_weights_are_checked(commons):
    _, dataset = commons
    learner = bc.learner(CONFIG, dataset)
    run = RunConfig(updates=1, progress=False)
    with pytest.raises(ValueError, match="weights: expected one per \\(episode, slot\\), shape \\[E=60, A=3\\]"):
        fit(learner, dataset, jax.random.key(0), run, weights=np.ones((dataset.num_steps, 3)))
    with pytest.raises(ValueError, match="every weight is 0"):
        fit(learner, dataset, jax.random.key(0), run, weights=np.zeros((60, 3)))


def test_a_run_recorded_before_a_setting_existed_resumes_with_its_old_behaviour(tmp_path):
    """A recorded section without a setting added since (SelectionConfig.features) is the same
    run when the setting has the value that reproduces the old behaviour, and no other."""
    from teamsift.engine.run import RunDir, RunDirError

    old = {"learner": "bc", "weights": {"method": "ev-cluster", "selection": {"score": "return", "threshold": 0.0}}}
    run_dir = RunDir(tmp_path / "run")
    run_dir.open(old, resume=False, overwrite=False)

    def now(**selection):
        return {**old, "weights": {**old["weights"], "selection": {**old["weights"]["selection"], **selection}}}

    # the refusal names the value that resumes it
    with pytest.raises(RunDirError, match="weights.selection.features: 'histogram' for that run"):
        run_dir.open(now(features="policy-mixture"), resume=True, overwrite=False)
    assert run_dir.open(now(features="histogram"), resume=True, overwrite=False)
    with pytest.raises(RunDirError, match="weights"):
        run_dir.open(now(threshold=1.0), resume=True, overwrite=False)
    with pytest.raises(RunDirError, match="weights"):
        run_dir.open(now(unknown_setting=1), resume=True, overwrite=False)
    # SIT's and ICQ's reward_scale_rule: runs before it read the scale from the data's largest return
    icq_run = RunDir(tmp_path / "icq")
    icq_run.open({"learner": "icq", "hyperparameters": {"beta": 0.1, "reward_scale": None}}, resume=False,
                 overwrite=False)
    largest = {"learner": "icq", "hyperparameters": {"beta": 0.1, "reward_scale": None, "reward_scale_rule": "largest"}}
    smac = {**largest, "hyperparameters": {**largest["hyperparameters"], "reward_scale_rule": "smac"}}
    with pytest.raises(RunDirError, match="hyperparameters.reward_scale_rule: 'largest' for that run .*set it to "
                                          "'largest' to resume"):
        icq_run.open(smac, resume=True, overwrite=False)
    assert icq_run.open(largest, resume=True, overwrite=False)
    # once recorded, a refusal names the setting that differs, not the whole section
    with pytest.raises(RunDirError, match=r'but hyperparameters.reward_scale_rule: was "largest", now "smac"$'):
        icq_run.open(smac, resume=True, overwrite=False)
