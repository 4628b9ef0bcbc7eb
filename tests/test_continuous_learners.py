"""Continuous-action offline learners (TD3+BC, OMAR, MADDPG+CQL) on the training engine:
each improves over its initial policy on an easy dataset, honours per-decision weights,
reports PJAP's joint-action distance of the items it drew, and PJAP — now a sampler —
moves its priorities towards the items close to the learner's policy; PJAP's priorities
follow the formula; the polynomial-game study (`teamsift.bench.poly`) runs on the engine.

Easy dataset: one-step twin-peaks data around (0.5, 0.5) with spread 0.1 (mean reward
0.46; optimum 0.5625 at (0.61, 0.61)).
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift.algos import maddpg_cql, omar, td3bc
from teamsift.algos.continuous import actor_config, agent_critic_config, transition_batch
from teamsift.bench import poly
from teamsift.bench.poly import poly_dataset
from teamsift.data import PJAP, gather_windows, pjap
from teamsift.engine import RunConfig, fit
from teamsift.envs import make
from teamsift.evaluate import evaluate
from teamsift.nets import apply_step, init_params
from teamsift.nets.critic import init_agent_critic, init_central_critic
from teamsift.nets.normalization import RunningStats

CONTINUOUS = {
    # The one-step games observe a constant, which the normalisation maps to 0 (TD3+BC's λ
    # then meets a near-zero Q early and the actor runs off the data): train on raw obs.
    "td3bc": (td3bc, td3bc.TD3BCConfig(normalize_obs=False), 1000),
    "omar": (omar, omar.OMARConfig(batch_size=128), 300),
    # methods.md's 256-256 critics: the default 128-128 (PJAP's reference code) gains 0.05, not 0.1, in
    # 1,000 updates here (0.447 → 0.498); at the polynomial study's 6,000 updates both sizes end alike.
    "maddpg_cql": (maddpg_cql, maddpg_cql.MADDPGCQLConfig(recurrent=False, policy_hidden=(64, 64), seq_len=1,
                                                          sample_period=1, critic_hidden=(256, 256)), 1000),
}
# Small networks for the tests of the machinery (weights, proximity, PJAP).
SMALL = {
    "td3bc": td3bc.TD3BCConfig(normalize_obs=False, actor_hidden=(16,), critic_hidden=(16,), batch_size=8),
    "omar": omar.OMARConfig(actor_hidden=(16,), critic_hidden=(16,), batch_size=8, cql_samples=3, cem_samples=4,
                            cem_elites=2, cem_iterations=2),
    "maddpg_cql": maddpg_cql.MADDPGCQLConfig(recurrent=False, policy_hidden=(16,), critic_hidden=(16,), batch_size=8,
                                             seq_len=1, sample_period=1, cql_samples=3),
}
MODULES = {"td3bc": td3bc, "omar": omar, "maddpg_cql": maddpg_cql}


@pytest.fixture(scope="module")
def twin_peaks(tmp_path_factory):
    dataset = poly_dataset("poly_twin_peaks", (0.5, 0.5), 0.1, 500, jax.random.key(0),
                           tmp_path_factory.mktemp("continuous") / "poly")
    return make("poly_twin_peaks"), dataset


@pytest.fixture(scope="module")
def broad_twin_peaks(tmp_path_factory):
    """Spread 0.5: joint actions far apart, so that proximity tells items apart."""
    return poly_dataset("poly_twin_peaks", (0.5, 0.5), 0.5, 200, jax.random.key(0),
                        tmp_path_factory.mktemp("continuous") / "poly-broad")


def run(updates, seeds=1, log_every=None):
    return RunConfig(updates=updates, seeds=seeds, log_every=log_every or max(1, updates // 2), progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONTINUOUS))
def test_continuous_learner_improves_on_its_initial_policy(twin_peaks, name):
    env, dataset = twin_peaks
    module, config, updates = CONTINUOUS[name]
    learner = module.learner(config, dataset)
    trained = fit(learner, dataset, jax.random.key(1), run(updates))
    untrained = fit(learner, dataset, jax.random.key(1), run(1))  # one update from the same initialisation
    before = evaluate(env, untrained.policy(), jax.random.key(2), 20).scores["return"].mean
    after = evaluate(env, trained.policy(), jax.random.key(2), 20).scores["return"].mean
    assert after > 0.45 and after > before + 0.1, (before, after)
    assert trained.history["critic_loss"].shape == (1, 2) and np.all(np.isfinite(trained.final()))
    assert set(module.METRICS) <= set(trained.history)


def test_td3bc_normalises_its_batches_and_folds_the_statistics_into_its_policy(twin_peaks):
    """The learner trains on (o − μ_D)/(σ_D + 1e-3) (the data stays raw; each batch is
    normalised); the policy it returns acts on raw o."""
    _, dataset = twin_peaks
    learner = td3bc.learner(td3bc.TD3BCConfig(actor_hidden=(16,), critic_hidden=(16,)), dataset)
    arrays = learner.prepare(dataset, {})
    raw = np.asarray(dataset.steps["obs"])  # the games' constant observation
    np.testing.assert_allclose(np.asarray(arrays["obs_stats"].std()), raw.reshape(-1, 1).std(0) + 1e-3, rtol=1e-4)
    np.testing.assert_array_equal(np.asarray(arrays["obs"]), raw)
    batch = td3bc.normalized_batch(arrays, jnp.arange(8))
    np.testing.assert_allclose(np.asarray(batch["obs"]), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(batch["next_obs"]), 0.0, atol=1e-6)
    state = jax.jit(learner.init)(jax.random.key(0), arrays)
    stats = RunningStats(jnp.asarray([0.3]), jnp.asarray([4.0]), jnp.float32(10))  # σ = 2: a well-conditioned fold
    policy = learner.policy(state, {**arrays, "obs_stats": stats})
    obs = jax.random.normal(jax.random.key(1), (5, 2, 1))
    np.testing.assert_allclose(np.asarray(apply_step(policy.config, policy.params, obs, None)[0]),
                               np.asarray(apply_step(policy.config, state.actor, stats.normalize(obs), None)[0]),
                               atol=1e-5)
    unnormalised = td3bc.learner(td3bc.TD3BCConfig(actor_hidden=(16,), critic_hidden=(16,), normalize_obs=False),
                                 dataset)
    assert "obs_stats" not in unnormalised.prepare(dataset, {})


# --- per-decision weights -------------------------------------------------------------------------

def _split(batch, keep):
    return {k: v[keep] for k, v in batch.items()}


def _weighted(batch, weight):
    return {**batch, "weight": weight}


def _per_agent_cases(name, dataset, keys, rows):
    module, config = MODULES[name], SMALL[name]
    spec = dataset.spec
    arrays = module.learner(config, dataset).prepare(dataset, {})
    net, critic_cfg = actor_config(spec, config.actor_hidden), agent_critic_config(config, spec)
    actor, critic = jax.jit(lambda k: (init_params(net, k[0]), init_agent_critic(critic_cfg, k[1])))(keys)
    batch = transition_batch(arrays, rows)
    batch = {k: batch[k] for k in ("obs", "actions")}
    targets = jax.random.normal(keys[2], (8, spec.num_agents))
    if name == "td3bc":
        return [("td3bc critic", lambda b: td3bc.critic_loss(critic, critic_cfg, b, targets[b["keep"]]), batch),
                ("td3bc actor", lambda b: td3bc.actor_loss(actor, net, critic, critic_cfg, b, 2.5)[0], batch)]
    sampled = jax.random.uniform(keys[3], (8, 9, spec.num_agents, spec.num_actions), minval=-1, maxval=1)
    log_density = jax.random.normal(keys[4], (8, 9, spec.num_agents))
    rectified = jax.random.uniform(keys[5], (8, spec.num_agents, spec.num_actions), minval=-1, maxval=1)
    return [("omar critic", lambda b: omar.critic_loss(critic, critic_cfg, b, targets[b["keep"]], sampled[b["keep"]],
                                                       log_density[b["keep"]], config)[0], batch),
            ("omar actor", lambda b: omar.actor_loss(actor, net, critic, critic_cfg, b["obs"], rectified[b["keep"]],
                                                     config, b.get("weight"))[0], batch)]


def _central_cases(dataset, keys, rows):
    config = SMALL["maddpg_cql"]
    spec = dataset.spec
    arrays = maddpg_cql.learner(config, dataset).prepare(dataset, {})
    net, critic_cfg = maddpg_cql.policy_config(config, spec), maddpg_cql.critic_config(config, spec)
    policy, critic = jax.jit(lambda k: (init_params(net, k[0]), init_central_critic(critic_cfg, k[1])))(keys)
    batch = gather_windows(arrays, rows, 2)  # one-step episodes: the second step is padding
    batch = {k: batch[k] for k in ("obs", "state", "actions", "mask")}
    targets = jax.random.normal(keys[2], (8, 2))
    sampled = jax.random.uniform(keys[3], (8, 2, 9, spec.num_agents, spec.num_actions), minval=-1, maxval=1)
    log_density = jax.random.normal(keys[4], (8, 2, 9))
    return [("maddpg critic", lambda b: maddpg_cql.critic_loss(critic, critic_cfg, b, targets[b["keep"]],
                                                               sampled[b["keep"]], log_density[b["keep"]], config)[0],
             batch),
            ("maddpg policy", lambda b: maddpg_cql.policy_loss(policy, net, critic, critic_cfg, b, config)[0], batch)]


def _loss_cases(dataset):
    """(name, loss(batch) → scalar, a batch [8, ...] without weight) for every weighted loss."""
    keys = jax.random.split(jax.random.key(3), 6)
    rows = jnp.arange(0, 400, 50, dtype=jnp.int32)  # 8 rows
    return (_per_agent_cases("td3bc", dataset, keys, rows) + _per_agent_cases("omar", dataset, keys, rows)
            + _central_cases(dataset, keys, rows))


@pytest.mark.slow
def test_weighted_losses_leave_out_zero_weight_decisions(twin_peaks):
    """Every loss with `batch["weight"]` is the loss of the decisions that carry weight: zero
    weight on half the batch gives the loss of the other half, equal weights the plain loss
    (joint terms of MADDPG+CQL's centralised critic by the mean weight over agents)."""
    _, dataset = twin_peaks
    for name, loss, batch in _loss_cases(dataset):
        shape = batch["actions"].shape[:-1]  # [B, N] or [B, T, N]
        full, second_half = {**batch, "keep": np.arange(8)}, {**_split(batch, slice(4, None)), "keep": np.arange(4, 8)}

        @jax.jit
        def losses(full, second_half):  # one program per loss
            return (loss(full), loss(_weighted(full, jnp.full(shape, 0.7))),
                    loss(_weighted(full, jnp.zeros(shape).at[4:].set(1.0))), loss(second_half))

        plain, uniform, weighted, second = map(float, losses(full, second_half))
        assert uniform == pytest.approx(plain, rel=1e-5, abs=1e-6), name
        assert weighted == pytest.approx(second, rel=1e-5, abs=1e-6), name
        assert weighted != pytest.approx(plain, rel=1e-3), name


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SMALL))
def test_feedback_is_the_target_policys_distance_to_the_drawn_items(twin_peaks, name):
    """d_τ of PJAP's eq. (1): mean |μ̄(o) − a^D| over agents and action dimensions (one-step
    items), from the target actor before the update, for exactly the items it was given."""
    _, dataset = twin_peaks
    learner = MODULES[name].learner(SMALL[name], dataset)
    assert learner.proximity
    arrays = learner.prepare(dataset, {})
    state = jax.jit(learner.init)(jax.random.key(0), arrays)
    field = "policy_target" if name == "maddpg_cql" else "actor_target"
    target = jax.tree.map(lambda x: x + 0.05, getattr(state, field))  # a target unlike the online actor
    state = state._replace(**{field: target})
    items = jnp.asarray([3, 17, 17, 42, 99, 150, 230, 499], jnp.int32)
    _, metrics, feedback = jax.jit(lambda s: learner.update(s, jax.random.key(1), arrays, items))(state)
    rows = arrays["window_start"][items] if name == "maddpg_cql" else items
    net = learner.policy(state, arrays).config
    obs = jnp.asarray(dataset.steps["obs"])[rows]
    expected = np.abs(np.asarray(apply_step(net, target, obs, None)[0])
                      - np.clip(np.asarray(dataset.steps["actions"])[rows], -1, 1)).mean(axis=(1, 2))
    np.testing.assert_array_equal(np.asarray(feedback.items), np.asarray(items))
    np.testing.assert_allclose(np.asarray(feedback.distance), expected, rtol=1e-5, atol=1e-6)
    assert set(metrics) == set(MODULES[name].METRICS)
    assert all(np.isfinite(float(value)) for value in metrics.values())  # TD3+BC: step 0 updates the actor


