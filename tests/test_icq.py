"""ICQ's critic target (eq. 14 with the reference's β_c) and the divergence check.

X_j = |B|·softmax_B(Q/β_c)_j·Q_j spreads positive values apart and pulls negative ones
together: with PP_3p1p's large positive returns the critic diverged, so `reward_scale`
brings the rewards to the scale β_c was tuned for, and the training pipeline warns when the
logged critic loss diverges (`oc.warn_if_diverged` with `icq.divergence_hint`)."""

import types
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from teamsift.algos import icq
from teamsift.algos import offline_common as oc
from teamsift.envs import registry


def one_step_batch(batch_size: int, reward: float = 0.0) -> dict:
    """Episodes of one step that bootstrap from their final observation: G = r + γ·X."""
    return {"reward": jnp.full((batch_size, 1), reward), "continues": jnp.ones((batch_size, 1), bool),
            "has_next": jnp.zeros((batch_size, 1), bool)}


def test_the_targets_are_r_plus_gamma_x_with_the_batch_softmax_weights():
    q_next = jnp.linspace(0.0, 100.0, 64)[:, None]
    config = icq.ICQConfig(reward_scale=2.0)
    targets = np.asarray(icq.weighted_td_targets(q_next, one_step_batch(64, reward=1.5), config))[:, 0]
    weights = np.exp(np.asarray(q_next[:, 0]) / config.critic_beta)
    x = 64 * weights / weights.sum() * np.asarray(q_next[:, 0])
    np.testing.assert_allclose(targets, 2.0 * 1.5 + config.gamma * x, rtol=1e-5)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_positive_values_spread_apart_and_negative_ones_pull_together(sign):
    config = icq.ICQConfig(reward_scale=1.0)
    flat = icq.ICQConfig(critic_beta=1e12, reward_scale=1.0)  # weights ≡ 1: X = Q
    q_next = sign * jnp.linspace(0.0, 300.0, 64)[:, None]
    spread = np.std(np.asarray(icq.weighted_td_targets(q_next, one_step_batch(64), config)))
    plain = np.std(np.asarray(icq.weighted_td_targets(q_next, one_step_batch(64), flat)))
    assert (spread > 1.05 * plain) if sign > 0 else (spread < 0.95 * plain), (spread, plain)


def test_the_batch_softmax_weights_average_to_one_over_the_valid_entries():
    """|B_t|·softmax_B(x/β) per slice (shared with SIT as `oc.batch_softmax_weights`)."""
    x = jnp.array([[1.0, 5.0], [2.0, -3.0], [4.0, 0.0]])  # [B = 3, 2 slices]
    mask = jnp.array([[True, True], [True, False], [False, True]])
    weights = np.asarray(oc.batch_softmax_weights(x, mask, 2.0))
    assert weights[2, 0] == 0.0 and weights[1, 1] == 0.0
    np.testing.assert_allclose(weights[:2, 0], 2 * np.exp([0.5, 1.0]) / np.exp([0.5, 1.0]).sum(), rtol=1e-6)
    np.testing.assert_allclose(weights[[0, 2], 1], 2 * np.exp([2.5, 0.0]) / np.exp([2.5, 0.0]).sum(), rtol=1e-6)


def test_diverged_seeds_are_those_whose_loss_blew_up():
    updates = np.arange(1, 1001, dtype=np.float64)
    decreasing = 10.0 / updates
    blown_up = np.where(updates > 800, 1e9, 1.0)
    not_finite = np.where(updates > 950, np.nan, 1.0)
    noisy = 1.0 + 0.5 * np.sin(updates)  # stays within its range
    losses = np.stack([decreasing, blown_up, not_finite, noisy])
    np.testing.assert_array_equal(oc.diverged_seeds(losses), [False, True, True, False])
    with pytest.warns(RuntimeWarning, match=r"critic diverged on seed\(s\) \[1, 2\].*lower the scale"):
        oc.warn_if_diverged(losses, "critic", "lower the scale")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        oc.warn_if_diverged(losses[[0, 3]], "critic", "lower the scale")  # no warning
        assert not oc.diverged_seeds(np.ones((2, 1))).any()  # too short to tell
    # the engine's logged history: one mean per log interval (15 000 updates every 500)
    rows = np.stack([np.full(30, 2.0), np.where(np.arange(30) >= 27, 5e4, 2.0)])
    np.testing.assert_array_equal(oc.diverged_seeds(rows), [False, True])
    with pytest.warns(RuntimeWarning, match=r"ICQ's critic diverged on seed\(s\) \[1\].*reward_scale \(now 1\)"):
        oc.warn_if_diverged(rows, "ICQ's critic", icq.divergence_hint(icq.ICQConfig(reward_scale=1.0)))


def test_the_largest_rule_brings_the_data_s_largest_return_down_to_smac_s_20():
    class Returns:  # the two dataset attributes the "largest" rule reads
        def __init__(self, returns):
            self.episodes, self.num_episodes = {"return": np.asarray(returns)}, len(returns)

    def largest(returns):
        return oc.smac_reward_scale(Returns(returns), "largest")

    assert largest([0.0, 18.9, 170.0]) == pytest.approx(20.0 / 170.0)  # PP_3p1p medium
    assert largest([-152.8, -14.3]) == 1.0  # CN: negative returns stay
    assert largest([0.02, 0.64]) == 1.0  # SMAX's returns: never scaled up (the "smac" rule does: × 10)


