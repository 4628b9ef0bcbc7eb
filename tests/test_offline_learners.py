"""Discrete offline multi-agent learners (issue 5): ICQ, MABCQ and MACQL each improve over
their initial policy on an easy dataset, never pick a masked action, and honour
per-decision weights; the per-time-step critic loop of their shared module follows the
reference; MABCQ's and MACQL's mixers are normalised, and a diverging critic is reported.

Easy dataset: CN_3ls3l, 50%[all e] + 50%[all r] from the committed pools — half of the
data is expert, so a learner that extracts it beats its untrained self by a wide margin.
(The continuous learners' tests are in test_continuous_learners.py.)
"""

import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift.algos import bc, icq, mabcq, macql
from teamsift.algos import offline_common as oc
from teamsift.collect.datasets import generate_from_spec
from teamsift.collect.pools import load_pools
from teamsift.data import load_dataset
from teamsift.engine import RunConfig, fit
from teamsift.envs import make
from teamsift.evaluate import evaluate
from teamsift.nets import BCQPolicy, init_params
from teamsift.nets.mixer import init_mixer, mixing_weights
from teamsift.nets import ops
from teamsift.nets.ops import masked_mean

POOLS = Path(__file__).resolve().parents[1] / "pools"

DISCRETE = {
    "icq": (icq, icq.ICQConfig()),
    "macql": (macql, macql.MACQLConfig()),
    "mabcq": (mabcq, mabcq.MABCQConfig()),
}
UPDATES = 300  # every stage (MABCQ: 300 BC updates for μ, then 300 Q updates)
# MABCQ's improvement test: its Q network takes one gradient step per update, where ICQ takes
# one per time step (25 on CN): 1,500 updates are a fifth of ICQ's 7,500 critic steps at 300.
MABCQ_Q_UPDATES = 1500


@pytest.fixture(scope="module")
def navigation(tmp_path_factory):
    env = make("CN_3ls3l")
    path = generate_from_spec(env, load_pools("CN_3ls3l", POOLS), "50%[all e] + 50%[all r]", 300,
                              jax.random.key(0), tmp_path_factory.mktemp("offline") / "cn")
    return env, load_dataset(path)


def train(name, dataset, key, updates: int, q_updates: int | None = None):
    """`updates` updates of one seed; MABCQ runs its two stages: μ by a BC fit of `updates`
    updates, then `q_updates` (default: `updates`) of Q learning started from μ (as the
    training pipeline does)."""
    module, config = DISCRETE[name]
    run = RunConfig(updates=updates, seeds=1, log_every=max(1, min(150, updates)), progress=False)
    if name != "mabcq":
        return fit(module.learner(config, dataset), dataset, key, run)
    behaviour_key, q_key = jax.random.split(key)
    behaviour = fit(bc.learner(mabcq.behaviour_config(config), dataset), dataset, behaviour_key, run)
    q_updates = updates if q_updates is None else q_updates
    q_run = RunConfig(updates=q_updates, seeds=1, log_every=max(1, min(150, q_updates)), progress=False)
    return fit(mabcq.learner(config, dataset), dataset, q_key, q_run, start=behaviour.state.params)


def untrained(name, dataset):
    """The learner's initial policy (MABCQ: with its initial μ)."""
    return train(name, dataset, jax.random.key(1), 0).policy(0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DISCRETE))
def test_discrete_learner_improves_on_its_initial_policy(navigation, name):
    env, dataset = navigation
    result = train(name, dataset, jax.random.key(1), UPDATES, MABCQ_Q_UPDATES if name == "mabcq" else None)
    before = evaluate(env, untrained(name, dataset), jax.random.key(2), 200).scores["return"]
    after = evaluate(env, result.policy(0), jax.random.key(2), 200).scores["return"]
    assert after.ci95_low > before.ci95_high, (before, after)
    headline = result.learner.headline
    assert np.all(np.isfinite(result.history[headline])) and np.isfinite(result.final()).all()


