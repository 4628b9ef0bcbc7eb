"""SIT Stage III (eqs. 8–10): the two losses against a hand computation, the GAT block,
masked actions, and a short end-to-end run on data whose good individual trajectories
are a minority.

The end-to-end dataset follows the contribution idea of tests/test_ardnem.py: four
agents of two types (x, x, y, y), an agent scores 1 when its action matches a target
read off its own observation (the sign of its first feature), the team reward is the
number of hits. Each slot is played by an expert (hit rate 0.95) in a third of the
episodes and by a poor policy (hit rate 0.1) otherwise, so the data's majority action
is the wrong one: behaviour cloning copies it, while SIT must find the expert
trajectories (ARDNEM + DPER) and the good actions (the CRR filter on r̂).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift.algos import bc, sit
from teamsift.algos import offline_common as oc
from teamsift.data import DPER, Uniform, dper, item_space, testing
from teamsift.engine import RunConfig, fit, step_weights
from teamsift.nets import apply_sequence
from teamsift.nets.gat import GATLayer
from teamsift.value import ardnem

HIT_RATE = {"poor": 0.1, "expert": 0.95}
TERMS = np.asarray([["expert", "poor", "poor", "poor"], ["poor", "expert", "expert", "poor"],
                    ["poor", "poor", "poor", "expert"]])  # each slot expert in 1/3 of the episodes

# Small, fast schedules (CPU test): larger learning rates, tiny batches. α = 2 instead of
# Table 11's 0.2, which puts all draws on the few best trajectories (see data/dper.py).
STAGE1 = dataclasses.replace(ardnem.ARDNEMConfig(), learning_rate=1e-3, batch_size=8, ensemble_size=3,
                             probe_episodes=16)
STAGE1_RUN = RunConfig(updates=400, log_every=400, progress=False)
FAST = sit.SITConfig(batch_size=8, actor_learning_rate=1e-3, critic_learning_rate=1e-3, target_update_interval=20)
FAST_RUN = RunConfig(updates=300, log_every=150, progress=False)
FAST_DPER = dper.DPERConfig(alpha=2.0)
STAGE1_KEY, STAGE3_KEY = jax.random.split(jax.random.key(0))


# Compiled once for the tests that look at batches (same shapes: cache hits).
trajectory_batch = jax.jit(sit.trajectory_batch, static_argnums=(3, 4))
critic_loss = jax.jit(sit.critic_loss, static_argnums=3)


def draw(sampler, dataset, key, batch_size):
    """(episode [B, A], source [B, A]) as the engine's `draw` gets them from `sampler`."""
    buffers = sampler.arrays(item_space(dataset, "trajectory"), dataset)
    return jax.jit(sampler.draw, static_argnums=(3, 4))(buffers, None, key, batch_size, "trajectory")


def stage3(config, dataset, key, run, stage1, **options):
    """Stage III as the pipeline runs it: DPER over Stage I's priorities, or uniform w/o decomposition."""
    sampler = DPER(FAST_DPER, priorities=stage1.priority) if config.decomposition else Uniform()
    return fit(sit.learner(config, dataset), dataset, key, run, sampler=sampler,
               inputs=sit.stage_inputs(config, dataset, stage1), **options)


def minority_expert_dataset(path, episodes: int = 150, length: int = 10, seed: int = 0):
    return testing.contribution_dataset(path, TERMS, HIT_RATE, episodes=episodes, length=length, width=4, seed=seed,
                                        random_final_obs=True)


