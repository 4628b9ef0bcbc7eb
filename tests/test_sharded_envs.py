"""Vectorised environments over several devices: evaluation, dataset generation and MAPPO's
environments are split over four (forced) host devices and give the one-device results.

The device count is fixed when JAX starts, so the four-device runs are subprocesses with
XLA_FLAGS=--xla_force_host_platform_device_count=4; the one-device reference runs in the
test process (one CPU device).

Why a tolerance on floats: on XLA:CPU the partitioned (four-device) program is not
optimised exactly as the one-device program (its optimised HLO computes some divisions by
the square roots of the MPE physics differently: `rsqrt` appears in the one-device program
only), so positions and velocities can differ in their last bit. Measured: CN states at
most 1.2e-7 apart (observations, actions, rewards, returns and scores were equal), MAPPO's
parameters at most 3e-8 apart after 2 updates. Integers, booleans and the layout itself
are compared exactly.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
FLOAT_TOL = dict(rtol=1e-5, atol=1e-5)


def _one_device_reference():
    if jax.device_count() != 1:
        pytest.skip("the one-device reference runs in the test process, which has several devices here")


def _devices(x) -> int:
    return len(x.sharding.device_set)


def episodes_workload(out_dir: str) -> tuple[dict, dict]:
    """A policy evaluated and a small dataset generated on CN; their per-episode arrays and
    how many devices hold the episode arrays."""
    from teamsift import envs
    from teamsift.collect import collect, random_policy
    from teamsift.data import load_dataset
    from teamsift.evaluate import evaluate, rollout
    from teamsift.nets.agent import AgentNetConfig, init_params
    from teamsift.nets.policy import NetworkPolicy, PolicyBank

    env = envs.make("CN_3ls3l")
    spec = env.spec
    net = AgentNetConfig(num_agents=spec.num_agents, obs_dim=spec.obs_dim, num_actions=spec.num_actions,
                         discrete=spec.discrete, hidden=(32,), agent_ids=True)
    # Committed to one device, as a restored checkpoint may be: the rollout lays it on the mesh.
    params = jax.device_put(init_params(net, jax.random.key(1)), jax.devices()[0])
    bank = PolicyBank((NetworkPolicy(params, net, deterministic=False), random_policy(spec)))
    assignment = np.asarray(jax.random.randint(jax.random.key(2), (8, spec.num_agents), 0, 2))

    # Generation: 8 episodes, one chunk (the same program as the rollout below).
    dataset = load_dataset(collect(env, bank, jax.random.key(3), 8, Path(out_dir) / "dataset", assignment=assignment),
                           mmap=False)
    episodes = rollout(env, bank, jax.random.fold_in(jax.random.key(3), 0), 8, assignment=assignment)
    layout = {name: _devices(getattr(episodes, name)) for name in ("obs", "actions", "reward", "final_obs")}
    layout["scores"] = _devices(episodes.scores["return"])
    # Evaluation: 6 episodes, run padded to 8 over four devices.
    result = evaluate(env, bank, jax.random.key(4), 6, assignment=assignment[:6])

    info = {"devices": jax.device_count(), "layout": layout}
    if jax.device_count() == 4:  # under a caller's seed × data mesh (jax.set_mesh), on its "data" axis
        from teamsift.devices import seed_data_mesh

        with jax.set_mesh(seed_data_mesh(2, 8)):
            in_mesh = evaluate(env, bank, jax.random.key(4), 6, assignment=assignment[:6])
            sharding = rollout(env, bank, jax.random.key(4), 8, record=False, assignment=assignment).reward.sharding
        same = all(np.array_equal(in_mesh.per_episode[k], v) for k, v in result.per_episode.items())
        info["in_mesh"] = {"spec": str(sharding.spec), "mesh": dict(sharding.mesh.shape), "same": same}
    arrays = {f"data_{k}": np.asarray(v) for k, v in dataset.steps.items()}
    arrays.update({f"episodes_{k}": np.asarray(v) for k, v in dataset.episodes.items()
                   if np.asarray(v).dtype.kind != "U"})
    arrays.update({f"eval_{k}": v for k, v in result.per_episode.items()})
    return info, arrays


def mappo_workload(out_dir: str) -> tuple[dict, dict]:
    """Two updates of MAPPO (two seeds, 8 environments each) on CN: checkpoints, logs, and
    the environments between updates."""
    from teamsift import envs
    from teamsift.collect import ppo

    env = envs.make("CN_3ls3l")
    config = ppo.PPOConfig(num_envs=8, rollout_length=8, total_timesteps=2 * 8 * 8, num_checkpoints=2,
                           update_epochs=1, num_minibatches=2, hidden=(16,))
    result = ppo.train(config, env, jax.random.key(0), progress=False, num_seeds=2)
    runner = result.final_state.runner
    arrays = {f"checkpoint_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(result.checkpoints))}
    arrays.update({f"log_{k}": np.asarray(v) for k, v in result.logs.items()})
    arrays.update({f"runner_{k}": np.asarray(v) for k, v in runner._asdict().items()
                   if k != "env_state" and v is not None})
    return {"devices": jax.device_count(), "runner": _devices(runner.obs), "spec": str(runner.obs.sharding.spec)
            if hasattr(runner.obs.sharding, "spec") else None}, arrays


def _on_four_devices(workload: str, out_dir: Path) -> tuple[dict, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "TEAMSIFT_KEEP_XLA_FLAGS")}
    path = [SRC, str(Path(__file__).parent), os.environ.get("PYTHONPATH")]
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, path)))
    code = ("import json, sys, numpy as np, teamsift, test_sharded_envs as t\n"
            f"info, arrays = t.{workload}(sys.argv[1])\n"
            "np.savez(sys.argv[1] + '/arrays.npz', **arrays)\n"
            "print(json.dumps(info))")
    out_dir.mkdir()
    done = subprocess.run([sys.executable, "-c", code, str(out_dir)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out_dir / "arrays.npz") as arrays:
        return json.loads(done.stdout.strip().splitlines()[-1]), dict(arrays)


def _assert_same(one: dict, four: dict):
    assert one.keys() == four.keys()
    for name in one:
        a, b = one[name], four[name]
        assert a.shape == b.shape and a.dtype == b.dtype, name
        if a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, **FLOAT_TOL, err_msg=name)
        else:
            np.testing.assert_array_equal(b, a, err_msg=name)


def test_batch_sizes_round_up_to_the_device_count():
    from teamsift.devices import batch_size_for

    assert [batch_size_for(n, range(4)) for n in (1, 4, 6, 8, 1023)] == [4, 4, 8, 8, 1024]
    assert batch_size_for(6, range(1)) == 6


def test_split_keys_do_not_depend_on_how_many_are_split():
    """What padding a batch relies on: split(key, m)[:n] == split(key, n) (partitionable threefry)."""
    key = jax.random.key(7)
    np.testing.assert_array_equal(jax.random.key_data(jax.random.split(key, 12))[:10],
                                  jax.random.key_data(jax.random.split(key, 10)))


def test_evaluation_and_generation_split_episodes_over_four_devices(tmp_path):
    _one_device_reference()
    info_one, one = episodes_workload(str(tmp_path))
    info_four, four = _on_four_devices("episodes_workload", tmp_path / "four")
    assert info_one == {"devices": 1, "layout": dict.fromkeys(info_one["layout"], 1)}
    assert info_four["layout"] == dict.fromkeys(info_one["layout"], 4)  # split 4 ways
    assert info_four["in_mesh"] == {"spec": "P('data',)", "mesh": {"seed": 2, "data": 2}, "same": True}
    assert one["eval_return"].shape == (6,) and one["episodes_length"].shape == (8,)
    _assert_same(one, four)


@pytest.mark.slow
def test_mappo_environments_split_over_four_devices(tmp_path):
    _one_device_reference()
    info_one, one = mappo_workload(str(tmp_path))
    info_four, four = _on_four_devices("mappo_workload", tmp_path / "four")
    assert info_one["runner"] == 1
    # The engine's mesh: 2 seeds on its "seed" axis, each seed's 8 environments split over its
    # "data" axis inside the update; between updates the engine keeps its state seed-sharded.
    assert info_four["runner"] == 4 and info_four["spec"] == "P('seed',)"
    _assert_same(one, four)