@pytest.mark.parametrize("name", list(DISCRETE))
def test_discrete_learner_never_picks_a_masked_action(navigation, name):
    _, dataset = navigation
    policy = untrained(name, dataset)
    spec = dataset.spec
    key_obs, key_mask, key_act = jax.random.split(jax.random.key(5), 3)
    obs = jax.random.normal(key_obs, (256, spec.num_agents, spec.obs_dim)) * 3.0
    avail = jax.random.bernoulli(key_mask, 0.3, (256, spec.num_agents, spec.num_actions))
    avail = avail.at[..., 0].set(avail[..., 0] | ~avail.any(-1))  # at least one action available

    def act(o, m):
        actions, _ = policy.act(key_act, o, m, policy.initial_carry())
        return actions

    actions = np.asarray(jax.vmap(act)(obs, avail))
    chosen = np.take_along_axis(np.asarray(avail), actions[..., None], axis=-1)[..., 0]
    assert chosen.all()


# --- per-decision weights --------------------------------------------------------------------

def weighted_update(name, dataset):
    """(one update of a fixed state on the first 32 episodes: arrays → (state, metrics),
    the device arrays without weights, the rows of episode 0)."""
    module, config = DISCRETE[name]
    learner = module.learner(config, dataset)
    arrays = learner.prepare(dataset, {})
    key = jax.random.key(3)
    if learner.needs_start:
        start = init_params(mabcq.net_config(config, dataset.spec), jax.random.key(4))
        state = learner.init(jax.random.key(0), arrays, start)
    else:
        state = learner.init(jax.random.key(0), arrays)

    items = jnp.arange(learner.batch_size, dtype=jnp.int32)  # the first episodes
    update = jax.jit(lambda arrays: learner.update(state, key, arrays, items))
    rows = np.arange(dataset.starts[0], dataset.starts[0] + dataset.lengths[0])
    return update, arrays, rows