def rule_accuracy(policy, key, episodes: int = 64, length: int = 10, width: int = 4) -> float:
    """Greedy actions of the (recurrent) policy on fresh observations vs the target rule."""
    obs = jax.random.normal(key, (length, episodes, 4, width))
    logits = apply_sequence(policy.config, policy.params, obs)
    return float(np.mean(np.asarray(jnp.argmax(logits, -1)) == np.asarray(obs[..., 0] > 0)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return minority_expert_dataset(tmp_path_factory.mktemp("sit") / "minority")


@pytest.fixture(scope="module")
def stage1(dataset):
    return ardnem.result(STAGE1, fit(ardnem.learner(STAGE1, dataset), dataset, STAGE1_KEY, STAGE1_RUN), dataset)


@pytest.fixture(scope="module")
def trained(dataset, stage1):
    return stage3(FAST, dataset, STAGE3_KEY, FAST_RUN, stage1)


# --- the losses ---------------------------------------------------------------------------

def test_critic_loss_matches_a_hand_computation():
    # Three samples (B = 3, T = 1, A = 1); the third is padding.
    q = np.array([1.0, 2.0, 5.0])
    reward, next_q = np.array([0.5, -1.0, 9.0]), np.array([2.0, 4.0, 9.0])
    continues, mask = np.array([True, False, False]), np.array([True, True, False])
    u = np.array([0.0, 0.1, 0.3])  # mean 0.1333: û = 0 is floored at 0.1 · mean
    weights = sit.uncertainty_weights(u, eta=2.0, floor=0.1)
    np.testing.assert_allclose(weights, 2.0 / np.array([0.1 * u.mean(), 0.1, 0.3]), rtol=1e-6)
    np.testing.assert_array_equal(sit.uncertainty_weights(np.zeros(3), eta=2.0, floor=0.1), 2.0)  # w/o ensemble
    targets = sit.td_targets(jnp.asarray(reward), jnp.asarray(next_q), jnp.asarray(continues), 0.9)
    np.testing.assert_allclose(np.asarray(targets), [0.5 + 0.9 * 2.0, -1.0, 9.0], rtol=1e-6)
    loss = sit.weighted_td_loss(jnp.asarray(q), targets, jnp.asarray(weights), jnp.asarray(mask))
    expected = (weights[0] * (2.3 - 1.0) ** 2 + weights[1] * (-1.0 - 2.0) ** 2) / 2  # mean over valid samples
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_actor_loss_matches_a_hand_computation():
    # B = 3 trajectories at one step for one agent; A/β, then |B|·softmax over the batch, clip 20.
    advantage = np.array([[0.2], [-0.1], [0.05]])
    mask = np.array([[True], [True], [True]])
    log_pi = np.log(np.array([[0.7], [0.4], [0.5]]))
    weights = np.array([[1.0], [2.0], [0.5]])
    f = np.asarray(sit.crr_filter(jnp.asarray(advantage), jnp.asarray(mask), "softmax", beta=0.1, clip=20.0))
    e = np.exp(advantage / 0.1)
    np.testing.assert_allclose(f, 3 * e / e.sum(), rtol=1e-5)
    loss = sit.filtered_bc_loss(jnp.asarray(log_pi), jnp.asarray(f), jnp.asarray(weights), jnp.asarray(mask))
    assert float(loss) == pytest.approx(-np.mean(weights * f * log_pi), rel=1e-5)
    # CRR's exp and binary filters, the clip, and padding (weight 0, not counted).
    f_exp = np.asarray(sit.crr_filter(jnp.asarray(advantage), jnp.asarray(mask), "exp", beta=0.05, clip=20.0))
    np.testing.assert_allclose(f_exp, np.minimum(np.exp(advantage / 0.05), 20.0), rtol=1e-5)
    assert f_exp[0, 0] == pytest.approx(20.0)  # e^4 ≈ 54.6, clipped
    f_bin = sit.crr_filter(jnp.asarray(advantage), jnp.asarray([[True], [True], [False]]), "binary", 0.1, 20.0)
    np.testing.assert_array_equal(np.asarray(f_bin), [[1.0], [0.0], [0.0]])
    padded = sit.filtered_bc_loss(jnp.asarray(log_pi), f_bin, jnp.asarray(weights), jnp.asarray([[True], [True],
                                                                                                 [False]]))
    assert float(padded) == pytest.approx(-(1.0 * 1.0 * np.log(0.7)) / 2, rel=1e-5)


def test_effective_sample_fraction_of_filter_weights():
    # Columns: equal weights (1), one entry holding all the weight (1/n), a hand case with
    # padding (n = 2 valid: (1 + 3)² / (2 · (1 + 9)) = 0.8), and a slice with no valid entry.
    weights = np.array([[2.0, 0.0, 1.0, 5.0], [2.0, 3.0, 3.0, 5.0], [2.0, 0.0, 7.0, 5.0]], np.float32)
    mask = np.array([[True, True, True, False], [True, True, True, False], [True, True, False, False]])
    got = np.asarray(sit.effective_sample_fraction(jnp.asarray(weights), jnp.asarray(mask)))
    np.testing.assert_allclose(got[:3], [1.0, 1.0 / 3.0, 0.8], rtol=1e-6)
    assert np.isnan(got[3])
    # β → 0 makes eq. 10's batch softmax an argmax: the fraction falls to 1/B; β → ∞: 1.
    advantage = jnp.asarray(np.linspace(-1.0, 1.0, 8)[:, None], jnp.float32)
    full = jnp.ones_like(advantage, bool)
    sharp = sit.crr_filter(advantage, full, "softmax", beta=1e-3, clip=1e9)
    flat = sit.crr_filter(advantage, full, "softmax", beta=1e3, clip=1e9)
    assert float(sit.effective_sample_fraction(sharp, full)[0]) == pytest.approx(1 / 8, rel=1e-4)
    assert float(sit.effective_sample_fraction(flat, full)[0]) == pytest.approx(1.0, rel=1e-4)


def test_network_losses_follow_eqs_9_and_10(dataset):
    """critic_loss / actor_loss on a real batch equal the value-level formulas recomputed in numpy."""
    config = dataclasses.replace(FAST, batch_size=3, reward_scale=2.0)
    spec = dataset.spec
    actor, critic = sit.actor_config(config, spec), sit.critic_config(config, spec)
    actor_params = sit.init_params(actor, jax.random.key(1))
    critic_params = sit.init_critic(critic, jax.random.key(2))
    target_params = sit.init_critic(critic, jax.random.key(3))
    rng = np.random.default_rng(0)
    inputs = {"reward": rng.normal(size=(dataset.num_steps, 4)).astype(np.float32),
              "weight": rng.uniform(0.5, 2.0, size=(dataset.num_steps, 4)).astype(np.float32)}
    data = sit.prepare(config, dataset, inputs)  # r̂ times reward_scale, η/û as they are
    np.testing.assert_array_equal(np.asarray(data["reward"]), 2.0 * inputs["reward"])
    np.testing.assert_array_equal(np.asarray(data["weight"]), inputs["weight"])
    sampler = DPER(dper.DPERConfig(alpha=5.0), priorities=rng.normal(size=(dataset.num_episodes, 4)))
    batch = trajectory_batch(data, *draw(sampler, dataset, jax.random.key(4), 3), 10, True)
    # Every agent trains on trajectories of its own type (shared across the type's slots).
    types = np.asarray(spec.agent_types)
    assert np.all(types[np.asarray(batch["source"])] == types[None, :])
    src = np.asarray(batch["source"])
    np.testing.assert_array_equal(np.asarray(batch["self_index_ext"][:, 0]), src)
    step_rows = dataset.starts[np.asarray(batch["episode"])]  # [B, A], first step of each drawn episode
    np.testing.assert_allclose(np.asarray(batch["obs_ext"][:, 0]),
                               dataset.steps["obs"][step_rows, src], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(batch["reward"][:, 0]), np.asarray(data["reward"])[step_rows, src])

    critic_values = jax.jit(sit.critic_values, static_argnums=0)
    q_ext = np.asarray(critic_values(critic, critic_params, batch))
    q_next = np.asarray(critic_values(critic, target_params, batch))[:, 1:]
    logits = np.asarray(jax.jit(sit.policy_logits, static_argnums=0)(actor, actor_params, batch["obs_ext"],
                                                                   batch["avail_ext"]))
    b = {k: np.asarray(v) for k, v in batch.items()}
    pi = np.exp(logits - logits.max(-1, keepdims=True))
    pi /= pi.sum(-1, keepdims=True)
    take = lambda x, a: np.take_along_axis(x, a[..., None], -1)[..., 0]  # noqa: E731
    expected_next = (pi[:, 1:] * q_next).sum(-1)
    next_value = np.where(b["has_next"], take(q_next, b["actions_next"]), expected_next)
    y = b["reward"] + config.gamma * b["continues"] * next_value
    targets = jax.jit(sit.critic_targets, static_argnums=(0, 1, 5))(actor, critic, actor_params, target_params,
                                                                    batch, config)
    np.testing.assert_allclose(np.asarray(targets), y, rtol=1e-5, atol=1e-5)
    q = q_ext[:, :10]
    m = b["mask"]
    expected_q = np.sum(m * b["weight"] * (y - take(q, b["actions"])) ** 2) / m.sum()
    loss_q = critic_loss(critic_params, batch, jnp.asarray(y), critic)
    assert float(loss_q) == pytest.approx(expected_q, rel=1e-4)

    p = pi[:, :10]
    advantage = take(q, b["actions"]) - (p * q).sum(-1)
    got_advantage = jax.jit(sit.discrete_advantages, static_argnums=(3, 4))(jnp.asarray(logits), critic_params,
                                                                           batch, critic, config)
    np.testing.assert_allclose(np.where(m, np.asarray(got_advantage), 0), np.where(m, advantage, 0), rtol=1e-4,
                               atol=1e-5)
    z = np.where(m, np.exp(advantage / config.beta - (advantage / config.beta).max(0, where=m, initial=-1e30)), 0)
    f = np.where(m, np.minimum(m.sum(0) * z / np.maximum(z.sum(0), 1e-30), config.weight_clip), 0.0)
    expected_pi = -np.sum(m * b["weight"] * f * np.log(take(p, b["actions"]))) / m.sum()
    got = float(jax.jit(sit.actor_loss, static_argnums=(3, 4, 5))(actor_params, critic_params, batch, actor, critic,
                                                                   config))
    assert got == pytest.approx(expected_pi, rel=1e-4)


# --- the GAT block ------------------------------------------------------------------------

def test_gat_layer_follows_eq8_and_is_permutation_equivariant():
    layer = GATLayer(features=5, num_heads=2)
    nodes = jax.random.normal(jax.random.key(0), (3, 4, 6))  # [batch, N = 4 nodes, F = 6]
    params = layer.init(jax.random.key(1), nodes)
    out, attention = layer.apply(params, nodes)
    assert out.shape == (3, 4, 10) and attention.shape == (3, 2, 4, 4)
    np.testing.assert_allclose(np.asarray(attention.sum(-1)), 1.0, rtol=1e-5)
    # Eq. 8 by hand for head 0: h = W_1 x, w_ij = softmax_j LeakyReLU(W_2ᵀ[h_i; h_j]), out_i = Σ_j w_ij h_j.
    w1 = np.asarray(params["params"]["W_1"]["kernel"]).reshape(6, 2, 5)[:, 0]
    w2 = np.asarray(params["params"]["W_2"])[0]
    h = np.asarray(nodes) @ w1  # [3, 4, 5]
    logits = (h @ w2[:5])[..., :, None] + (h @ w2[5:])[..., None, :]
    logits = np.where(logits > 0, logits, 0.2 * logits)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(attention[:, 0]), w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out[..., :5]), w @ h, rtol=1e-4, atol=1e-5)
    # Permuting the agents permutes the outputs and the attention the same way.
    perm = np.array([2, 0, 3, 1])
    out_p, attention_p = layer.apply(params, nodes[:, perm])
    np.testing.assert_allclose(np.asarray(out_p), np.asarray(out)[:, perm], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(attention_p), np.asarray(attention)[:, :, perm][..., perm],
                               rtol=1e-4, atol=1e-6)
    # Absent nodes are never attended to; without self-loops a node ignores itself.
    present = jnp.asarray([True, True, False, True])
    _, masked = layer.apply(params, nodes, present)
    np.testing.assert_allclose(np.asarray(masked[..., 2]), 0.0, atol=1e-7)
    np.testing.assert_allclose(np.asarray(masked.sum(-1)), 1.0, rtol=1e-5)
    no_self = GATLayer(features=5, num_heads=2, self_loops=False, concat_heads=False)
    out_n, att_n = no_self.apply(params, nodes)
    assert out_n.shape == (3, 4, 5)
    np.testing.assert_allclose(np.asarray(jnp.diagonal(att_n, axis1=-2, axis2=-1)), 0.0, atol=1e-7)


