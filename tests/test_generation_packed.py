"""Packed generation and chunked writing change how a dataset is made, not what it holds:
the packed rollout (slots that start the next episode as soon as theirs ends, a checkpoint
bank evaluated block by block) gives the episodes of the plain per-block rollout, and a
dataset written chunk by chunk is the one written at once."""

import jax
import numpy as np
import pytest

from teamsift import envs
from teamsift.collect.rollouts import collect_arrays, pack
from teamsift.data import (
    DatasetError,
    load_dataset,
    write_dataset,
    write_dataset_chunks,
)
from teamsift.data.testing import make_arrays, tiny_spec
from teamsift.evaluate import rollout_to_host
from teamsift.evaluate.packed import concat_parts
from teamsift.nets import AgentNetConfig, CheckpointBank, init_params


def _bank(env, size=5):
    spec = env.spec
    net = AgentNetConfig(num_agents=spec.num_agents, obs_dim=spec.obs_dim, num_actions=spec.num_actions,
                         discrete=True, hidden=(16,))
    params = jax.vmap(lambda k: init_params(net, k))(jax.random.split(jax.random.key(0), size))
    return CheckpointBank(jax.tree.map(lambda x: 4.0 * x, params), net)


def _unpacked(env, policy, key, num_episodes, block, assignment):
    """The straightforward path: each block of episodes one fixed-length rollout, then packed."""
    parts = []
    for index in range(-(-num_episodes // block)):
        rows = np.arange(index * block, index * block + block) % num_episodes
        episodes = rollout_to_host(env, policy, jax.random.fold_in(key, index), block,
                                   assignment=assignment[rows])
        size = min(block, num_episodes - index * block)
        parts.append(pack(jax.tree.map(lambda x: x[:size], episodes)))
    return concat_parts(parts)


def test_packed_generation_gives_the_episodes_of_the_plain_rollout():
    env = envs.make("commons", episode_length=12)  # small and quick to compile
    bank = _bank(env)
    episodes, block = 23, 7
    # Checkpoints 1, 3 and 4 only: the bank is cut down to them before the rollout.
    assignment = np.asarray([1, 3, 4])[np.asarray(jax.random.randint(jax.random.key(2), (episodes, 3), 0, 3))]
    key = jax.random.key(3)
    want = _unpacked(env, bank, key, episodes, block, assignment)
    # 5 slots for 23 episodes: slots start new episodes and blocks straddle refills.
    got = collect_arrays(env, bank, key, episodes, chunk=block, assignment=assignment, slots=5)
    assert got.keys() == want.keys()
    for name in want:
        if name == "scores":
            assert got[name].keys() == want[name].keys()
            for score in want[name]:
                np.testing.assert_array_equal(got[name][score], want[name][score], err_msg=score)
        else:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _chunks(arrays, cuts):
    """`write_dataset` arguments cut into chunks of whole episodes at episode indices `cuts`."""
    lengths = arrays["episode_lengths"]
    starts = np.concatenate([[0], np.cumsum(lengths)])
    edges = [0, *cuts, len(lengths)]
    for lo, hi in zip(edges[:-1], edges[1:]):
        chunk = {"episode_lengths": lengths[lo:hi], "scores": {k: v[lo:hi] for k, v in arrays["scores"].items()}}
        for name in ("obs", "state", "actions", "reward", "avail", "terminated", "truncated"):
            if name in arrays:
                chunk[name] = arrays[name][starts[lo]:starts[hi]]
        for name in ("final_obs", "final_state", "final_avail"):
            if name in arrays:
                chunk[name] = arrays[name][lo:hi]
        yield chunk


@pytest.mark.parametrize("discrete", [True, False])
def test_chunked_writing_gives_the_dataset_written_at_once(tmp_path, discrete):
    spec = tiny_spec(discrete=discrete)
    arrays = make_arrays(spec, [3, 1, 4, 1, 5, 2], seed=1)
    labels = {k: arrays.pop(k) for k in ("agent_ids", "behaviour", "policy_ids", "provenance", "notes") if k in arrays}
    once = load_dataset(write_dataset(tmp_path / "once", **arrays, **labels), mmap=False)
    steps = {k: v for k, v in arrays.items() if k not in ("spec",)}
    chunked = load_dataset(write_dataset_chunks(tmp_path / "chunked", _chunks(steps, [2, 3]), spec=spec, **labels),
                           mmap=False)
    assert once.steps.keys() == chunked.steps.keys()
    for name in once.steps:
        np.testing.assert_array_equal(once.steps[name], chunked.steps[name], err_msg=name)
        assert once.steps[name].dtype == chunked.steps[name].dtype
    for name in once.episodes:
        np.testing.assert_array_equal(once.episodes[name], chunked.episodes[name], err_msg=name)
    assert {k: v for k, v in once.meta.items() if k != "created"} == \
        {k: v for k, v in chunked.meta.items() if k != "created"}


def test_chunked_writing_is_atomic_and_never_overwrites_unasked(tmp_path):
    spec = tiny_spec()
    arrays = make_arrays(spec, [2, 3, 2], seed=2)
    for k in ("agent_ids", "behaviour", "policy_ids", "provenance", "notes", "spec"):
        arrays.pop(k, None)
    out = write_dataset_chunks(tmp_path / "d", _chunks(arrays, [1]), spec=spec)
    with pytest.raises(FileExistsError):
        write_dataset_chunks(out, _chunks(arrays, [1]), spec=spec)

    def failing():
        yield from _chunks(arrays, [1])
        raise RuntimeError("the rollout broke")

    with pytest.raises(RuntimeError):
        write_dataset_chunks(out, failing(), spec=spec, overwrite=True)
    bad = dict(arrays, reward=np.full_like(arrays["reward"], np.nan))
    with pytest.raises(DatasetError, match="reward"):
        write_dataset_chunks(tmp_path / "bad", _chunks(bad, [1]), spec=spec)
    assert not (tmp_path / "bad").exists()
    assert load_dataset(out).num_episodes == 3  # the first dataset is still there, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporaries left behind
