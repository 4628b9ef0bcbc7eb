"""Evaluation: vectorised rollouts are reproducible, masks finished episodes, and report
correct statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift import envs
from teamsift.collect import commons_policy, commons_team, random_policy
from teamsift.evaluate import ScoreSummary, evaluate, rollout
from teamsift.nets import FunctionPolicy, PolicyBank


def test_same_key_same_result_and_different_key_different_result():
    env = envs.make("commons")
    policy = random_policy(env.spec)
    a = evaluate(env, policy, jax.random.key(0), 64)
    b = evaluate(env, policy, jax.random.key(0), 64)
    c = evaluate(env, policy, jax.random.key(1), 64)
    np.testing.assert_array_equal(a.per_episode["return"], b.per_episode["return"])
    assert not np.array_equal(a.per_episode["return"], c.per_episode["return"])


def test_confidence_interval_matches_its_formula():
    values = np.array([1.0, 2.0, 4.0, 7.0])
    s = ScoreSummary.of(values)
    half = 1.959963984540054 * values.std(ddof=1) / 2.0
    assert s.mean == pytest.approx(3.5) and s.ci95_low == pytest.approx(3.5 - half)
    assert s.ci95_high == pytest.approx(3.5 + half) and s.n == 4


def test_chunked_evaluation_covers_every_episode():
    env = envs.make("commons")
    result = evaluate(env, commons_policy("sustainable"), jax.random.key(0), 10, chunk=4)
    assert result.per_episode["return"].shape == (10,)
    assert result.mean_length == 100


def test_episodes_after_done_are_masked():
    # poly games end after one step; the scan has length 1 and the step is valid.
    env = envs.make("poly_sign")
    policy = FunctionPolicy(lambda k, o, a: jnp.array([[0.5], [0.5]]))
    episodes = rollout(env, policy, jax.random.key(0), 3)
    assert episodes.valid.shape == (3, 1) and bool(episodes.valid.all())
    np.testing.assert_allclose(np.asarray(episodes.scores["return"]), 0.25)
    assert bool(episodes.terminated.all()) and not bool(episodes.truncated.any())


def test_policy_bank_plays_the_assigned_policy_in_each_slot():
    env = envs.make("commons")
    bank = PolicyBank((commons_policy("sustainable"), commons_policy("greedy")))
    assignment = jnp.array([[0, 1, 0], [1, 1, 1]])
    episodes = rollout(env, bank, jax.random.key(0), 2, assignment=assignment)
    first_actions = np.asarray(episodes.actions[:, 0])
    np.testing.assert_array_equal(first_actions, [[2, 5, 2], [5, 5, 5]])
    fixed = rollout(env, commons_team(("sustainable", "greedy", "sustainable")), jax.random.key(0), 1)
    np.testing.assert_array_equal(np.asarray(fixed.actions[0, 0]), [2, 5, 2])
