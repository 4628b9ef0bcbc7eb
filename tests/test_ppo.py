"""MAPPO / IPPO: they learn (commons, a one-step continuous game), their checkpoints are
ordinary agent-network params, masked actions are never sampled, GAE bootstraps on
truncation but not on termination, a GRU actor's state is reset at episode starts, the
shaped reward anneals, a learned reward can replace the environment's, and a run through
the engine keeps its checkpoints in a run directory and resumes them."""

import dataclasses

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift import envs
from teamsift.collect import ppo
from teamsift.engine import RunConfig, fit
from teamsift.evaluate import evaluate
from teamsift.nets import NetworkPolicy, RandomPolicy, load_policy, save_policy
from teamsift.nets.normalization import RunningStats

COMMONS = ppo.PPOConfig(num_envs=16, rollout_length=128, total_timesteps=150_000, num_checkpoints=3,
                        reward_scale=0.05)


@pytest.fixture(scope="module")
def commons():
    return envs.make("commons")


@pytest.fixture(scope="module")
def random_return(commons):
    return evaluate(commons, RandomPolicy.for_spec(commons.spec), jax.random.key(7), 200).team_return


@pytest.fixture(scope="module")
def mappo_commons(commons):
    return ppo.train(COMMONS, commons, jax.random.key(0), progress=False)


def test_mappo_learns_commons_far_above_random(commons, mappo_commons, random_return):
    result = mappo_commons
    assert result.net.num_agents == 3 and result.net.discrete and not result.net.learned_std
    # 3 checkpoints including the untrained initial params; evenly spaced in env steps.
    leaves = jax.tree.leaves(result.checkpoints)
    assert all(leaf.shape[0] == 3 for leaf in leaves)
    steps = result.checkpoint_steps
    assert steps[0] == 0 and steps[-1] >= COMMONS.total_timesteps and steps[2] == 2 * steps[1]
    # Under 100 updates every update is a log row; "return" = return_sum / episodes per row.
    assert result.logs["return"].shape == (COMMONS.num_updates,)
    np.testing.assert_array_equal(result.logs["update"], np.arange(1, COMMONS.num_updates + 1))
    np.testing.assert_array_equal(result.logs["env_steps"], result.logs["update"] * COMMONS.steps_per_update)
    np.testing.assert_allclose(result.logs["return"], result.logs["return_sum"] / result.logs["episodes"])
    # Learning curve: training episodes at the end beat those at the start.
    returns = result.logs["return"]
    assert np.nanmean(returns[-5:]) > np.nanmean(returns[:3]) + 100
    # The final checkpoint, loaded into NetworkPolicy, is far better than random (≈370;
    # the largest sustainable harvest is ≈675, the scripted "adaptive" rule gets 615).
    final = evaluate(commons, result.policy(-1, deterministic=False), jax.random.key(7), 200).team_return
    assert final.ci95_low > random_return.ci95_high + 100
    assert final.mean > 550
    # Checkpoint 0 is the untrained (near-uniform) network: about as good as random.
    initial = evaluate(commons, result.policy(0, deterministic=False), jax.random.key(7), 200).team_return
    assert abs(initial.mean - random_return.mean) < 60
    assert initial.mean < final.mean - 150


def test_checkpoints_load_into_network_policy_and_save(commons, mappo_commons, tmp_path):
    params = jax.tree.map(lambda x: x[-1], mappo_commons.checkpoints)
    policy = NetworkPolicy(params, mappo_commons.net)
    obs = commons.reset(jax.random.key(0)).obs
    actions, _ = policy.act(jax.random.key(1), obs, None, policy.initial_carry())
    assert actions.shape == (3,) and actions.dtype == jnp.int32
    loaded, _ = load_policy(save_policy(policy, tmp_path / "final.msgpack", spec=commons.spec))
    again, _ = loaded.act(jax.random.key(1), obs, None, loaded.initial_carry())
    np.testing.assert_array_equal(np.asarray(actions), np.asarray(again))