# --- the learner --------------------------------------------------------------------------

def test_sit_recovers_the_experts_rule_where_bc_copies_the_majority(dataset, stage1, trained):
    assert isinstance(stage1, ardnem.ARDNEMResult)
    history = trained.history
    np.testing.assert_array_equal(history["update"], [150, 300])
    assert history["critic_loss"].shape == history["actor_loss"].shape == (1, 2)
    assert np.all(np.isfinite(history["critic_loss"])) and np.all(np.isfinite(history["actor_loss"]))
    assert trained.learner.headline == "critic_loss" and trained.final().shape == (1,)
    sit_accuracy = rule_accuracy(trained.policy(0), jax.random.key(7))
    bc_config = bc.BCConfig(recurrent=True, batch_size=8, learning_rate=1e-3)
    bc_result = fit(bc.learner(bc_config, dataset), dataset, jax.random.key(0),
                    RunConfig(updates=300, log_every=300, progress=False))
    bc_accuracy = rule_accuracy(bc_result.policy(0), jax.random.key(7))
    assert sit_accuracy > 0.8, (sit_accuracy, bc_accuracy)
    assert sit_accuracy > bc_accuracy + 0.3, (sit_accuracy, bc_accuracy)


def test_trained_policy_never_picks_a_masked_action(dataset, trained):
    policy = trained.policy(0)
    spec = dataset.spec
    key_obs, key_mask, key_act = jax.random.split(jax.random.key(5), 3)
    obs = jax.random.normal(key_obs, (256, spec.num_agents, spec.obs_dim)) * 3.0
    avail = jax.random.bernoulli(key_mask, 0.5, (256, spec.num_agents, spec.num_actions))
    avail = avail.at[..., 0].set(avail[..., 0] | ~avail.any(-1))  # at least one action available
    for deterministic in (True, False):
        acting = policy.replace_mode(deterministic)

        def act(o, m):
            return acting.act(key_act, o, m, acting.initial_carry())[0]

        actions = np.asarray(jax.vmap(act)(obs, avail))
        assert np.take_along_axis(np.asarray(avail), actions[..., None], axis=-1).all()


