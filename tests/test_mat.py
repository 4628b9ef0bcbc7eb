"""The Multi-Agent Transformer (teamsift.nets.mat) and its PPO trainer (teamsift.collect.mat):
autoregressive acting and the one-pass training evaluation agree on every log-probability,
masked actions are never chosen, agent k's policy depends only on the actions before it,
per-agent learned rewards drive learning, checkpoints act in the evaluator and save as
"mat" policy files, and a short PPO run on MPE spread improves the team return."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift import envs
from teamsift.collect import mat as mat_ppo
from teamsift.evaluate import evaluate
from teamsift.nets import load_policy, read_header, save_policy
from teamsift.nets.mat import MATNetConfig, MATPolicy, init_mat_params, mat_act, mat_log_prob, shift_actions

A, O, NA = 4, 7, 5
DISCRETE = MATNetConfig(A, O, NA, discrete=True, n_embd=16, n_head=2)
CONTINUOUS = MATNetConfig(A, O, 3, discrete=False, action_dims=(3, 1, 2, 3), n_embd=16, n_head=1)


def _random_avail(key, shape):
    avail = jax.random.bernoulli(key, 0.5, shape)
    return avail.at[..., 0].set(avail[..., 0] | ~avail.any(axis=-1))  # at least one action each


def _sharpen(params, factor=300.0):
    """Scale the action head's last layer: peaked policies, so a masking bug would show."""
    head = params["params"]["action_head"]
    last = max((k for k in head if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
    head = {**head, last: jax.tree.map(lambda x: factor * x, head[last])}
    return {**params, "params": {**params["params"], "action_head": head}}


@pytest.fixture(scope="module")
def discrete_params():
    return _sharpen(jax.jit(lambda k: init_mat_params(DISCRETE, k))(jax.random.key(0)), 30.0)


@pytest.fixture(scope="module")
def continuous_params():
    return jax.jit(lambda k: init_mat_params(CONTINUOUS, k))(jax.random.key(1))


@functools.lru_cache(maxsize=None)
def _act(net):  # one jitted program per network (and input shape), shared by the tests
    return jax.jit(lambda p, o, av, k, det: mat_act(net, p, o, av, k, det), static_argnums=4)


@functools.lru_cache(maxsize=None)
def _evaluate(net):
    return jax.jit(lambda p, o, av, a: mat_log_prob(net, p, o, av, a))


@pytest.mark.parametrize("deterministic", [False, True])
def test_autoregressive_and_parallel_log_probs_agree_discrete(discrete_params, deterministic):
    obs = jax.random.normal(jax.random.key(2), (256, A, O))
    avail = _random_avail(jax.random.key(3), (256, A, NA))
    actions, log_prob, value = _act(DISCRETE)(discrete_params, obs, avail, jax.random.key(4), deterministic)
    assert actions.shape == (256, A) and actions.dtype == jnp.int32
    assert log_prob.shape == value.shape == (256, A)
    ev = _evaluate(DISCRETE)(discrete_params, obs, avail, actions)
    np.testing.assert_allclose(np.asarray(ev.log_prob), np.asarray(log_prob), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(ev.value), np.asarray(value), atol=1e-6)
    assert np.all(np.isfinite(np.asarray(ev.entropy))) and np.all(np.asarray(ev.entropy) >= -1e-6)
    # Masked actions are never chosen (sharpened, not uniform, policies).
    chosen = np.take_along_axis(np.asarray(avail), np.asarray(actions)[..., None], axis=-1)[..., 0]
    assert chosen.all()


def test_masked_actions_are_never_chosen_and_carry_no_probability(discrete_params):
    for i in range(8):  # 8 × 256 joint actions of 4 agents, each from a fresh mask
        obs = 3.0 * jax.random.normal(jax.random.key(50 + i), (256, A, O))
        avail = _random_avail(jax.random.key(60 + i), (256, A, NA))
        actions, log_prob, _ = _act(DISCRETE)(discrete_params, obs, avail, jax.random.key(70 + i), False)
        chosen = np.take_along_axis(np.asarray(avail), np.asarray(actions)[..., None], axis=-1)[..., 0]
        assert chosen.all() and np.all(np.isfinite(np.asarray(log_prob)))
    # Unavailable actions have no probability (agent k's probability of a is evaluated
    # after earlier agents that all took a: teacher forcing does not check their masks).
    probs = np.stack([np.exp(np.asarray(_evaluate(DISCRETE)(
        discrete_params, obs, avail, jnp.full((256, A), a, jnp.int32)).log_prob)) for a in range(NA)], -1)
    assert np.all(probs[np.asarray(~avail)] < 1e-30)
    # A single available action per agent is always taken.
    only = jax.random.randint(jax.random.key(8), (256, A), 0, NA)
    forced = jax.nn.one_hot(only, NA).astype(bool)
    actions, log_prob, _ = _act(DISCRETE)(discrete_params, obs, forced, jax.random.key(9), False)
    np.testing.assert_array_equal(np.asarray(actions), np.asarray(only))
    np.testing.assert_allclose(np.asarray(log_prob), 0.0, atol=1e-6)


@pytest.mark.parametrize("deterministic", [False, True])
def test_autoregressive_and_parallel_log_probs_agree_continuous(continuous_params, deterministic):
    obs = jax.random.normal(jax.random.key(10), (256, A, O))
    actions, log_prob, value = _act(CONTINUOUS)(continuous_params, obs, None, jax.random.key(11), deterministic)
    assert actions.shape == (256, A, 3)
    padded = np.asarray(CONTINUOUS.action_mask()) == 0
    assert np.all(np.asarray(actions)[:, padded] == 0.0)  # padded action dimensions stay 0
    ev = _evaluate(CONTINUOUS)(continuous_params, obs, None, actions)
    np.testing.assert_allclose(np.asarray(ev.log_prob), np.asarray(log_prob), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(ev.value), np.asarray(value), atol=1e-6)
    # std = 0.5 · sigmoid(log_std), log_std initialised to 1; entropy counts real dimensions only.
    std = 0.5 / (1.0 + np.exp(-1.0))
    per_dim = np.log(std) + 0.5 * (1.0 + np.log(2 * np.pi))
    np.testing.assert_allclose(np.asarray(ev.entropy[0]), per_dim * np.array([3, 1, 2, 3]), rtol=1e-5)
    if not deterministic:
        real = np.asarray(actions)[:, 0, :]  # agent 0: mean is near 0 at init, spread ≈ std
        assert abs(real.std() - std) < 0.1 * std


def test_agent_k_depends_only_on_earlier_actions(discrete_params):
    obs = jax.random.normal(jax.random.key(12), (256, A, O))
    actions = jax.random.randint(jax.random.key(13), (256, A), 0, NA)
    changed = actions.at[:, 2].set((actions[:, 2] + 1) % NA)
    avail = jnp.ones((256, A, NA), bool)
    a = _evaluate(DISCRETE)(discrete_params, obs, avail, actions).log_prob
    b = _evaluate(DISCRETE)(discrete_params, obs, avail, changed).log_prob
    # Agents 0..1 unaffected; agent 2's own action differs; agent 3 conditions on it.
    np.testing.assert_allclose(np.asarray(a[:, :2]), np.asarray(b[:, :2]), atol=1e-6)
    assert np.abs(np.asarray(a[:, 3] - b[:, 3])).max() > 1e-4
    tokens = shift_actions(DISCRETE, actions)
    assert tokens.shape == (256, A, NA + 1)
    np.testing.assert_array_equal(np.asarray(tokens[:, 0]), np.eye(NA + 1)[0][None].repeat(256, 0))
    np.testing.assert_array_equal(np.asarray(tokens[:, 1:, 1:].argmax(-1)), np.asarray(actions[:, :-1]))


def test_mat_policy_saves_and_acts_like_before(discrete_params, tmp_path):
    policy = MATPolicy(discrete_params, DISCRETE, deterministic=True)
    obs = jax.random.normal(jax.random.key(14), (A, O))
    avail = _random_avail(jax.random.key(15), (A, NA))
    actions, carry = jax.jit(policy.act)(jax.random.key(16), obs, avail, policy.initial_carry())
    assert carry is None and actions.shape == (A,)
    path = save_policy(policy, tmp_path / "mat.msgpack", extra={"note": "x"})
    assert read_header(path)["kind"] == "mat"
    loaded, header = load_policy(path)
    assert isinstance(loaded, MATPolicy) and loaded.deterministic
    assert loaded.config == DISCRETE and header["extra"] == {"note": "x"}
    for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(policy.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    again, _ = jax.jit(loaded.act)(jax.random.key(16), obs, avail, None)
    np.testing.assert_array_equal(np.asarray(actions), np.asarray(again))
    assert policy.replace_mode(False).deterministic is False


# --- PPO -----------------------------------------------------------------------------------

TINY = mat_ppo.MATConfig(num_envs=8, rollout_length=6, total_timesteps=8 * 6 * 2, num_checkpoints=3, n_embd=16,
                         update_epochs=2, num_minibatches=2)


def test_config_defaults_are_mild2s():
    c = mat_ppo.MATConfig()
    assert (c.lr, c.update_epochs, c.clip_eps, c.ent_coef, c.gamma, c.gae_lambda) == (5e-4, 15, 0.2, 0.01, 0.99, 0.95)
    assert (c.n_block, c.n_embd, c.n_head) == (1, 64, 1)
    with pytest.raises(ValueError):
        mat_ppo.MATConfig(num_envs=3, rollout_length=5, num_minibatches=2)


def test_per_agent_reward_fn_drives_the_update():
    env = envs.make("mpe_spread")
    num_agents = env.spec.num_agents

    def reward_fn(reward_params, obs, state, actions, next_obs, next_state):
        assert obs.shape == next_obs.shape == (num_agents, env.spec.obs_dim) and actions.shape == (num_agents,)
        return reward_params * (1.0 + jnp.arange(num_agents, dtype=jnp.float32))  # r^k = c·(k + 1)

    ts = mat_ppo.init_state(TINY, env, jax.random.key(17))
    rollout = jax.jit(mat_ppo.make_rollout(TINY, env, reward_fn))
    ts, traj = rollout(ts, jax.random.key(18), jnp.float32(0.5))
    assert traj.reward.shape == (TINY.rollout_length, TINY.num_envs, num_agents)
    np.testing.assert_allclose(np.asarray(traj.reward[0, 0]), [0.5, 1.0, 1.5])
    assert traj.value.shape == traj.log_prob.shape == traj.reward.shape
    # Through the engine (`train`: 2 updates, a checkpoint after each): the learned reward
    # reaches PPO (mean r^k = 0.5 · 2 = 1 in every update) and the params move.
    result = mat_ppo.train(TINY, env, jax.random.key(19), progress=False, reward_fn=reward_fn,
                           reward_params=jnp.float32(0.5))
    assert int(result.final_state.update[0]) == TINY.num_updates == 2
    np.testing.assert_allclose(result.logs["reward"], [1.0, 1.0], rtol=1e-6)
    assert all(np.isfinite(v).all() for k, v in result.logs.items() if k != "return")
    assert result.checkpoint_steps.tolist() == [0, 48, 96]
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), result.params(0), result.params(-1))
    assert any(jax.tree.leaves(changed))
    assert isinstance(result.policy(-1), MATPolicy) and not result.policy(-1).deterministic
    np.testing.assert_allclose(np.asarray(mat_ppo.per_agent(jnp.arange(2.0), 2, 3)), [[0, 0, 0], [1, 1, 1]])


@pytest.mark.slow
def test_mat_ppo_learns_mpe_spread():
    env = envs.make("mpe_spread")
    config = mat_ppo.MATConfig(num_envs=64, rollout_length=25, total_timesteps=64 * 25 * 40, num_checkpoints=3,
                               n_embd=32, update_epochs=5, num_minibatches=4, ent_coef=0.001, reward_scale=0.1,
                               lr=2e-3)
    result = mat_ppo.train(config, env, jax.random.key(0), progress=False)
    returns = result.logs["return"]
    assert returns.shape == (40,) and result.checkpoint_steps.tolist() == [0, 32_000, 64_000]
    np.testing.assert_array_equal(result.logs["env_steps"], 1600 * np.arange(1, 41))
    assert all(leaf.shape[0] == 3 for leaf in jax.tree.leaves(result.checkpoints))
    first, last = np.nanmean(returns[:5]), np.nanmean(returns[-5:])
    print(f"MAT on mpe_spread: training return {first:.1f} (first 5 updates) -> {last:.1f} (last 5)")
    assert last > first + 4.0
    # The checkpoints act in the evaluator: the final one beats the untrained one.
    before = evaluate(env, result.policy(0), jax.random.key(7), 256).team_return
    after = evaluate(env, result.policy(-1), jax.random.key(7), 256).team_return
    print(f"evaluated (256 episodes, stochastic): {before.mean:.1f} -> {after.mean:.1f}")
    assert after.ci95_low > before.ci95_high
