"""SIT Stage III for continuous actions (SIT's MAMuJoCo runs): the action-input GAT critic,
the Gaussian actor's CRR-filtered loss with CRR's sampled advantage, both against a
hand computation, and a short end-to-end run on agent-wise imbalanced continuous data.

The end-to-end dataset (`testing.continuous_contribution_dataset`) is the continuous
analogue of tests/test_sit.py's: four agents of two types (x, x, y, y), i.i.d. Gaussian
observations, an agent contributes 1 − mean_d (a − a*(o))² with the good action
a*(o) = 0.8·tanh(o[:2]), the team reward is the sum. Each slot is played by an expert
(a* + N(0, 0.05²)) in a third of the episodes and acts uniformly at random otherwise, so
behaviour cloning averages towards a*/3, while SIT must find the expert trajectories
(ARDNEM + DPER) and the good actions (the CRR filter on r̂) and share them.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift.algos import bc, offline_common as oc, sit
from teamsift.data import DPER, Uniform, dper, item_space, testing
from teamsift.engine import RunConfig, fit
from teamsift.nets import NetworkPolicy, apply_sequence, load_policy, save_policy
from teamsift.nets.ops import gaussian_log_density
from teamsift.value import ardnem

TERMS = np.asarray([["expert", "poor", "poor", "poor"], ["poor", "expert", "expert", "poor"],
                    ["poor", "poor", "poor", "expert"]])  # each slot expert in 1/3 of the episodes
NOISE = {"expert": 0.05, "poor": None}  # None: uniform in [−1, 1]^D
LENGTH, WIDTH, DIM = 5, 3, 2

# Small, fast schedules (CPU test). Stage I needs more updates than in the discrete test
# (the decomposition of four noisy continuous contributions is harder to fit); both
# stages are dominated by compilation here.
STAGE1 = dataclasses.replace(ardnem.ARDNEMConfig(), learning_rate=1e-3, batch_size=8, ensemble_size=3,
                             probe_episodes=16)
STAGE1_RUN = RunConfig(updates=3000, log_every=3000, progress=False)
FAST = sit.SITConfig(batch_size=8, actor_learning_rate=1e-3, critic_learning_rate=1e-3, target_update_interval=20)
FAST_RUN = RunConfig(updates=600, log_every=300, progress=False)
FAST_DPER = dper.DPERConfig(alpha=2.0)
STAGE1_KEY, STAGE3_KEY = jax.random.split(jax.random.key(0))


def imbalanced_dataset(path, episodes: int = 150, seed: int = 0):
    return testing.continuous_contribution_dataset(path, TERMS, NOISE, episodes=episodes, length=LENGTH, width=WIDTH,
                                                   action_dim=DIM, seed=seed)


def distance_to_good_actions(policy, key, episodes: int = 64) -> float:
    """Mean |π(o) − a*(o)| of the (recurrent) policy's mean action on fresh observations."""
    obs = jax.random.normal(key, (LENGTH, episodes, 4, WIDTH))
    actions = np.clip(np.asarray(apply_sequence(policy.config, policy.params, obs)), -1.0, 1.0)
    return float(np.mean(np.abs(actions - testing.continuous_contribution_target(np.asarray(obs), DIM))))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return imbalanced_dataset(tmp_path_factory.mktemp("sitc") / "tiny", episodes=12)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return imbalanced_dataset(tmp_path_factory.mktemp("sitc") / "imbalanced")


@pytest.fixture(scope="module")
def stage1(dataset):
    return ardnem.result(STAGE1, fit(ardnem.learner(STAGE1, dataset), dataset, STAGE1_KEY, STAGE1_RUN), dataset)


@pytest.fixture(scope="module")
def trained(dataset, stage1):
    return fit(sit.learner(FAST, dataset), dataset, STAGE3_KEY, FAST_RUN,
               sampler=DPER(FAST_DPER, priorities=stage1.priority), inputs=sit.stage_inputs(FAST, dataset, stage1))