def test_pjap_priority_matches_the_formula():
    """ρ = clip(exp(−(κ·min(1, step/K)·d)²), ρ_min, 1), d = mean over steps of ‖μ̄(o) − a^D‖₁/(N·A)."""
    config = pjap.PJAPConfig()
    key_a, key_b = jax.random.split(jax.random.key(0))
    target = jax.random.uniform(key_a, (4, 20, 3, 2), minval=-1, maxval=1)  # [B, T, N, A]
    data = jax.random.uniform(key_b, (4, 20, 3, 2), minval=-1, maxval=1)
    mask = jnp.ones((4, 20), bool)
    distance = np.asarray(pjap.sequence_distance(target, data, mask))
    expected_d = np.abs(np.asarray(target) - np.asarray(data)).sum(axis=(2, 3)).mean(axis=1) / 6
    np.testing.assert_allclose(distance, expected_d, rtol=1e-5)
    for step in (0, config.ramp_steps // 3, config.ramp_steps, 10 * config.ramp_steps):
        rho = np.asarray(pjap.pjap_priority(jnp.asarray(distance), step, config))
        scale = config.steepness * min(1.0, step / config.ramp_steps)
        expected = np.clip(np.exp(-((scale * expected_d) ** 2)), config.min_priority, 1.0)
        np.testing.assert_allclose(rho, expected, rtol=1e-5)


@pytest.mark.slow
def test_pjap_drives_td3bc_towards_the_items_near_its_policy_and_weights_reach_its_critics(broad_twin_peaks):
    """`train --algo td3bc --sampler pjap`: the sampler's probabilities leave uniform, and
    the transitions whose joint action lies near the target actor's get the mass. The same
    run weighs agent 1's decisions 0 (`fit(..., weights)`): its critic gets no gradient, so
    Adam leaves it where it started, while agent 0's critic learns."""
    dataset = broad_twin_peaks
    config = td3bc.TD3BCConfig(normalize_obs=False, actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=64)
    learner = td3bc.learner(config, dataset)
    weights = np.zeros((dataset.num_episodes, dataset.num_agents), np.float32)
    weights[:, 0] = 1.0
    result = fit(learner, dataset, jax.random.key(1), run(200), sampler=PJAP(pjap.PJAPConfig(ramp_steps=0)),
                 weights=weights)
    assert result.history["priority"].shape == (1, 2) and np.all(result.history["priority"] < 1.0)
    probability = np.asarray(pjap.pjap_probabilities(jax.tree.map(lambda x: x[0], result.sampler_state),
                                                     dataset.num_steps))
    state = result.seed_state(0)
    net = result.policy().config
    target = np.asarray(apply_step(net, state.actor_target, jnp.ones((2, 1)), None)[0])  # constant observation
    distance = np.abs(np.clip(np.asarray(dataset.steps["actions"]), -1, 1) - target[None]).mean(axis=(1, 2))
    near, far = distance <= np.quantile(distance, 0.25), distance >= np.quantile(distance, 0.75)
    assert probability.max() > 5.0 / dataset.num_steps  # far from uniform
    assert probability[near].sum() > 0.6 and probability[far].sum() < 0.05, (probability[near].sum(),
                                                                            probability[far].sum())
    ranks = lambda x: np.argsort(np.argsort(x))
    assert np.corrcoef(ranks(distance), ranks(probability))[0, 1] < -0.6

    start = fit(learner, dataset, jax.random.key(1), run(0)).state.critic  # the initialisation
    for before, after in zip(jax.tree.leaves(start), jax.tree.leaves(result.state.critic)):  # [seed, agent, ...]
        np.testing.assert_array_equal(np.asarray(after[:, 1]), np.asarray(before[:, 1]))
        assert not np.array_equal(np.asarray(after[:, 0]), np.asarray(before[:, 0]))


@pytest.mark.slow
def test_poly_study_runs_maddpg_and_pjap_from_the_initial_joint_policy(tmp_path):
    """The polynomial-game study on the engine: MADDPG starts every seed from (−0.5, 0.5)
    (`start`), and its probe traces the joint action at every log point."""
    results = poly.study_runs(quick=True, num_updates=40, num_seeds=2, episodes=40, progress=False)
    assert [r["method"] for r in results] == ["MADDPG", "MADDPG+PJAP"]
    for r in results:
        trajectory = np.asarray(r["trajectory"])
        assert trajectory.shape == (2, 41, 2)  # the start and 40 log points (log_every = 1)
        np.testing.assert_allclose(trajectory[:, 0], [[-0.5, 0.5]] * 2, atol=0.02)
        assert not np.allclose(trajectory[:, -1], trajectory[:, 0])
        np.testing.assert_allclose(r["final_joint_action"], trajectory[:, -1])
        expected = poly.twin_peaks_reward(trajectory[:, -1, 0], trajectory[:, -1, 1])
        np.testing.assert_allclose(r["final_reward"], expected, rtol=1e-5)
        assert 0.0 < r["mean_distance_last_10pct"] < 2.0
    stem = poly.write_study(results, tmp_path, command="test", num_updates=40, num_seeds=2, episodes=40,
                            cql_weight=0.0)
    assert stem.with_suffix(".png").stat().st_size > 0
    assert len(json.loads(stem.with_suffix(".json").read_text())["results"]) == 2


def test_brud_settles_where_the_data_makes_each_agent_best_respond(tmp_path):
    """PJAP's claim that stronger interaction makes BRUD's data requirement stricter: from
    the same data around (0.6, 0.6), MADDPG (BRUD) reaches the coupled game's optimum (1, 1)
    at coupling s = 0.5 and stops short at s = 2, each time where an agent best-responding to
    its partner's data actions with a perfect critic settles (`brud_fixed_point`: x* = 1 and
    x* ≈ 0.6·(1 + 1/4) = 0.75)."""
    finals = {}
    for s in (0.5, 2.0):
        dataset = poly_dataset("poly_coupled", (0.6, 0.6), 0.2, 200, jax.random.key(0), tmp_path / f"s{s}",
                               coupling=s)
        actions = np.asarray(dataset.steps["actions"], np.float64).reshape(-1, 2)
        fixed_point = [poly.brud_fixed_point("poly_coupled", actions[:, 1], s),
                       poly.brud_fixed_point("poly_coupled", actions[:, 0], s)]
        out = poly.run_method("poly_coupled", dataset, "MADDPG", jax.random.key(1), num_updates=300, num_seeds=1,
                              coupling=s)
        np.testing.assert_allclose(out["trajectory"][0, -1], fixed_point, atol=0.05)
        finals[s] = float(out["final_reward"][0])
    assert finals[0.5] > 0.95 and finals[2.0] < 0.6
    assert poly.brud_fixed_point("poly_decoupled", np.full(5, -0.9)) == 1.0  # the data does not matter
    with pytest.raises(ValueError, match="only poly_coupled has a coupling strength"):
        poly.reward_fn("poly_sign", 2.0)


def test_td3bc_delayed_actor_update_is_a_branch_under_the_seed_vmap(twin_peaks):
    """TD3's delayed actor update does no work on the skipped updates when seeds are vmapped:
    the engine's update number is one scalar for all seeds, so `lax.cond` stays a branch
    (a per-seed counter would turn it into a select that computes both sides); and the
    engine's runs equal those that branch on the state's own counter."""
    _, dataset = twin_peaks
    learner = td3bc.learner(SMALL["td3bc"], dataset)
    assert learner.takes_step
    arrays = learner.prepare(dataset, {})
    states = jax.vmap(lambda k: learner.init(k, arrays))(jax.random.split(jax.random.key(0), 2))
    items = jnp.zeros((2, 8), jnp.int32)
    keys = jax.random.split(jax.random.key(1), 2)

    def vmapped(step):
        return jax.vmap(lambda s, k, i: learner.update(s, k, arrays, i, step), in_axes=(0, 0, 0))

    jaxpr = str(jax.make_jaxpr(lambda s, k, i: vmapped(jnp.int32(1))(s, k, i))(states, keys, items))
    assert "cond[" in jaxpr
    per_seed = str(jax.make_jaxpr(lambda s, k, i: vmapped(None)(s, k, i))(states, keys, items))
    assert "cond[" not in per_seed  # what the engine avoids: both branches, then a select

    ours_program = jax.jit(lambda s, k, i, step: vmapped(step)(s, k, i))
    counter_program = jax.jit(vmapped(None))
    for step in (0, 1):  # the actor's update, then a skipped one
        at = states._replace(step=jnp.full(2, step, jnp.int32))
        ours, counter = ours_program(at, keys, items, jnp.int32(step)), counter_program(at, keys, items)
        for a, b in zip(jax.tree.leaves(ours[:2]), jax.tree.leaves(counter[:2])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