def test_ablations_run_and_sample_as_documented(dataset, stage1):
    # w/o decomp: no Stage I (none is passed), the team reward for every agent, weight η,
    # uniform type-wise buffers.
    config = dataclasses.replace(FAST, decomposition=False, eta=2.0)
    inputs = sit.stage_inputs(config, dataset, None)
    team = np.asarray(dataset.steps["reward"])
    np.testing.assert_array_equal(inputs["reward"], np.repeat(team[:, None], 4, axis=1))
    np.testing.assert_array_equal(inputs["weight"], 2.0)
    space = item_space(dataset, "trajectory")
    uniform = Uniform().arrays(space, dataset)
    sizes = [1.0 / np.sum(np.asarray(b.probability, np.float64) ** 2) for b in uniform.buffers]
    assert sizes == pytest.approx([2 * dataset.num_episodes, 2 * dataset.num_episodes])  # x: slots 0, 1; y: 2, 3
    # Run it. `decomposition` and η only shape the inputs, so FAST's compiled learner runs the
    # ablation; DPER over equal priorities has Uniform's buffers, so its compiled sampler too
    # (tests/test_sit_continuous.py runs `sit.learner(config)` with `Uniform()` itself).
    equal = DPER(FAST_DPER, priorities=np.zeros((dataset.num_episodes, 4)))
    for ours, theirs in zip(jax.tree.leaves(equal.arrays(space, dataset)), jax.tree.leaves(uniform)):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    result = fit(sit.learner(FAST, dataset), dataset, jax.random.key(3),
                 RunConfig(updates=150, log_every=150, progress=False), sampler=equal,
                 inputs=sit.stage_inputs(config, dataset))
    assert np.all(np.isfinite(result.history["critic_loss"])) and np.all(np.isfinite(result.history["actor_loss"]))
    # w/o GAT, reusing the Stage I result of the full run.
    config = dataclasses.replace(FAST, use_gat=False)
    result = stage3(config, dataset, jax.random.key(3), RunConfig(updates=4, log_every=4, progress=False), stage1)
    assert "joint" in result.state.critic["params"] and "gat" not in result.state.critic["params"]
    assert np.all(np.isfinite(result.history["critic_loss"]))