def flat(tree):
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize("name", list(DISCRETE))
def test_discrete_learner_honours_decision_weights(navigation, name):
    """Unit weights give the unweighted update, the weights are normalised (×3 changes
    nothing), and an episode of weight 0 takes no part: its rewards do not matter."""
    _, dataset = navigation
    update, arrays, rows = weighted_update(name, dataset)
    n, a = arrays["actions"].shape
    ones = jnp.ones((n, a), jnp.float32)
    plain = update(arrays)
    unit = update({**arrays, "weight": ones})
    tripled = update({**arrays, "weight": 3.0 * ones})
    for result in (unit, tripled):
        np.testing.assert_allclose(flat(result[1]), flat(plain[1]), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(flat(result[0]), flat(plain[0]), rtol=1e-4, atol=1e-6)

    changed_reward = arrays["reward"].at[rows].add(5.0)
    dropped = ones.at[rows].set(0.0)
    kept = update({**arrays, "weight": dropped})
    kept_changed = update({**arrays, "weight": dropped, "reward": changed_reward})
    np.testing.assert_allclose(flat(kept_changed[0]), flat(kept[0]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(flat(kept_changed[1]), flat(kept[1]), rtol=1e-6, atol=1e-7)
    # …while with every episode weighed, the same change of rewards changes the update
    unit_changed = update({**arrays, "weight": ones, "reward": changed_reward})
    assert np.max(np.abs(flat(unit_changed[0]) - flat(unit[0]))) > 1e-6


def test_icq_actor_weighs_each_agent_by_its_own_weight(navigation):
    """An agent of weight 0 takes no part in the actor loss: its data's actions do not matter."""
    _, dataset = navigation
    config = icq.ICQConfig(reward_scale=1.0)
    learner = icq.learner(config, dataset)
    arrays = learner.prepare(dataset, {})
    state = learner.init(jax.random.key(0), arrays)
    spec = dataset.spec
    actor, critic = icq.actor_net_config(config, spec), icq.critic_net_config(config, spec)
    mixer = icq.mixer_config(config, spec)
    n, a = arrays["actions"].shape
    weight = jnp.ones((n, a), jnp.float32).at[:, 0].set(0.0)
    other = (arrays["actions"] + 1) % spec.num_actions
    loss = jax.jit(lambda arrays: icq.actor_loss(state.actor, state.critic,
                                                 oc.episode_batch(arrays, jnp.arange(32), int(dataset.lengths.max())),
                                                 actor, critic, mixer, config))
    changed = {**arrays, "actions": arrays["actions"].at[:, 0].set(other[:, 0])}
    assert float(loss({**arrays, "weight": weight})) == pytest.approx(float(loss({**changed, "weight": weight})),
                                                                      rel=1e-6)
    assert abs(float(loss(arrays)) - float(loss(changed))) > 1e-6


# --- the learners' set-up ------------------------------------------------------------------------

def test_icq_resolves_the_reward_scale_from_the_data(navigation):
    _, dataset = navigation
    scale = oc.smac_reward_scale(dataset)  # CN's returns are negative: 1
    assert scale == 1.0
    assert icq.learner(icq.ICQConfig(), dataset) is icq.learner(icq.ICQConfig(reward_scale=scale), dataset)
    resolved = icq.resolve_config(icq.ICQConfig(), dataset)
    assert resolved.reward_scale == 1.0 and "reward_scale (now 1)" in icq.divergence_hint(resolved)


def test_mabcq_starts_from_the_behaviour_model(navigation):
    """MABCQ needs μ as its start, of the Q network's architecture, and acts with it."""
    _, dataset = navigation
    config = mabcq.MABCQConfig()
    learner = mabcq.learner(config, dataset)
    run = RunConfig(updates=0, seeds=1, progress=False)
    with pytest.raises(ValueError, match="needs `start`"):
        fit(learner, dataset, jax.random.key(0), run)
    net = mabcq.net_config(config, dataset.spec)
    behaviour = jax.vmap(lambda k: init_params(net, k))(jax.random.split(jax.random.key(1), 1))
    result = fit(learner, dataset, jax.random.key(0), run, start=behaviour)
    policy = result.policy(0)
    assert isinstance(policy, BCQPolicy) and policy.threshold == config.threshold
    np.testing.assert_array_equal(flat(policy.params["behaviour"]), flat(behaviour))
    wider = mabcq.net_config(mabcq.MABCQConfig(hidden=(32,)), dataset.spec)
    other = jax.vmap(lambda k: init_params(wider, k))(jax.random.split(jax.random.key(1), 1))
    with pytest.raises(ValueError, match="MABCQ start"):
        fit(learner, dataset, jax.random.key(0), run, start=other)
    assert mabcq.behaviour_config(config).hidden == config.hidden and not mabcq.behaviour_config(config).sample_actions


# --- the shared module ----------------------------------------------------------------------------

def test_critic_steps_per_time_step_follow_the_reference_loop():
    """`critic_gradient_steps(per_time_step=True)` takes one SGD step per time step, in
    order, skipping time steps past every episode's end — ICQ's reference loop that SIT's
    critic uses too; with per_time_step=False it is one step on the whole batch."""
    import optax

    targets = jnp.array([[1.0, 2.0, 4.0, 8.0], [3.0, 2.0, 0.0, 5.0]])  # [B, T]
    mask = jnp.array([[True, True, True, False], [True, True, False, False]])

    def loss(param, target, step_mask):  # masked mean of ½(θ − y)² over the batch
        return masked_mean(0.5 * (param - target) ** 2, step_mask)

    sgd = optax.sgd(0.5)
    param, _, steps, _ = oc.critic_gradient_steps(loss, jnp.float32(0.0), sgd.init(jnp.float32(0.0)), sgd,
                                                  (targets, mask), per_time_step=True)
    expected = 0.0
    for t in range(3):  # the fourth time step has no valid entry and is skipped
        valid = np.asarray(mask[:, t])
        expected -= 0.5 * np.mean(expected - np.asarray(targets[:, t])[valid])
    assert int(steps) == 3 and float(param) == pytest.approx(expected)
    param, _, steps, _ = oc.critic_gradient_steps(loss, jnp.float32(0.0), sgd.init(jnp.float32(0.0)), sgd,
                                                  (targets, mask), per_time_step=False)
    assert int(steps) == 1 and float(param) == pytest.approx(0.5 * np.asarray(targets)[np.asarray(mask)].mean())


def test_weighted_mean_is_the_masked_mean_without_weights_and_normalised_with_them():
    x = jnp.array([[1.0, 2.0], [3.0, 40.0]])
    mask = jnp.array([[True, True], [True, False]])
    assert float(ops.weighted_mean(x, mask)) == float(masked_mean(x, mask)) == pytest.approx(2.0)
    weight = jnp.array([[0.0, 0.5], [1.5, 9.0]])  # the masked entry's weight does not count
    assert float(ops.weighted_mean(x, mask, weight)) == pytest.approx((0.5 * 2.0 + 1.5 * 3.0) / 2.0)
    assert float(ops.weighted_mean(x, mask, 7.0 * weight)) == pytest.approx(float(ops.weighted_mean(x, mask, weight)))
    assert ops.step_weight({}) is None
    np.testing.assert_allclose(ops.step_weight({"weight": weight[None]}), [[0.25, 5.25]])


# --- MABCQ's and MACQL's mixer, and divergence warnings ---------------------------------------

@pytest.mark.parametrize("module, config_class", [(mabcq, mabcq.MABCQConfig), (macql, macql.MACQLConfig)])
def test_mabcq_and_macql_mix_with_normalised_weights_by_default(navigation, module, config_class):
    """SIT: their decomposition "follows Yang et al. (2021)": ICQ's reference mixer, whose
    weights k_i(s) sum to 1 over the agents (unnormalised, they grow and the critic diverges)."""
    _, dataset = navigation
    mixer = module.mixer_config(config_class(), dataset.spec)
    assert mixer.kind == "linear" and mixer.normalise_weights and mixer.state_bias
    params = init_mixer(mixer, jax.random.key(0))
    state = jax.random.normal(jax.random.key(1), (16, dataset.spec.state_dim))
    k = mixing_weights(mixer, params, jnp.zeros((16, dataset.spec.num_agents)), state)
    assert np.allclose(np.sum(np.asarray(k), axis=-1), 1.0, atol=1e-5) and np.all(np.asarray(k) >= 0)
    assert not module.mixer_config(config_class(normalise_mixer=False), dataset.spec).normalise_weights
    with pytest.raises(ValueError, match=f"{config_class.__name__}.normalise_mixer: only the 'linear' mixer"):
        config_class(mixer="qmix")
    assert module.mixer_config(config_class(mixer="qmix", normalise_mixer=False), dataset.spec).kind == "qmix"


@pytest.mark.parametrize("algorithm, config", [("mabcq", mabcq.MABCQConfig(normalise_mixer=False)),
                                               ("macql", macql.MACQLConfig(normalise_mixer=False)),
                                               ("mabcq", mabcq.MABCQConfig()),
                                               ("icq", icq.ICQConfig(reward_scale=1.0))])
def test_a_diverging_critic_is_reported_with_its_remedy(algorithm, config):
    """The loss of MABCQ's critic with unnormalised mixer weights on CN_3ls3l grew from 6 to
    1e5 in 3,000 updates (docs/benchmarks.md): training says so and names the remedy."""
    from types import SimpleNamespace

    from teamsift.algos.pipeline import warn_divergence

    headline = "critic_loss" if algorithm == "icq" else "loss"  # the learner's headline metric
    losses = np.array([[6.4, 5.0, 45.8, 673.0, 1.0e4, 2.0e4, 4.0e4, 6.0e4, 9.0e4, 1.3e5]])
    result = SimpleNamespace(history={"update": np.arange(1, 11), headline: losses},
                             learner=SimpleNamespace(config=config, headline=headline))
    with pytest.warns(RuntimeWarning, match=rf"{algorithm.upper()}'s critic diverged on seed\(s\) \[0\]") as caught:
        warn_divergence(algorithm, None, result)
    message = str(caught[0].message)
    assert ("set normalise_mixer=True" in message) == (not getattr(config, "normalise_mixer", True))
    steady = SimpleNamespace(history={"update": np.arange(1, 11), headline: np.full((1, 10), 2.0)},
                             learner=SimpleNamespace(config=config, headline=headline))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_divergence(algorithm, None, steady)