def test_the_smac_rule_brings_the_environment_s_best_return_to_20():
    """reward_scale_rule="smac": PyMARL's convention, the map's best return (SMAX: every enemy's
    health, 1, plus the win bonus, 1) becomes 20 whatever the data holds; environments whose
    best return teamsift does not know fall back to the data's largest return."""
    class Data:
        def __init__(self, env_id, returns):
            self.spec = types.SimpleNamespace(env_id=env_id)
            self.episodes, self.num_episodes = {"return": np.asarray(returns)}, len(returns)

    low_smax = Data("smax_3s_vs_5z", [0.02, 0.64])
    assert registry.best_return("smax_3s_vs_5z") == 2.0 and registry.best_return("CN_3ls3l") is None
    assert oc.smac_reward_scale(low_smax, "smac") == 10.0 and oc.smac_reward_scale(low_smax, "largest") == 1.0
    assert oc.smac_reward_scale(Data("PP_3p1p", [0.0, 170.0]), "smac") == pytest.approx(20.0 / 170.0)
    assert oc.smac_reward_scale(Data("my_imported_env", [-3.0, 40.0]), "smac") == 0.5  # unregistered: the data's
    assert oc.resolve_reward_scale(icq.ICQConfig(), low_smax).reward_scale == 10.0  # the default rule: "smac"
    assert oc.resolve_reward_scale(icq.ICQConfig(reward_scale_rule="largest"), low_smax).reward_scale == 1.0
    assert oc.resolve_reward_scale(icq.ICQConfig(reward_scale=3.0, reward_scale_rule="smac"),
                                   low_smax).reward_scale == 3.0  # a given scale wins
    with pytest.raises(ValueError, match="reward_scale_rule"):
        icq.ICQConfig(reward_scale_rule="pymarl")


def test_reward_scale_must_be_positive():
    with pytest.raises(ValueError, match="reward_scale"):
        icq.ICQConfig(reward_scale=0.0)


def test_one_update_equals_the_update_written_from_its_parts(tmp_path):
    """The update (π unrolled once, its vjp giving the actor's gradient; the critic's inputs
    and one-hots built once for the per-step loop) against the same update written from its
    parts as before: π unrolled for the targets and again for the actor loss, and a critic
    loss that scores Q_i from (obs, state) and picks the data's action. Episodes of 1–9
    steps, so the loop also meets steps past every episode's end."""
    import jax
    from teamsift.data import testing

    dataset = testing.random_dataset(tmp_path / "data", episodes=24)
    config = icq.resolve_config(icq.ICQConfig(hidden=(8,), critic_hidden=(16, 16), batch_size=8,
                                              critic_learning_rate=1e-2), dataset)
    spec = dataset.spec
    actor, critic, mixer = icq.actor_net_config(config, spec), icq.critic_net_config(config, spec), \
        icq.mixer_config(config, spec)
    learner = icq.learner(config, dataset)
    arrays = learner.prepare(dataset, {})
    state = learner.init(jax.random.key(0), arrays)
    items = jnp.asarray(np.flatnonzero(dataset.lengths < dataset.lengths.max())[:8])
    new_state, metrics = jax.jit(learner.update)(state, jax.random.key(1), arrays, items)

    def reference(state):
        max_length = int(dataset.lengths.max())
        assert int(np.max(dataset.lengths[np.asarray(items)])) < max_length  # some steps are past every end
        batch = oc.episode_batch(arrays, items, max_length)
        targets = icq.critic_targets(actor, critic, mixer, state.actor, state.target, batch, config)

        def critic_loss(params, obs, state_, actions, targets, mask):
            q_tot = icq.mix(mixer, params["mixer"], oc.taken(icq.critic_values(critic, params["critic"], obs, state_),
                                                             actions), state_)
            return jnp.sum(mask * (q_tot - targets) ** 2) / jnp.maximum(jnp.sum(mask), 1)

        optimizer = oc.optimizer(config, config.critic_learning_rate)
        fields = (batch["obs"], batch["state"], batch["actions"], targets, batch["mask"])
        params, _, steps, loss_q = oc.critic_gradient_steps(critic_loss, state.critic, state.critic_opt_state,
                                                            optimizer, fields, True)
        loss_pi, grads = jax.value_and_grad(icq.actor_loss)(state.actor, params, batch, actor, critic, mixer, config)
        actor_params, _ = oc.apply_gradients(oc.optimizer(config, config.actor_learning_rate),
                                             state.actor, state.actor_opt_state, grads)
        return params, actor_params, steps, loss_q, loss_pi

    params, actor_params, steps, loss_q, loss_pi = jax.jit(reference)(state)
    assert int(new_state.critic_steps) == int(steps) < int(dataset.lengths.max())
    np.testing.assert_allclose(float(metrics["critic_loss"]), float(loss_q), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["actor_loss"]), float(loss_pi), rtol=1e-5)
    for got, want in zip(jax.tree.leaves((new_state.critic, new_state.actor)), jax.tree.leaves((params, actor_params))):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
