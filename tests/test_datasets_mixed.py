"""Datasets of mixed quality carry correct ground truth: a slot labelled with a level was
played by a checkpoint of that level's pool; population datasets have the requested group
sizes and appearance counts."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift import envs
from teamsift.collect import pools as pool_lib
from teamsift.collect.datasets import (
    balanced_groups, generate_from_spec, generate_population, pool_population, scripted_population,
)
from teamsift.data import load_dataset
from teamsift.nets import AgentNetConfig, apply_agent, init_params


@pytest.fixture(scope="module")
def fake_pools():
    """Six random-initialised checkpoints of a commons agent, two per level (no training)."""
    env = envs.make("commons")
    net = AgentNetConfig(num_agents=3, obs_dim=3, num_actions=6, discrete=True)
    params = jax.vmap(lambda k: init_params(net, k))(jax.random.split(jax.random.key(0), 6))
    params = jax.tree.map(lambda x: 6.0 * x, params)  # sharp, distinct action distributions
    levels = ["random", "medium", "expert", "random", "medium", "expert"]
    summary = {"mean": 0.0, "std": 0.0, "ci95_low": 0.0, "ci95_high": 0.0, "n": 1}
    return env, pool_lib.PoolSet(env_id="commons", env_kwargs={}, net=net, params=params, steps=np.arange(6),
                                 returns=[summary] * 6, random_return=summary, cuts=(1.0, 2.0),
                                 cut_rule="test", levels=levels)


def test_spec_dataset_labels_match_the_checkpoints_that_acted(fake_pools, tmp_path):
    env, pools = fake_pools
    path = generate_from_spec(env, pools, "50%[r,m,e] + 50%[e,e,r]", 40, jax.random.key(1), tmp_path / "d")
    ds = load_dataset(path)
    behaviour = ds.episodes["behaviour"]
    assert collections.Counter(map(tuple, behaviour)) == {("random", "medium", "expert"): 20,
                                                           ("expert", "expert", "random"): 20}
    checkpoint = np.char.lstrip(ds.episodes["policy_ids"], "ckpt").astype(int)  # [E, A]
    assert np.all(np.asarray(pools.levels)[checkpoint] == behaviour)
    # Re-derive every action from the recorded observation with the labelled checkpoint:
    # the behaviour policies sample, so the recorded action must have been sampled from
    # that checkpoint's distribution — check it is far more likely under it than under
    # the other checkpoints.
    obs = jnp.asarray(ds.steps["obs"])
    actions = jnp.asarray(ds.steps["actions"])
    slot_ckpt = checkpoint[ds.episode_index]  # [N, A]

    def log_prob(ckpt, slot):
        params = jax.tree.map(lambda x: x[ckpt], pools.params)
        logits = jax.vmap(lambda o: apply_agent(pools.net, params, o[slot], slot, None)[0])(obs)
        return jax.nn.log_softmax(logits)[jnp.arange(len(obs)), actions[:, slot]]

    for slot in range(3):
        table = jnp.stack([log_prob(c, slot) for c in range(6)], axis=1)  # [N, 6]
        labelled = table[jnp.arange(len(obs)), slot_ckpt[:, slot]]
        for episode in range(0, 40, 7):
            rows = ds.episode_slice(episode)
            totals = np.asarray(table[rows].sum(axis=0))
            # the labelled checkpoint explains the episode as well as any checkpoint can
            # (two sharp checkpoints may agree on every action of an episode)
            assert totals[checkpoint[episode, slot]] >= totals.max() - 1e-2
        assert float(labelled.mean()) > float(table.mean())


def test_spec_needs_non_empty_pools(fake_pools, tmp_path):
    env, pools = fake_pools
    import dataclasses

    no_expert = dataclasses.replace(pools, levels=["random", "medium"] * 3)
    with pytest.raises(pool_lib.PoolError, match="pool 'expert' of commons is empty"):
        generate_from_spec(env, no_expert, "[r,m,e]", 4, jax.random.key(0), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_balanced_population_has_exact_appearances(tmp_path):
    groups = balanced_groups(jax.random.key(0), 12, 3, 5)
    assert groups.shape == (20, 3)
    assert np.bincount(groups.ravel(), minlength=12).tolist() == [5] * 12
    assert all(len(set(g)) == 3 for g in groups)
    with pytest.raises(ValueError, match="multiple of the group size"):
        balanced_groups(jax.random.key(0), 10, 3, 3)


def test_commons_population_dataset(tmp_path):
    env = envs.make("commons", num_agents=3)
    bank, policy, levels = scripted_population(env, 12, ("sustainable", "adaptive", "greedy", "erratic"))
    path = generate_population(env, bank, policy, levels, jax.random.key(0), tmp_path / "pop", appearances=4)
    ds = load_dataset(path)
    assert ds.num_episodes == 16 and ds.spec.num_agents == 3
    ids = ds.episodes["agent_ids"]
    assert collections.Counter(ids.ravel()) == {f"ind{j:02d}": 4 for j in range(12)}
    assert all(len(set(row)) == 3 for row in ids)
    # individual j is of kind j mod 4, and its recorded behaviour says so
    kinds = ("sustainable", "adaptive", "greedy", "erratic")
    for row_ids, row_levels in zip(ids, ds.episodes["behaviour"]):
        for name, level in zip(row_ids, row_levels):
            assert level == kinds[int(name[3:]) % 4]
    # a greedy individual really consumed the most at the first step
    first = ds.steps["actions"][ds.starts]
    assert np.all(first[ds.episodes["behaviour"] == "greedy"] == 5)
    assert np.all(first[ds.episodes["behaviour"] == "sustainable"] == 2)


def test_anonymised_population_keeps_ground_truth_elsewhere(tmp_path, fake_pools):
    env, pools = fake_pools
    bank, policy, levels = pool_population(pools, 9, jax.random.key(3))
    assert levels == ["random", "medium", "expert"] * 3
    assert [pools.levels[p] for p in policy] == levels
    path = generate_population(env, bank, policy, levels, jax.random.key(0), tmp_path / "anon", num_episodes=30,
                               anonymise=True)
    ds = load_dataset(path)
    ids = ds.episodes["agent_ids"]
    assert len(set(ids.ravel())) == 90  # every appearance is a new id
    truth = ds.episodes["policy_ids"]
    assert set(truth.ravel()) <= {f"ind{j}" for j in range(9)}
    assert all(len(set(row)) == 3 for row in truth)