def test_valuation_weights_multiply_the_uncertainty_weights(dataset, stage1):
    """`fit(..., weights=...)` multiplies a valuation's per-(episode, slot) weights into η/û;
    a decision of weight 0 then takes no part in eqs. 9–10."""
    valuation = np.ones((dataset.num_episodes, 4))
    valuation[:, 2:] = 0.0  # every trajectory of the slots of type y
    valuation[::2, 0] = 0.5
    inputs = sit.stage_inputs(FAST, dataset, stage1)
    result = stage3(FAST, dataset, STAGE3_KEY, RunConfig(updates=0, progress=False), stage1, weights=valuation)
    arrays = result.arrays
    np.testing.assert_allclose(np.asarray(arrays["weight"]), inputs["weight"] * step_weights(dataset, valuation),
                               rtol=1e-6)
    sampler = DPER(FAST_DPER, priorities=stage1.priority)
    batch = trajectory_batch(arrays, *draw(sampler, dataset, jax.random.key(1), 3), 10, True)
    weight = np.asarray(batch["weight"])
    assert np.all(weight[..., 2:] == 0) and np.any(weight[..., :2] > 0)
    critic = sit.critic_config(FAST, dataset.spec)
    params = jax.tree.map(lambda x: x[0], result.state.critic)
    targets = jnp.asarray(np.random.default_rng(0).normal(size=batch["mask"].shape), jnp.float32)
    moved = targets.at[..., 2:].add(5.0)  # other targets for the agents whose decisions weigh 0
    assert float(critic_loss(params, batch, moved, critic)) == pytest.approx(
        float(critic_loss(params, batch, targets, critic)), rel=1e-6)
    assert float(critic_loss(params, batch, targets.at[..., :2].add(5.0), critic)) != pytest.approx(
        float(critic_loss(params, batch, targets, critic)), rel=1e-3)  # the others' do count