def test_ippo_learns_commons(commons, random_return):
    config = dataclasses.replace(COMMONS, algo="ippo")
    result = ppo.train(config, commons, jax.random.key(1), progress=False)
    final = evaluate(commons, result.policy(-1, deterministic=False), jax.random.key(7), 200).team_return
    assert final.ci95_low > random_return.ci95_high + 100


def test_masked_actions_are_never_sampled_and_log_probs_respect_masks():
    net = ppo.actor_config(ppo.PPOConfig(), envs.make("commons").spec)
    avail = jnp.array([[True, False, True, False, False, False],
                       [False, False, False, False, False, True],
                       [True, True, True, True, True, True]])
    logits = jnp.array([[0.0, 5.0, 0.0, 5.0, 5.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0, -3.0], [0.0] * 6])
    keys = jax.random.split(jax.random.key(0), 4000)
    actions = jax.vmap(lambda k: ppo.sample_actions(k, net, None, logits, avail))(keys)  # [K, A]
    picked = np.asarray(avail)[np.arange(3), np.asarray(actions)]
    assert picked.all()
    # Agent 0 samples its two available actions about equally often.
    assert 0.45 < np.mean(np.asarray(actions[:, 0]) == 0) < 0.55
    # Probabilities over the available actions sum to one; the entropy is that of the
    # masked distribution (log 2, 0, log 6 for uniform logits on 2, 1, 6 actions).
    all_actions = jnp.broadcast_to(jnp.arange(6)[:, None], (6, 3))
    logp, entropy = jax.vmap(lambda a: ppo.log_prob_entropy(net, None, logits, a, avail, None))(all_actions)
    probs = np.exp(np.asarray(logp)) * np.asarray(avail).T
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(entropy[0]), [np.log(2), 0.0, np.log(6)], atol=1e-5)


def _restricted_commons():
    """commons where agent 0 may only take 0 or 2 and agent 1 only 5."""
    base = envs.make("commons", episode_length=10)
    mask = jnp.ones((3, 6), bool).at[0].set(jnp.array([1, 0, 1, 0, 0, 0], bool))
    mask = mask.at[1].set(jnp.array([0, 0, 0, 0, 0, 1], bool))

    def reset(key):
        out = base.reset(key)
        return out._replace(avail=mask)

    def step(key, env_state, actions):
        out = base.step(key, env_state, actions)
        return out._replace(avail=mask)

    return dataclasses.replace(base, reset=reset, step=step)


def test_rollouts_respect_avail():
    env = _restricted_commons()
    config = ppo.PPOConfig(num_envs=8, rollout_length=32, total_timesteps=8 * 32 * 4, num_checkpoints=2)
    ts = ppo.init_state(config, env, jax.random.key(0))
    _, traj = jax.jit(ppo.make_rollout(config, env))(ts, jax.random.key(9))
    actions = np.asarray(traj.actions)
    assert set(np.unique(actions[..., 0])) <= {0, 2} and set(np.unique(actions[..., 1])) == {5}
    assert len(np.unique(actions[..., 2])) > 2  # the unrestricted agent still explores
    np.testing.assert_array_equal(np.asarray(traj.log_prob[..., 1]), 0.0)  # forced action: log 1


