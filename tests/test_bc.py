"""Behaviour cloning: it reaches the return of the behaviour it clones, respects action
masks, trains several seeds in one vmapped program, and is deterministic per seed."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift import envs
from teamsift.algos import bc
from teamsift.collect import collect, commons_policy, random_policy
from teamsift.data import load_dataset
from teamsift.engine import RunConfig, fit
from teamsift.evaluate import evaluate
from teamsift.nets import AgentNetConfig, NetworkPolicy, init_params

FAST = dataclasses.replace(bc.BCConfig(), learning_rate=3e-3, optimizer="adam")


def train(config, dataset, key, updates, *, seeds=1, log_every=None, weights=None):
    run = RunConfig(updates=updates, seeds=seeds, log_every=log_every or max(1, updates // 10), progress=False)
    return fit(bc.learner(config, dataset), dataset, key, run, weights=weights)


@pytest.fixture(scope="module")
def adaptive_commons(tmp_path_factory):
    env = envs.make("commons")
    path = collect(env, commons_policy("adaptive"), jax.random.key(0), 100, tmp_path_factory.mktemp("d") / "adaptive")
    return env, load_dataset(path)


def test_bc_reaches_the_scripted_policy_and_beats_random(adaptive_commons):
    env, dataset = adaptive_commons
    result = train(FAST, dataset, jax.random.key(1), 1500, log_every=100)
    loss = result.history["loss"]
    assert loss.shape == (1, 15)  # one row per 100 updates: the mean over those updates
    assert loss[0, -1] < 0.2 * loss[0, 0]
    policy = result.policy()
    cloned = evaluate(env, policy, jax.random.key(2), 50).team_return.mean
    scripted = evaluate(env, commons_policy("adaptive"), jax.random.key(2), 50).team_return.mean
    uniform = evaluate(env, random_policy(env.spec), jax.random.key(2), 50).team_return.mean
    assert cloned >= 0.95 * scripted
    assert cloned > uniform + 0.5 * (scripted - uniform)


def test_vmapped_seeds_train_independently_and_reproducibly(adaptive_commons):
    env, dataset = adaptive_commons
    result = train(FAST, dataset, jax.random.key(5), 200, seeds=3, log_every=100)
    assert result.history["loss"].shape == (3, 2) and result.final().shape == (3,)
    leaves = jax.tree.leaves(result.state.params)
    assert all(leaf.shape[0] == 3 for leaf in leaves)
    first, second = (jax.tree.leaves(result.policy(s).params)[0] for s in (0, 1))
    assert not np.allclose(first, second)  # different seeds, different initialisations
    again = train(FAST, dataset, jax.random.key(5), 200, seeds=3, log_every=100)
    for a, b in zip(leaves, jax.tree.leaves(again.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The chunking of the updates (log_every) does not change the result.
    rechunked = train(FAST, dataset, jax.random.key(5), 200, seeds=3, log_every=37)
    for a, b in zip(leaves, jax.tree.leaves(rechunked.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_weights_select_which_agents_are_imitated(adaptive_commons, tmp_path):
    # Slot 0 greedy, slots 1-2 sustainable: cloning only slots 1-2 must give a sustainable policy.
    from teamsift.collect import commons_team

    env = envs.make("commons")
    path = collect(env, commons_team(("greedy", "sustainable", "sustainable")), jax.random.key(0), 50, tmp_path / "mix")
    dataset = load_dataset(path)
    weights = np.ones((dataset.num_episodes, 3), np.float32)  # one per (episode, slot)
    weights[:, 0] = 0.0
    policy = train(FAST, dataset, jax.random.key(1), 600, weights=weights).policy()
    actions, _ = policy.act(jax.random.key(0), jnp.asarray(dataset.steps["obs"][:50]), None, None)
    assert np.all(np.asarray(actions) == 2)  # everyone consumes the sustainable 2


def test_discrete_policy_never_picks_masked_actions():
    config = AgentNetConfig(num_agents=4, obs_dim=6, num_actions=7, discrete=True)
    policy = NetworkPolicy(params=init_params(config, jax.random.key(0)), config=config, deterministic=False)
    keys = jax.random.split(jax.random.key(1), 200)
    obs = jax.random.normal(jax.random.key(2), (200, 4, 6))
    avail = jax.random.bernoulli(jax.random.key(3), 0.4, (200, 4, 7)).at[..., 3].set(True)
    actions = jax.vmap(lambda k, o, a: policy.act(k, o, a, None)[0])(keys, obs, avail)
    chosen = np.take_along_axis(np.asarray(avail), np.asarray(actions)[..., None], axis=-1)
    assert chosen.all()
    greedy = policy.replace_mode(True)
    actions = jax.vmap(lambda k, o, a: greedy.act(k, o, a, None)[0])(keys, obs, avail)
    assert np.take_along_axis(np.asarray(avail), np.asarray(actions)[..., None], axis=-1).all()


def test_recurrent_bc_on_a_partially_observable_env(tmp_path):
    # A GRU agent trained on whole episodes, asked for explicitly on commons (whose
    # observations are full): the GRU must still clone the adaptive rule. Episodes of 25
    # steps, not 100: the GRU's scan over time is what this test pays for on a CPU.
    env = envs.make("commons", episode_length=25)
    path = collect(env, commons_policy("adaptive"), jax.random.key(0), 40, tmp_path / "gru")
    dataset = load_dataset(path)
    config = dataclasses.replace(FAST, recurrent=True, batch_size=8)
    result = train(config, dataset, jax.random.key(1), 400, log_every=20)
    policy = result.policy()
    assert policy.config.recurrent
    assert result.history["loss"][0, -1] < 0.3 * result.history["loss"][0, 0]
    cloned = evaluate(env, policy, jax.random.key(2), 20).team_return.mean
    assert cloned >= 0.9 * evaluate(env, commons_policy("adaptive"), jax.random.key(2), 20).team_return.mean


def test_continuous_bc_clones_a_fixed_joint_action(tmp_path):
    from teamsift.nets import FunctionPolicy

    env = envs.make("poly_twin_peaks")
    target = jnp.array([[0.61], [0.61]])
    noisy = FunctionPolicy(lambda k, o, a: jnp.clip(target + 0.1 * jax.random.normal(k, (2, 1)), -1, 1))
    dataset = load_dataset(collect(env, noisy, jax.random.key(0), 500, tmp_path / "poly"))
    policy = train(FAST, dataset, jax.random.key(1), 500).policy()
    actions, _ = policy.act(jax.random.key(0), jnp.ones((2, 1)), None, None)
    np.testing.assert_allclose(np.asarray(actions), np.asarray(target), atol=0.05)
    assert evaluate(env, policy, jax.random.key(0), 4).team_return.mean > 0.55


def test_bad_hyperparameters_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="BCConfig.learning_rate: expected a positive number, got -0.1"):
        bc.BCConfig(learning_rate=-0.1)
    with pytest.raises(ValueError, match="BCConfig.batch_size: expected a positive number, got 0"):
        bc.BCConfig(batch_size=0)
    with pytest.raises(ValueError, match="BCConfig.optimizer"):
        bc.BCConfig(optimizer="sgd")


def test_gru_agents_by_default_only_where_discrete_observations_are_partial():
    from types import SimpleNamespace

    kinds = {(partial, discrete): bc.default_recurrent(SimpleNamespace(partially_observable=partial, discrete=discrete))
             for partial in (True, False) for discrete in (True, False)}
    # SMAX and CN (partial, discrete): GRU, as SIT's Table 11; MaBrax (partial, continuous): MLP
    assert kinds == {(True, True): True, (True, False): False, (False, True): False, (False, False): False}


@pytest.mark.parametrize("env_id, rule, recurrent", [("mpe_spread", "scripted:assigned", False),
                                                     ("CN_3ls3l", "scripted:nearest", True)])
def test_bc_clones_a_scripted_mpe_policy(tmp_path, env_id, rule, recurrent):
    from teamsift.collect import behaviours

    env = envs.make(env_id)
    scripted, _ = behaviours.resolve(rule, env)
    dataset = load_dataset(collect(env, scripted, jax.random.key(0), 300, tmp_path / env_id))
    config = dataclasses.replace(FAST, batch_size=16)
    policy = train(config, dataset, jax.random.key(1), 1500 if not recurrent else 300).policy()
    assert policy.config.recurrent == recurrent  # GRU by default where observations are partial
    cloned = evaluate(env, policy, jax.random.key(2), 200).team_return
    teacher = evaluate(env, scripted, jax.random.key(2), 200).team_return
    uniform = evaluate(env, random_policy(env.spec), jax.random.key(2), 200).team_return
    gap = teacher.mean - uniform.mean
    assert cloned.mean > uniform.ci95_high  # clearly above random
    assert cloned.mean >= teacher.mean - 0.2 * gap  # near the scripted policy (returns are negative)