# --- the losses ---------------------------------------------------------------------------

def test_gaussian_pieces_match_a_hand_computation():
    mean = np.array([[0.2, -0.5, 0.0]])
    log_std = np.array([-1.0, 0.0, 0.5])
    action = np.array([[0.4, 0.5, 0.9]])
    mask = np.array([1.0, 1.0, 0.0])  # the third dimension is padding (a narrower agent)
    std = np.exp(log_std)
    expected = sum(-0.5 * ((action[0, d] - mean[0, d]) / std[d]) ** 2 - log_std[d] - 0.5 * np.log(2 * np.pi)
                   for d in range(2))
    got = gaussian_log_density(jnp.asarray(action), jnp.asarray(mean), jnp.asarray(log_std), mask=jnp.asarray(mask))
    assert float(got[0]) == pytest.approx(expected, rel=1e-5)
    noise = np.array([[[1.0, 2.0, 1.0], [-3.0, 0.1, 0.0]]])  # [1, m = 2, D]
    samples = np.asarray(sit.policy_samples(jnp.asarray(noise), jnp.asarray(mean), jnp.asarray(log_std),
                                            jnp.asarray(mask)))
    np.testing.assert_allclose(samples, np.clip(mean[:, None] + std * noise, -1.0, 1.0) * mask, rtol=1e-6)
    assert samples[0, 0, 1] == 1.0 and samples[0, 1, 0] == pytest.approx(0.2 - 3 * np.exp(-1.0)) \
        and np.all(samples[..., 2] == 0.0)