def test_gae_matches_hand_computation_with_termination_and_truncation():
    gamma, lam = 0.9, 0.5
    # t:            0     1 (terminated)  2     3 (truncated)  4
    reward = jnp.array([1.0, 2.0, 0.5, 1.0, -1.0])
    value = jnp.array([0.3, 0.4, 0.2, 0.6, 0.1])
    # V of the observation each step produced (pre-reset): at t=1 the terminal observation,
    # at t=3 the final observation of a truncated episode, at t=4 the rollout's last one.
    next_value = jnp.array([0.4, 9.0, 0.6, 0.8, 0.7])
    terminated = jnp.array([False, True, False, False, False])
    done = jnp.array([False, True, False, True, False])
    adv, target = ppo.gae(reward, value, next_value, terminated, done, gamma, lam)
    d4 = -1.0 + 0.9 * 0.7 - 0.1
    d3 = 1.0 + 0.9 * 0.8 - 0.6  # truncation: bootstrap from the final observation
    d2 = 0.5 + 0.9 * 0.6 - 0.2
    d1 = 2.0 - 0.4  # termination: no bootstrap (the 9.0 must be ignored)
    d0 = 1.0 + 0.9 * 0.4 - 0.3
    a4 = d4
    a3 = d3  # the trace is cut at the episode end
    a2 = d2 + gamma * lam * a3
    a1 = d1
    a0 = d0 + gamma * lam * a1
    np.testing.assert_allclose(np.asarray(adv), [a0, a1, a2, a3, a4], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(target), np.array([a0, a1, a2, a3, a4]) + np.asarray(value), rtol=1e-6)
    # Per-agent values [T, A] with a team reward [T] broadcast over agents.
    adv2, _ = ppo.gae(reward, jnp.stack([value, value], 1), jnp.stack([next_value, next_value], 1),
                      terminated, done, gamma, lam)
    np.testing.assert_allclose(np.asarray(adv2), np.stack([adv, adv], 1), rtol=1e-6)


def test_advantage_variance_is_the_sum_over_agents_of_each_agents_variance():
    """MILD²'s Theorem 1 quantity Σ_k Var[A^k]: each agent's variance over time and
    environments ([T, N]), never across agents (a constant offset between agents adds nothing)."""
    agent0 = jnp.full((3, 2), 5.0)  # constant: no variance, however far from agent 1
    agent1 = jnp.array([[0.0, 2.0], [4.0, 2.0], [2.0, 2.0]])  # mean 2, squares 4+0+4+0+0+0 over 6
    adv = jnp.stack([agent0, agent1], axis=-1)  # [T=3, N=2, A=2]
    np.testing.assert_allclose(float(ppo.advantage_variance(adv)), 8.0 / 6.0, rtol=1e-6)
    np.testing.assert_allclose(float(ppo.advantage_variance(3.0 * adv)), 9.0 * 8.0 / 6.0, rtol=1e-6)


def test_gru_state_is_reset_at_episode_starts_in_rollout_and_update():
    env = envs.make("commons", episode_length=10)
    config = ppo.PPOConfig(num_envs=4, rollout_length=24, total_timesteps=4 * 24 * 2, num_checkpoints=2,
                           recurrent=True, hidden=(16, 16), num_minibatches=2)
    ts = ppo.init_state(config, env, jax.random.key(0))
    rollout = jax.jit(ppo.make_rollout(config, env))
    ts, _ = rollout(ts, jax.random.key(1))  # start mid-episode: a non-zero carried GRU state
    hidden0 = ts.runner.hidden
    assert float(jnp.abs(hidden0).max()) > 0
    ts, traj = rollout(ts, jax.random.key(2))
    assert traj.start.sum() >= 4  # episodes began inside the rollout
    net = ppo.actor_config(config, env.spec)
    outputs = ppo.unroll_actor(net, ts.actor, traj.obs, traj.start, hidden0)
    logp, _ = ppo.log_prob_entropy(net, ts.actor, outputs, traj.actions, traj.avail, None)
    np.testing.assert_allclose(np.asarray(logp), np.asarray(traj.log_prob), atol=1e-5)
    # Without the resets the recomputed log-probs differ after an episode start.
    no_reset = ppo.unroll_actor(net, ts.actor, traj.obs, jnp.zeros_like(traj.start), hidden0)
    logp_nr, _ = ppo.log_prob_entropy(net, ts.actor, no_reset, traj.actions, traj.avail, None)
    assert float(jnp.abs(logp_nr - traj.log_prob).max()) > 1e-4
    # A recurrent checkpoint acts through NetworkPolicy with its own carry.
    policy = NetworkPolicy(ts.actor, net, deterministic=False)
    actions, carry = policy.act(jax.random.key(0), traj.obs[0, 0], None, policy.initial_carry())
    assert actions.shape == (3,) and carry.shape == (3, 16)


