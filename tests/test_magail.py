"""MAGAIL and the shared adversarial-imitation loop, on MPE spread (3 agents, 25 steps):
the discriminator tells expert from random play, expert-like transitions earn the higher
reward, both discriminator kinds run with the right shapes and diagnostics, a BC warm
start puts the clone into the generator, weighted expert decisions count by their weight,
and a short run raises the generator's return."""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from teamsift import envs
from teamsift.algos import adversarial, magail
from teamsift.collect import collect, ppo, random_policy
from teamsift.collect.datasets import generate_from_spec
from teamsift.collect.pools import load_pools
from teamsift.data import load_dataset
from teamsift.engine import RunConfig, fit
from teamsift.evaluate import evaluate
from teamsift.nets import NetworkPolicy
from teamsift.nets.discriminator import DiscriminatorConfig, discriminator_logits, init_discriminator

POOLS = Path(__file__).resolve().parents[1] / "pools"
# 2 iterations of 4 envs × 8 steps: enough to exercise every code path.
TINY_GENERATOR = dict(num_envs=4, rollout_length=8, total_timesteps=64, num_checkpoints=3, num_minibatches=2,
                      update_epochs=1)


@pytest.fixture(scope="module")
def spread():
    return envs.make("mpe_spread")


@pytest.fixture(scope="module")
def datasets(spread, tmp_path_factory):
    """150 episodes (3750 transitions) of expert play ([all e]) and of uniform random play."""
    root = tmp_path_factory.mktemp("magail")
    expert = generate_from_spec(spread, load_pools("mpe_spread", POOLS), "[all e]", 150, jax.random.key(0),
                                root / "expert")
    uniform = collect(spread, random_policy(spread.spec), jax.random.key(1), 150, root / "random")
    return load_dataset(expert), load_dataset(uniform)


def tiny_config(**fields) -> magail.MAGAILConfig:
    return magail.config_for("mpe_spread", generator=TINY_GENERATOR, disc_steps=2, disc_batch_size=16, **fields)