def test_continuous_losses_follow_eqs_9_and_10(tiny):
    """The continuous critic target, critic loss and actor loss on a real batch equal the
    formulas recomputed in numpy from the networks' outputs (sampled actions fixed by a key)."""
    config = dataclasses.replace(FAST, batch_size=3, action_samples=3)
    spec = tiny.spec
    actor, critic = sit.actor_config(config, spec), sit.critic_config(config, spec)
    assert not actor.discrete and actor.learned_std and not critic.discrete
    actor_params = sit.init_params(actor, jax.random.key(1))
    actor_params = {**actor_params, "params": {**actor_params["params"],
                                               "log_std": jnp.asarray([-0.3, -1.2], jnp.float32)}}
    critic_params = sit.init_critic(critic, jax.random.key(2))
    target_params = sit.init_critic(critic, jax.random.key(3))
    # The action is an input of f_local (not one output per action): Q is one scalar per (τ, a).
    assert critic_params["params"]["f_local"]["Dense_0"]["kernel"].shape[0] == critic.local_dim + DIM
    assert critic_params["params"]["f_agg"]["Dense_1"]["kernel"].shape[1] == 1
    rng = np.random.default_rng(0)
    inputs = {"reward": rng.normal(size=(tiny.num_steps, 4)).astype(np.float32),
              "weight": rng.uniform(0.5, 2.0, size=(tiny.num_steps, 4)).astype(np.float32)}
    data = sit.prepare(dataclasses.replace(config, reward_scale=1.0), tiny, inputs)
    np.testing.assert_array_equal(np.asarray(data["action_mask"]), sit.action_mask(spec))
    sampler = DPER(dper.DPERConfig(alpha=5.0), priorities=rng.normal(size=(tiny.num_episodes, 4)))
    buffers = sampler.arrays(item_space(tiny, "trajectory"), tiny)
    drawn = jax.jit(sampler.draw, static_argnums=(3, 4))(buffers, None, jax.random.key(4), 3, "trajectory")
    batch = jax.jit(sit.trajectory_batch, static_argnums=(3, 4))(data, *drawn, LENGTH, True)
    b = {k: np.asarray(v) for k, v in batch.items()}
    src = b["source"]
    step_rows = tiny.starts[b["episode"]]  # [B, A], first step of each drawn episode
    np.testing.assert_allclose(b["actions"][:, 0], tiny.steps["actions"][step_rows, src], rtol=1e-6)
    np.testing.assert_allclose(b["last_actions_ext"][:, 1], b["actions"][:, 0])
    assert b["actions"].shape == (3, LENGTH, 4, DIM) and "avail_ext" not in b
    # Every episode ends by the time limit: its last step bootstraps from the actor's mean.
    assert np.all(b["continues"] == b["mask"]) and np.any(b["mask"] & ~b["has_next"])

    q_now = jax.jit(lambda params, a: sit.critic_values(critic, params, batch, slice(0, LENGTH), a))
    q_after = jax.jit(lambda params, a: sit.critic_values(critic, params, batch, slice(1, None), a))
    means = np.asarray(jax.jit(oc.unroll, static_argnums=0)(actor, actor_params, batch["obs_ext"]))  # [B, T+1, A, D]
    # Eq. 9: y = r̂ + γ·κ·Q'(τ^{t+1}, a^{t+1}), a^{t+1} the data's or, past the end, μ(τ^T).
    next_actions = np.where(b["has_next"][..., None], b["actions_next"], means[:, 1:])
    q_next = np.asarray(q_after(target_params, jnp.asarray(next_actions)[..., None, :]))
    y = b["reward"] + config.gamma * b["continues"] * q_next[..., 0]
    targets = jax.jit(sit.continuous_critic_targets, static_argnums=(0, 1, 5))(
        actor, critic, actor_params, target_params, batch, config)
    np.testing.assert_allclose(np.asarray(targets), y, rtol=1e-5, atol=1e-5)
    q = np.asarray(q_now(critic_params, batch["actions"][..., None, :]))[..., 0]
    m = b["mask"]
    expected_q = np.sum(m * b["weight"] * (y - q) ** 2) / m.sum()
    loss_q = jax.jit(sit.critic_loss, static_argnums=3)(critic_params, batch, jnp.asarray(y), critic)
    assert float(loss_q) == pytest.approx(expected_q, rel=1e-4)

    # Eq. 10: A = Q(a_j) − (1/m) Σ_k Q(a_k), a_k = clip(μ + σ ε_k, −1, 1); |B|·softmax_B(A/β), clip 20.
    noise = jax.random.normal(jax.random.key(5), (3, LENGTH, 4, config.action_samples, DIM))
    mu, log_std = means[:, :LENGTH], np.array([-0.3, -1.2])
    sampled = np.clip(mu[..., None, :] + np.exp(log_std) * np.asarray(noise), -1.0, 1.0)
    q_sampled = np.asarray(q_now(critic_params, jnp.asarray(sampled)))
    assert q_sampled.shape == (3, LENGTH, 4, config.action_samples)
    advantage = q - q_sampled.mean(-1)
    z = np.where(m, np.exp(advantage / config.beta - (advantage / config.beta).max(0, where=m, initial=-1e30)), 0)
    f = np.where(m, np.minimum(m.sum(0) * z / np.maximum(z.sum(0), 1e-30), config.weight_clip), 0.0)
    log_pi = np.sum(-0.5 * ((b["actions"] - mu) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi), -1)
    expected_pi = -np.sum(m * b["weight"] * f * log_pi) / m.sum()
    actor_loss = jax.jit(sit.continuous_actor_loss, static_argnums=(4, 5, 6))
    got = float(actor_loss(actor_params, critic_params, batch, noise, actor, critic, config))
    assert got == pytest.approx(expected_pi, rel=1e-4)
    # Without the baseline, A = Q(τ_j, a_j) (eq. 10 as printed) and the noise is unused.
    plain = dataclasses.replace(config, advantage_baseline=False)
    z = np.where(m, np.exp(q / plain.beta - (q / plain.beta).max(0, where=m, initial=-1e30)), 0)
    f = np.where(m, np.minimum(m.sum(0) * z / np.maximum(z.sum(0), 1e-30), plain.weight_clip), 0.0)
    got = float(actor_loss(actor_params, critic_params, batch, jnp.zeros_like(noise), actor, critic, plain))
    assert got == pytest.approx(-np.sum(m * b["weight"] * f * log_pi) / m.sum(), rel=1e-4)
    # The gradient reaches the mean and the learned log σ, never the critic.
    grads = jax.grad(sit.continuous_actor_loss)(actor_params, critic_params, batch, noise, actor, critic, config)
    assert np.all(np.isfinite(np.asarray(grads["params"]["log_std"])))
    assert float(np.abs(np.asarray(grads["params"]["log_std"])).sum()) > 0