def test_bad_input_names_the_field(dataset, stage1):
    with pytest.raises(ValueError, match="filter"):
        sit.SITConfig(filter="awr")
    with pytest.raises(ValueError, match="beta"):
        sit.SITConfig(beta=0.0)
    with pytest.raises(ValueError, match="uncertainty_floor"):
        sit.SITConfig(uncertainty_floor=-1.0)
    short = dataclasses.replace(stage1, priority=stage1.priority[:10])
    with pytest.raises(ValueError, match="stage1.priority"):
        sit.stage_inputs(FAST, dataset, short)
    with pytest.raises(ValueError, match="Stage I"):
        sit.stage_inputs(FAST, dataset, None)  # decomposition needs Stage I's result
    with pytest.raises(ValueError, match="stage_inputs"):
        fit(sit.learner(FAST, dataset), dataset, STAGE3_KEY, FAST_RUN)  # no r̂, no η/û


@pytest.mark.parametrize("heads, self_loops, masked", [(1, True, False), (2, False, True)])
def test_gat_query_row_equals_the_full_layer_at_that_node(heads, self_loops, masked):
    """GATLayer(..., query=i) (what SIT's critic reads: its own node only) is row i of the full layer."""
    layer = GATLayer(features=5, num_heads=heads, self_loops=self_loops, concat_heads=heads == 1)
    nodes = jax.random.normal(jax.random.key(0), (6, 4, 3))
    node_mask = jnp.arange(4) < jnp.array([4, 3, 2, 4, 1, 3])[:, None] if masked else None
    query = jnp.array([0, 2, 1, 3, 0, 1])
    params = layer.init(jax.random.key(1), nodes)
    out, attention = layer.apply(params, nodes, node_mask)
    row_out, row_attention = layer.apply(params, nodes, node_mask, query=query)
    rows = np.arange(6)
    np.testing.assert_allclose(np.asarray(row_out), np.asarray(out)[rows, np.asarray(query)], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(row_attention), np.asarray(attention)[rows, :, np.asarray(query)],
                               rtol=1e-5, atol=1e-6)