def whole(dataset) -> dict:
    return {k: jnp.asarray(dataset.steps[k]) for k in ("obs", "state", "actions")}


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative) (Mann–Whitney)."""
    ranks = np.concatenate([positive, negative]).argsort().argsort() + 1.0
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@pytest.fixture(scope="module", params=[False, True], ids=["decentralised", "centralised"])
def fitted(request, spread, datasets):
    """A discriminator trained 300 steps on expert vs random transitions."""
    expert, uniform = datasets
    disc = magail.make_discriminator(magail.MAGAILConfig(centralised=request.param), spread.spec)
    params, losses = adversarial.fit_discriminator(disc, adversarial.expert_arrays(expert),
                                                   adversarial.expert_arrays(uniform), jax.random.key(2), 300, 256)
    return disc, params, np.asarray(losses)


def test_discriminator_separates_expert_from_random(fitted, datasets):
    disc, params, losses = fitted
    expert, uniform = datasets
    assert losses[:5].mean() > 0.65  # ≈ log 2 at the start
    assert losses[-20:].mean() < 0.45
    d_expert = np.asarray(disc.score(params, whole(expert))).mean(axis=-1)
    d_random = np.asarray(disc.score(params, whole(uniform))).mean(axis=-1)
    assert auc(d_expert, d_random) > 0.9  # measured ≈ 0.96 for both kinds
    assert d_expert.mean() > 0 > d_random.mean()


def test_expert_like_transitions_earn_higher_reward(fitted, datasets):
    disc, params, _ = fitted
    expert, uniform = datasets
    r_expert = np.asarray(disc.reward(params, whole(expert)))
    r_random = np.asarray(disc.reward(params, whole(uniform)))
    assert r_expert.shape == (expert.num_steps, 3)
    assert np.all(np.abs(r_expert) < 1) and np.all(np.abs(r_random) < 1)
    assert r_expert.mean() > 0.3 > -0.3 > r_random.mean()  # measured ≈ +0.55 vs −0.55
    # r = 2σ(d) − 1: zero at d = 0, increasing in d, bounded by ±1.
    logits = jnp.linspace(-8.0, 8.0, 33)
    reward = np.asarray(magail.gail_reward(logits))
    assert reward[16] == 0.0 and np.all(np.diff(reward) > 0) and reward[0] > -1 and reward[-1] < 1


def test_bce_loss_uses_expert_label_one():
    confident = magail.bce_loss(jnp.full((4, 3), 6.0), jnp.full((4, 3), -6.0))
    inverted = magail.bce_loss(jnp.full((4, 3), -6.0), jnp.full((4, 3), 6.0))
    chance = magail.bce_loss(jnp.zeros((4, 3)), jnp.zeros((4, 3)))
    assert float(confident) < 0.01 < float(chance) < float(inverted)
    np.testing.assert_allclose(float(chance), np.log(2.0), rtol=1e-6)


def test_weighted_expert_terms_count_by_their_weight():
    """0/1 weights on expert decisions = the loss on the weighted decisions only; all-ones
    weights = the unweighted loss; the loop's expert batches carry the run's weights."""
    d_expert = jax.random.normal(jax.random.key(0), (6, 3))
    d_generator = jax.random.normal(jax.random.key(1), (6, 3))
    keep = jnp.zeros((6, 3)).at[:2].set(1.0)
    np.testing.assert_allclose(float(magail.bce_loss(d_expert, d_generator, keep)),
                               0.5 * float(jnp.mean(jax.nn.softplus(-d_expert[:2])))
                               + 0.5 * float(jnp.mean(jax.nn.softplus(d_generator))), rtol=1e-6)
    np.testing.assert_allclose(float(magail.bce_loss(d_expert, d_generator, jnp.ones((6, 3)))),
                               float(magail.bce_loss(d_expert, d_generator)), rtol=1e-6)
    arrays = {"obs": jnp.arange(5.0)[:, None, None] * jnp.ones((5, 3, 2)), "state": jnp.zeros((5, 4)),
              "actions": jnp.zeros((5, 3), jnp.int32), "weight": jnp.arange(15.0).reshape(5, 3),
              "episode_index": jnp.zeros(5, jnp.int32), "episode_start": jnp.zeros(1, jnp.int32),
              "episode_length": jnp.full(1, 5, jnp.int32)}
    batch = adversarial.expert_batch(arrays, jnp.array([4, 1]))
    assert set(batch) == {"obs", "state", "actions", "weight"}
    np.testing.assert_array_equal(np.asarray(batch["weight"]), [[12, 13, 14], [3, 4, 5]])


@pytest.mark.parametrize("centralised, shared, discrete", [(False, True, True), (False, False, True),
                                                          (True, True, True), (False, True, False),
                                                          (True, True, False)])
def test_discriminator_networks_give_one_logit_per_agent(centralised, shared, discrete):
    config = DiscriminatorConfig(num_agents=3, obs_dim=6, state_dim=10, num_actions=4, discrete=discrete,
                                 centralised=centralised, shared=shared)
    params = init_discriminator(config, jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (7, 2, 3, 6))
    state = jax.random.normal(jax.random.key(2), (7, 2, 10))
    if discrete:
        actions = jax.random.randint(jax.random.key(3), (7, 2, 3), 0, 4)
    else:
        actions = jax.random.uniform(jax.random.key(3), (7, 2, 3, 4), minval=-1, maxval=1)
    logits = discriminator_logits(config, params, obs, state, actions)
    assert logits.shape == (7, 2, 3)
    if centralised:  # one logit broadcast to the agents
        np.testing.assert_array_equal(np.asarray(logits[..., 0]), np.asarray(logits[..., 2]))
    else:  # each agent is scored on its own input (and id)
        assert not np.allclose(np.asarray(logits[..., 0]), np.asarray(logits[..., 1]))
    if not discrete:  # continuous actions are clipped to the environment's range
        clipped = discriminator_logits(config, params, obs, state, jnp.clip(actions * 5, -1, 1))
        np.testing.assert_allclose(np.asarray(discriminator_logits(config, params, obs, state, actions * 5)),
                                   np.asarray(clipped), rtol=1e-6)


@pytest.mark.parametrize("centralised", [False, True], ids=["decentralised", "centralised"])
def test_both_variants_run_with_the_right_shapes(spread, datasets, centralised):
    expert, _ = datasets
    config = tiny_config(centralised=centralised)
    result = magail.train(config, expert, spread, jax.random.key(3), progress=False)
    iterations, bins = config.generator.num_updates, config.histogram_bins
    assert iterations == 2
    for name in ("disc_loss", "expert_accuracy", "generator_accuracy", "generator_reward_mean",
                 "generator_reward_var", "expert_reward_mean", "expert_reward_var", "return", "env_steps",
                 "gen_actor_loss", "gen_entropy", "gen_advantage_var"):
        assert result.logs[name].shape == (iterations,), name
    assert np.all(result.logs["gen_advantage_var"] > 0)  # Σ_k Var[A^k] of the discriminator-reward GAE
    hist = result.logs["reward_histogram"]
    assert hist.shape == (iterations, bins)
    assert np.all(hist.sum(axis=1) == 4 * 8 * 3)  # every generator (step, env, agent) reward, once
    np.testing.assert_array_equal(result.logs["update"], [1, 2])  # one log row per iteration here
    assert result.histogram_edges.shape == (bins + 1,) and result.histogram_edges[0] == -1.0
    assert set(result.reward_histograms((0.5, 1.0))) == {1, 2}
    assert np.all(np.abs(result.logs["generator_reward_mean"]) < 1)
    np.testing.assert_array_equal(result.checkpoint_iterations, [0, 1, 2])
    np.testing.assert_array_equal(result.checkpoint_steps, [0, 32, 64])
    # Checkpoints are ordinary actor params: NetworkPolicy acts with them in the environment.
    assert all(leaf.shape[0] == 3 for leaf in jax.tree.leaves(result.checkpoints))
    policy = result.policy(-1)
    assert isinstance(policy, NetworkPolicy) and policy.config == ppo.actor_config(config.generator, spread.spec)
    assert np.isfinite(evaluate(spread, policy, jax.random.key(4), 100).team_return.mean)
    # The final discriminator scores a batch with one logit per agent.
    disc = magail.make_discriminator(config, spread.spec)
    assert disc.score(result.disc_params, whole(expert)).shape == (expert.num_steps, 3)


def test_seeds_are_vmapped_reproducible_and_warm_started(spread, datasets):
    expert, uniform = datasets
    config = tiny_config(agent_rewards="individual", bc_warm_start=True, bc_updates=400)
    result = magail.train(config, expert, spread, jax.random.key(5), progress=False, num_seeds=2)
    assert result.logs["disc_loss"].shape == (2, 2) and result.logs["reward_histogram"].shape == (2, 2, 20)
    assert all(leaf.shape[:2] == (2, 3) for leaf in jax.tree.leaves(result.checkpoints))
    first, second = (ravel_pytree(result.params(0, seed=s))[0] for s in (0, 1))
    assert not np.allclose(first, second)  # different seeds, different BC clones
    # Checkpoint 0 is the BC clone of the expert: far better than random from the start.
    start = evaluate(spread, result.policy(0, seed=1, deterministic=False), jax.random.key(9), 100).team_return.mean
    assert start > uniform.returns.mean() + 0.5 * (expert.returns.mean() - uniform.returns.mean())
    again = magail.train(config, expert, spread, jax.random.key(5), progress=False, num_seeds=2)
    for name in ("disc_loss", "generator_reward_mean", "reward_histogram"):
        np.testing.assert_array_equal(result.logs[name], again.logs[name])


@pytest.mark.parametrize("normalize_obs", [False, True])
def test_warm_start_puts_the_bc_clone_into_the_generator(spread, datasets, normalize_obs):
    """The BC stage's clones, given to the MAGAIL learner as `start`, are its generators'
    checkpoint 0 (update 0's snapshot), one clone per seed."""
    expert, _ = datasets
    config = tiny_config(bc_warm_start=True, bc_updates=50)
    config = dataclasses.replace(config, generator=dataclasses.replace(config.generator, normalize_obs=normalize_obs))
    clone = magail.clone_expert(config, expert, jax.random.key(7),
                                RunConfig(updates=config.bc_updates, seeds=2, log_every=50, progress=False))
    start = magail.bc_start(config, spread, expert, clone)
    learner = magail.learner(config, expert, spread)
    assert learner.needs_start
    result = fit(learner, expert, jax.random.key(6), RunConfig(updates=0, seeds=2, snapshot_every=1, progress=False),
                 start=start)
    exported = jax.tree.map(lambda x: x[:, 0], result.snapshots)
    for a, b in zip(jax.tree.leaves(exported), jax.tree.leaves(clone)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="start"):  # a warm-started learner needs its start
        fit(learner, expert, jax.random.key(6), RunConfig(updates=0, progress=False))


def test_incompatible_dataset_is_rejected(datasets):
    expert, _ = datasets
    with pytest.raises(ValueError, match="env_id"):
        magail.train(tiny_config(), expert, envs.make("commons"), jax.random.key(0), progress=False)


@pytest.mark.slow
def test_short_magail_run_raises_the_generator_return(spread, datasets):
    """300k env steps (≈ 45 s on 2 busy cores). Measured: −53.2 (untrained) → −39.8 after,
    expert data −40.3, random −54.2."""
    expert, _ = datasets
    config = magail.config_for("mpe_spread", generator=dict(total_timesteps=300_000, num_envs=32, rollout_length=64,
                                                            num_checkpoints=2, anneal_lr=False))
    result = magail.train(config, expert, spread, jax.random.key(0), progress=False)
    returns = [evaluate(spread, result.policy(i, deterministic=False), jax.random.key(5), 200).team_return.mean
               for i in (0, -1)]
    assert returns[1] > returns[0] + 6
    training = result.logs["return"]
    assert np.nanmean(training[-10:]) > np.nanmean(training[:5]) + 6
    # The discriminator stayed in the game (not saturated): its loss is far from 0.
    assert np.mean(result.logs["disc_loss"][-20:]) > 0.3