# --- the learner --------------------------------------------------------------------------

def test_sit_shares_the_good_actions_where_bc_averages(dataset, trained):
    policy = trained.policy(0)
    assert isinstance(policy, NetworkPolicy) and not policy.config.discrete and policy.deterministic
    history = trained.history
    assert history["critic_loss"].shape == history["actor_loss"].shape == (1, 2)  # logged at 300 and 600
    assert np.all(np.isfinite(history["critic_loss"])) and np.all(np.isfinite(history["actor_loss"]))
    log_std = np.asarray(policy.params["params"]["log_std"])
    assert np.all((log_std >= FAST.log_std_min) & (log_std <= FAST.log_std_max))
    sit_distance = distance_to_good_actions(policy, jax.random.key(7))
    bc_config = bc.BCConfig(recurrent=True, batch_size=8, learning_rate=1e-3)
    bc_result = fit(bc.learner(bc_config, dataset), dataset, jax.random.key(0),
                    RunConfig(updates=300, log_every=300, progress=False))
    bc_distance = distance_to_good_actions(bc_result.policy(0), jax.random.key(7))
    # BC fits the data's mean action ≈ a*/3 (distance ≈ 0.3 here); SIT fits the experts' a*.
    assert sit_distance < 0.15, (sit_distance, bc_distance)
    assert sit_distance < bc_distance - 0.1, (sit_distance, bc_distance)


def test_continuous_policy_acts_saves_and_runs_ablations(dataset, trained, tmp_path):
    policy = trained.policy(0)
    spec = dataset.spec
    obs = jax.random.normal(jax.random.key(5), (spec.num_agents, spec.obs_dim)) * 3.0
    mean, _ = policy.act(jax.random.key(6), obs, None, policy.initial_carry())
    assert mean.shape == (spec.num_agents, DIM) and np.all(np.abs(np.asarray(mean)) <= 1.0)
    noisy = policy.replace_mode(False)
    draws = np.stack([np.asarray(noisy.act(jax.random.key(k), obs, None, noisy.initial_carry())[0])
                      for k in range(3)])
    assert np.all(np.abs(draws) <= 1.0) and not np.allclose(draws[0], draws[1])
    loaded, _ = load_policy(save_policy(policy, tmp_path / "sit.msgpack", spec=spec))
    np.testing.assert_allclose(np.asarray(loaded.act(jax.random.key(6), obs, None, loaded.initial_carry())[0]),
                               np.asarray(mean), rtol=1e-6)
    # w/o decomp: no Stage I, the team reward, uniform type-wise buffers.
    config = dataclasses.replace(FAST, decomposition=False)
    ablated = fit(sit.learner(config, dataset), dataset, jax.random.key(3),
                  RunConfig(updates=20, log_every=20, progress=False), sampler=Uniform(),
                  inputs=sit.stage_inputs(config, dataset, None))
    assert np.all(np.isfinite(ablated.history["critic_loss"]))
    with pytest.raises(ValueError, match="action_samples"):
        sit.SITConfig(action_samples=0)
    with pytest.raises(ValueError, match="log_std_min"):
        sit.SITConfig(log_std_min=3.0)