def test_one_update_equals_the_update_written_from_its_parts(tmp_path):
    """The update (only the data's action scored in eq. 9 and its targets, every action only
    at the final observation and in eq. 10's baseline; π unrolled once, its vjp giving the
    actor's gradient) against the same update from every action's values as before: targets
    and losses picking the data's action out of `critic_values`, π unrolled twice. Episodes
    of 1–9 steps: truncated ends, padding and steps past every episode's end."""
    dataset = testing.random_dataset(tmp_path / "data", episodes=24)
    config = sit.resolve_config(dataclasses.replace(FAST, decomposition=False, batch_size=4), dataset)
    learner = sit.learner(config, dataset)
    spec = dataset.spec
    actor, critic = sit.actor_config(config, spec), sit.critic_config(config, spec)
    arrays = learner.prepare(dataset, sit.stage_inputs(config, dataset))
    state = learner.init(jax.random.key(0), arrays)
    items = draw(Uniform(), dataset, jax.random.key(2), 4)
    new_state, metrics = jax.jit(learner.update)(state, jax.random.key(1), arrays, items)

    def reference(state):
        max_length = int(dataset.lengths.max())
        batch = sit.trajectory_batch(arrays, *items, max_length, True)
        q_next = sit.critic_values(critic, state.target, batch)[:, 1:]
        pi_next = jax.nn.softmax(sit.policy_logits(actor, state.actor, batch["obs_ext"], batch["avail_ext"])[:, 1:])
        expected = jnp.sum(pi_next * jnp.where(batch["avail_ext"][:, 1:], q_next, 0.0), axis=-1)
        next_value = jnp.where(batch["has_next"], oc.taken(q_next, batch["actions_next"]), expected)
        targets = sit.td_targets(batch["reward"], next_value, batch["continues"], config.gamma)
        local = sit.critic_inputs(critic, batch["obs_ext"][:, :max_length], batch["last_actions_ext"][:, :max_length],
                                  batch["has_last_ext"][:, :max_length])

        def critic_loss(params, local, nodes, self_index, actions, targets, weights, mask):
            q = sit.GATCritic(critic).apply(params, local, nodes, self_index)
            return sit.weighted_td_loss(oc.taken(q, actions), targets, weights, mask)

        fields = (local, batch["nodes_ext"][:, :max_length], batch["self_index_ext"][:, :max_length], batch["actions"],
                  targets, batch["weight"], batch["mask"])
        params, _, _, loss_q = oc.critic_gradient_steps(critic_loss, state.critic, state.critic_opt_state,
                                                        oc.optimizer(config, config.critic_learning_rate),
                                                        fields, True)
        loss_pi, grads = jax.value_and_grad(sit.actor_loss)(state.actor, params, batch, actor, critic, config)
        actor_params, _ = oc.apply_gradients(oc.optimizer(config, config.actor_learning_rate),
                                             state.actor, state.actor_opt_state, grads)
        return params, actor_params, loss_q, loss_pi

    params, actor_params, loss_q, loss_pi = jax.jit(reference)(state)
    np.testing.assert_allclose(float(metrics["critic_loss"]), float(loss_q), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["actor_loss"]), float(loss_pi), rtol=1e-5)
    for got, want in zip(jax.tree.leaves((new_state.critic, new_state.actor)), jax.tree.leaves((params, actor_params))):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