def test_continuous_one_step_game_improves_for_every_vmapped_seed():
    env = envs.make("poly_twin_peaks")
    config = ppo.PPOConfig(num_envs=64, rollout_length=8, total_timesteps=30_000, num_checkpoints=3)
    result = ppo.train(config, env, jax.random.key(0), progress=False, num_seeds=2)
    assert result.net.learned_std and not result.net.discrete
    # Seeds train as one vmapped program: leading [S, C] axes, [S, U] logs.
    assert all(leaf.shape[:2] == (2, 3) for leaf in jax.tree.leaves(result.checkpoints))
    assert result.logs["return"].shape == (2, config.num_updates)
    # Engine's snapshots = the checkpoints; the engine's policy = the final checkpoint's.
    np.testing.assert_array_equal(result.fit.snapshot_updates, [0, config.updates_per_checkpoint, config.num_updates])
    final = result.fit.policy(1)
    assert final.deterministic
    for a, b in zip(jax.tree.leaves(final.params), jax.tree.leaves(result.params(-1, seed=1))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    seed0, seed1 = (jax.flatten_util.ravel_pytree(result.params(0, seed=s))[0] for s in (0, 1))
    assert not np.allclose(seed0, seed1)
    uniform = evaluate(env, RandomPolicy.for_spec(env.spec), jax.random.key(3), 200).team_return.mean
    for s in (0, 1):
        returns = result.logs["return"][s]
        assert np.mean(returns[-5:]) > np.mean(returns[:5]) + 0.5
        first = evaluate(env, result.policy(0, seed=s), jax.random.key(3), 100).team_return.mean
        last = evaluate(env, result.policy(-1, seed=s), jax.random.key(3), 100).team_return.mean
        # Optimum 0.5625 at ±(0.61, 0.61); uniform play averages about −0.9.
        assert last > 0.35 and last > first + 0.3 and last > uniform + 1.0
        # The learned exploration noise shrank from its initial exp(−0.5).
        assert (np.asarray(result.params(-1, seed=s)["params"]["log_std"]) < -0.5).all()


def test_shaped_reward_coefficient_anneals_linearly():
    config = ppo.PPOConfig(num_envs=10, rollout_length=10, shaped_reward_key="shaped_reward",
                           shaped_reward_coef=2.0, shaped_reward_anneal=1000)
    coefs = [float(ppo.shaped_coef(config, jnp.int32(u))) for u in (0, 5, 10, 20)]
    np.testing.assert_allclose(coefs, [2.0, 1.0, 0.0, 0.0])
    assert float(ppo.shaped_coef(dataclasses.replace(config, shaped_reward_key=None), jnp.int32(0))) == 0.0


def test_reward_fn_replaces_the_team_reward(commons, random_return):
    """A 'learned' reward that punishes consumption teaches abstinence."""

    def frugal(params, obs, state, actions, next_obs, next_state):
        return -params * jnp.sum(next_obs[:, 1])  # next_obs[:, 1]: own consumption / 5

    config = dataclasses.replace(COMMONS, total_timesteps=40_000, reward_scale=0.2, lr=2e-3)
    result = ppo.train(config, commons, jax.random.key(2), progress=False, reward_fn=frugal,
                       reward_params=jnp.float32(1.0))
    # Logged returns are the environment's (consumption), which the agents learn to avoid.
    assert np.nanmean(result.logs["return"][-3:]) < 0.5 * random_return.mean
    final = evaluate(commons, result.policy(-1, deterministic=False), jax.random.key(7), 200).team_return
    assert final.mean < 0.5 * random_return.mean


def test_observation_normalisation_folds_into_the_checkpoint():
    """With normalize_obs the checkpoint acts on raw observations exactly as the trained
    actor acts on normalised ones."""
    env = envs.make("poly_twin_peaks")
    for recurrent in (False, True):
        config = ppo.PPOConfig(normalize_obs=True, recurrent=recurrent, hidden=(8, 8), num_envs=4)
        net = ppo.actor_config(config, env.spec)
        ts = ppo.init_state(config, env, jax.random.key(0))
        stats = RunningStats.create(1).update(jnp.array([[[0.5], [2.0]], [[3.0], [1.5]]]))
        ts = ts._replace(obs_stats=stats)
        obs = jnp.array([[1.0], [-2.0]])
        carry = NetworkPolicy(ts.actor, net).initial_carry()
        inside, _ = ppo.apply_step(net, ts.actor, stats.normalize(obs), carry)
        folded = NetworkPolicy(ppo.export_actor(config, env, ts), net)
        outside, _ = ppo.apply_step(net, folded.params, obs, carry)
        np.testing.assert_allclose(np.asarray(inside), np.asarray(outside), atol=1e-5)
        assert not np.allclose(np.asarray(inside), np.asarray(ppo.apply_step(net, ts.actor, obs, carry)[0]))
    np.testing.assert_allclose(float(stats.mean[0]), 1.75, rtol=1e-3)
    np.testing.assert_allclose(float(stats.var[0]), np.var([0.5, 2.0, 3.0, 1.5]), rtol=1e-3)


def test_run_schedule_must_match_the_config_budget(commons):
    with pytest.raises(ValueError, match="total_timesteps"):
        ppo.train(COMMONS, commons, jax.random.key(0), run=RunConfig(updates=COMMONS.num_updates + 1, progress=False))
    with pytest.raises(ValueError, match="snapshot_every"):
        ppo.train(COMMONS, commons, jax.random.key(0), run=RunConfig(updates=COMMONS.num_updates, snapshot_every=5,
                                                                     progress=False))


def test_run_directory_keeps_checkpoints_policies_and_resumes(tmp_path):
    """A run with a run_dir writes the final policy (a NetworkPolicy file) and orbax
    checkpoints holding the pool checkpoints (snapshots); resuming the finished run gives
    back the same checkpoints and logs without training again."""
    env = envs.make("poly_twin_peaks")
    config = ppo.PPOConfig(num_envs=8, rollout_length=4, total_timesteps=8 * 4 * 4, num_checkpoints=3,
                           normalize_obs=True, num_minibatches=2, update_epochs=1)
    run = RunConfig(updates=config.num_updates, log_every=1, checkpoint_every=2, run_dir=str(tmp_path / "run"),
                    progress=False)
    first = ppo.train(config, env, jax.random.key(4), run=run)
    assert (tmp_path / "run" / "metrics.csv").is_file()
    policy, header = load_policy(tmp_path / "run" / "policies" / "seed-0.msgpack")
    assert header["kind"] == "network" and header["extra"]["learner"] == "mappo"
    for a, b in zip(jax.tree.leaves(policy.params), jax.tree.leaves(first.params(-1))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    again = ppo.train(config, env, jax.random.key(4), run=dataclasses.replace(run, resume=True))
    assert again.fit.resumed_from == config.num_updates
    # the run's training seconds carry over: the resumed call counts the first call's too
    assert again.fit.earlier_seconds >= first.fit.history["elapsed"][-1] > 0 and first.fit.earlier_seconds == 0
    for a, b in zip(jax.tree.leaves(first.checkpoints), jax.tree.leaves(again.checkpoints)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(first.checkpoint_steps, again.checkpoint_steps)
    np.testing.assert_array_equal(first.logs["actor_loss"], again.logs["actor_loss"])
    # The learner on its own: fit() with no dataset gives the same numbers as train().
    direct = fit(ppo.make_learner(config, env), None, jax.random.key(4),
                 RunConfig(updates=config.num_updates, log_every=1, snapshot_every=config.updates_per_checkpoint,
                           progress=False))
    np.testing.assert_array_equal(direct.history["actor_loss"][0], first.logs["actor_loss"])
