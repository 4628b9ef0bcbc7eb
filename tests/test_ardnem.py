"""ARDNEM (SIT Stage I), DPER (Stage II) and the Figure 3 plots.

The ranking test uses a SIT-style agent-wise imbalanced dataset whose team reward is the
sum of the agents' individual contributions (the setting reward decomposition assumes):
two agent types, composition 50%[r, m, e, r] + 50%[e, r, r, m], and an agent scores 1
when its action matches a target read off its own observation — an expert almost always,
a random agent half the time. ARDNEM must rank expert trajectories above random ones.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from teamsift.data import dper, gather_episodes, testing, to_device
from teamsift.engine import RunConfig, fit
from teamsift.value import ardnem, plots

LEVELS = ("random", "medium", "expert")
HIT_RATE = {"random": 0.5, "medium": 0.75, "expert": 0.95}
TERMS = np.asarray([["random", "medium", "expert", "random"], ["expert", "random", "random", "medium"]])

# Paper defaults except the schedule: fewer, larger steps on smaller batches (CPU test).
FAST = dataclasses.replace(ardnem.ARDNEMConfig(), learning_rate=1e-3, batch_size=8, probe_episodes=32)
FAST_RUN = RunConfig(updates=1000, log_every=10, progress=False)
TINY_RUN = RunConfig(updates=20, log_every=10, progress=False)


def train(config, dataset, key, run) -> ardnem.ARDNEMResult:
    """Stage I as a pipeline runs it: one seed's fit, then the decomposition pass."""
    return ardnem.result(config, fit(ardnem.learner(config, dataset), dataset, key, run), dataset)


def contribution_dataset(path, episodes: int = 200, length: int = 10, seed: int = 0):
    return testing.contribution_dataset(path, TERMS, HIT_RATE, episodes=episodes, length=length, width=6, seed=seed)


def auc(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    return stats.mannwhitneyu(scores[positive], scores[negative]).statistic / (positive.sum() * negative.sum())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return contribution_dataset(tmp_path_factory.mktemp("ardnem") / "contribution")


@pytest.fixture(scope="module")
def trained(dataset):
    return train(FAST, dataset, jax.random.key(0), FAST_RUN)


def test_ardnem_ranks_expert_trajectories_above_random(dataset, trained):
    e, a, n = dataset.num_episodes, dataset.num_agents, dataset.num_steps
    assert trained.reward.shape == trained.uncertainty.shape == trained.step_return.shape == (n, a)
    assert trained.priority.shape == trained.episode_return.shape == (e, a)
    levels = dataset.episodes["behaviour"]
    priority = trained.priority
    means = {level: priority[levels == level].mean() for level in LEVELS}
    assert means["expert"] > means["medium"] > means["random"]
    assert auc(priority.ravel(), (levels == "expert").ravel(), (levels == "random").ravel()) > 0.8
    # The decomposition explains the team reward (eqs. 2-4): Σ_i r̂_i tracks r_tot.
    team = np.asarray(dataset.steps["reward"])
    assert np.corrcoef(trained.reward.sum(axis=1), team)[0, 1] > 0.9
    loss = trained.logs["loss"]  # the mean of every 10 updates
    assert loss.shape == (100,) and trained.logs["member_loss"].shape == (100, 5)
    np.testing.assert_allclose(trained.logs["member_loss"].mean(axis=1), loss, rtol=1e-5)  # eq. 3 = the mean
    assert loss[-10:].mean() < 0.2 * loss[0]  # the last 100 updates against the first 10
    assert np.all(trained.uncertainty >= 0) and trained.uncertainty.mean() > 0  # 5 members disagree a little
    assert jax.tree.leaves(trained.params)[0].shape[0] == FAST.ensemble_size
    probe = trained.logs["probe"]  # at every log point
    np.testing.assert_array_equal(probe.updates, np.arange(10, 1001, 10))
    np.testing.assert_array_equal(trained.logs["updates"], probe.updates)
    assert probe.slot_mean.shape == (100, a) and set(probe.level_mean) == set(LEVELS)
    assert probe.level_mean["expert"][-1] > probe.level_mean["random"][-1]
    # The probe is the trained ensemble's r̂ on its fixed probe episodes.
    episodes = ardnem.probe_episodes(dataset, FAST.probe_episodes)
    assert len(episodes) == 32
    rows = np.concatenate([np.arange(s, s + n) for s, n in zip(dataset.starts[episodes], dataset.lengths[episodes])])
    np.testing.assert_allclose(probe.slot_mean[-1], trained.reward[rows].mean(axis=0), rtol=1e-4, atol=1e-5)
    expert = np.repeat(levels[episodes], dataset.lengths[episodes], axis=0) == "expert"
    assert probe.level_mean["expert"][-1] == pytest.approx(trained.reward[rows][expert].mean(), rel=1e-4, abs=1e-5)


def test_decision_weights_weigh_each_steps_squared_error(dataset, trained):
    """With `fit(..., weights=...)` each step's term of eq. 3 weighs the mean weight of its
    agents: ones change nothing, zero on an episode removes it from the loss."""
    shape = trained.shape
    arrays = to_device(dataset, ("obs", "actions", "reward", "state"))
    batch = gather_episodes(arrays, jnp.arange(6, dtype=jnp.int32), shape.max_length)
    member = jax.tree.map(lambda x: x[0], trained.params)
    ones = {**batch, "weight": batch["mask"][..., None] * jnp.ones(4)}
    half = {**batch, "weight": ones["weight"] * (jnp.arange(6) < 3)[:, None, None]}
    first = {k: v[:3] for k, v in batch.items()}
    plain, with_ones, with_half, only_first = jax.jit(
        lambda m: [ardnem.member_loss(m, FAST, shape, b) for b in (batch, ones, half, first)])(member)
    assert float(with_ones) == pytest.approx(float(plain), rel=1e-6)
    assert float(with_half) == pytest.approx(float(only_first), rel=1e-5)
    assert float(with_half) != pytest.approx(float(plain), rel=1e-3)  # the other episodes did count before


def test_individual_returns_follow_eq6():
    reward = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 2.0], [5.0, 1.0]], np.float32)
    starts, lengths = np.array([0, 3]), np.array([3, 2])
    step_return, first, priority = ardnem.individual_returns(reward, starts, lengths, discount=0.5)
    # Episode 0, agent 0: ĝ = [1 + .5·2 + .25·3, 2 + .5·3, 3]; episode 1: [4 + .5·5, 5].
    np.testing.assert_allclose(step_return[:, 0], [2.75, 3.5, 3.0, 6.5, 5.0])
    np.testing.assert_allclose(step_return[:, 1], [0.5, 1.0, 0.0, 2.5, 1.0])
    np.testing.assert_allclose(first, [[2.75, 0.5], [6.5, 2.5]])
    np.testing.assert_allclose(priority, [[(2.75 + 3.5 + 3.0) / 3, 0.5], [5.75, 1.75]])


@pytest.mark.parametrize("variant", [dict(attention=False), dict(ensemble_size=1), dict(mixer="monotonic")],
                         ids=["no-attention", "no-ensemble", "monotonic"])
def test_ablations_run_with_the_right_shapes(dataset, variant):
    config = dataclasses.replace(FAST, **variant)
    result = train(config, dataset, jax.random.key(1), TINY_RUN)
    n, e, a = dataset.num_steps, dataset.num_episodes, dataset.num_agents
    assert result.reward.shape == result.uncertainty.shape == (n, a) and result.priority.shape == (e, a)
    assert np.all(np.isfinite(result.reward)) and np.all(np.isfinite(result.priority))
    assert jax.tree.leaves(result.params)[0].shape[0] == config.ensemble_size
    assert result.logs["probe"].slot_mean.shape == (2, a)
    member = jax.tree.map(lambda x: x[0], result.params)
    steps = dataset.steps
    out = ardnem.apply_member(config, result.shape, member, jnp.asarray(steps["obs"][:50]),
                              jnp.asarray(steps["actions"][:50]), jnp.asarray(steps["state"][:50]))
    if config.ensemble_size == 1:
        assert np.all(result.uncertainty == 0)  # w/o ensemble: no uncertainty
        again = train(config, dataset, jax.random.key(1), TINY_RUN)  # same key, same result
        np.testing.assert_array_equal(again.reward, result.reward)
    if not config.attention or config.mixer == "monotonic":
        np.testing.assert_array_equal(np.asarray(out.weights), 1.0)
        np.testing.assert_allclose(np.asarray(out.weighted), np.asarray(out.rewards))
    if config.mixer == "monotonic":  # eq. 15: ∂r_tot/∂r_i >= 0
        mixer_params = {"params": member["params"]["mixer"]}
        state = jnp.asarray(steps["state"][:50])
        grads = jax.vmap(jax.grad(lambda r, s: ardnem.MonotonicMixer(config.mixer_hidden).apply(mixer_params, r, s)))(
            jax.random.normal(jax.random.key(2), (50, a)), state)
        assert np.all(np.asarray(grads) >= 0)
    else:  # eq. 2: the weighted rewards sum to the total
        np.testing.assert_allclose(np.asarray(out.weighted.sum(-1)), np.asarray(out.total), rtol=1e-5, atol=1e-5)


def test_dper_rescales_each_type_buffer_and_follows_eq7(dataset, trained):
    state = dper.build_dper(trained, dataset)
    assert list(state.buffers) == ["x", "y"]  # one buffer per agent type, slots (0, 1) and (2, 3)
    for name, slots in (("x", {0, 1}), ("y", {2, 3})):
        buffer = state.buffers[name]
        assert len(buffer.episode) == 2 * dataset.num_episodes and set(np.asarray(buffer.slot).tolist()) == slots
        scaled = np.asarray(buffer.scaled, np.float64)
        assert scaled.min() == pytest.approx(0.0) and scaled.max() == pytest.approx(20.0, rel=1e-6)
        raw = trained.priority[np.asarray(buffer.episode), np.asarray(buffer.slot)]
        assert stats.spearmanr(scaled, raw).statistic == pytest.approx(1.0)  # a monotone (linear) map
        expected = np.exp((scaled - scaled.max()) / 0.2)
        np.testing.assert_allclose(np.asarray(buffer.probability), expected / expected.sum(), rtol=1e-4, atol=1e-12)
    # α = 0.2 on [0, 20]: e^5 per unit of rescaled priority, so the draws collapse onto the top.
    sample = jax.jit(dper.dper_sample, static_argnums=2)
    for name, drawn in sample(state, jax.random.key(3), 4096).items():
        assert np.asarray(state.buffers[name].scaled)[np.asarray(drawn.index)].mean() > 19.0
        assert dper.effective_sizes(state)[name] < 10
    # A milder temperature keeps many trajectories but still favours experts over random ones.
    mild = dper.build_dper(trained, dataset, dper.DPERConfig(alpha=2.0))
    levels = dataset.episodes["behaviour"]
    for name, drawn in sample(mild, jax.random.key(4), 4096).items():
        buffer = mild.buffers[name]
        stored = levels[np.asarray(buffer.episode), np.asarray(buffer.slot)]
        chosen = levels[np.asarray(drawn.episode), np.asarray(drawn.slot)]
        assert dper.effective_sizes(mild)[name] > 20
        assert np.mean(chosen == "expert") > np.mean(stored == "expert")
        assert np.mean(chosen == "random") < np.mean(stored == "random") - 0.1


def pooled_chi_square_pvalue(index, probability, draws) -> float:
    """Chi-square fit of draw counts to probabilities; cells expecting < 5 draws pooled."""
    counts = np.bincount(np.asarray(index), minlength=len(probability)).astype(np.float64)
    expected = np.asarray(probability, np.float64) * draws
    small = expected < 5
    observed = np.append(counts[~small], counts[small].sum())
    expect = np.append(expected[~small], expected[small].sum())
    keep = expect > 0
    return stats.chisquare(observed[keep], expect[keep] * observed[keep].sum() / expect[keep].sum()).pvalue


@pytest.mark.parametrize("rescale", ["before_softmax", "after_softmax"])
def test_dper_samples_in_proportion_to_its_priorities(rescale):
    rng = np.random.default_rng(7)
    raw = rng.normal(size=(300, 3)) * 3.0
    config = dper.DPERConfig(alpha=5.0 if rescale == "before_softmax" else 2.0, rescale=rescale)
    state = dper.build_dper_from_priorities(raw, ("x", "y", "x"), config)
    draws = 40_000
    sample = jax.jit(dper.dper_sample, static_argnums=(2, 3))(state, jax.random.key(8), draws, False)
    for name, slots in (("x", [0, 2]), ("y", [1])):
        buffer = state.buffers[name]
        scaled = np.asarray(buffer.scaled)
        assert scaled.min() == pytest.approx(0.0) and scaled.max() == pytest.approx(20.0, rel=1e-6)
        values = raw[:, slots].reshape(-1)  # buffer order: episode-major, then slot
        if rescale == "before_softmax":
            np.testing.assert_allclose(scaled, 20 * (values - values.min()) / np.ptp(values), rtol=1e-5, atol=1e-4)
        assert pooled_chi_square_pvalue(sample[name].index, buffer.probability, draws) > 1e-3
        np.testing.assert_array_equal(np.asarray(buffer.episode)[np.asarray(sample[name].index)],
                                      np.asarray(sample[name].episode))
    assert np.all(np.isin(np.asarray(sample["x"].slot), [0, 2])) and np.all(np.asarray(sample["y"].slot) == 1)
    per_slot = dper.build_dper_from_priorities(raw, ("x", "y", "x"), dataclasses.replace(config, group_by="slot"))
    assert list(per_slot.buffers) == ["slot0", "slot1", "slot2"]


def test_bad_input_names_the_field(dataset, trained):
    with pytest.raises(ValueError, match="mixer"):
        ardnem.ARDNEMConfig(mixer="qmix")
    with pytest.raises(ValueError, match="ensemble_size"):
        ardnem.ARDNEMConfig(ensemble_size=0)
    with pytest.raises(ValueError, match="alpha"):
        dper.DPERConfig(alpha=0.0)
    with pytest.raises(ValueError, match="priority_range"):
        dper.DPERConfig(priority_range=(5.0, 1.0))
    with pytest.raises(ValueError, match=r"priority: expected shape \[E=200, A=4\]"):
        dper.build_dper(dataclasses.replace(trained, priority=trained.priority[:10]), dataset)
    with pytest.raises(ValueError, match="finite"):
        dper.build_dper_from_priorities(np.array([[np.nan, 1.0]]), ("x", "x"))
    with pytest.raises(ValueError, match=r"stage1.priority: expected shape \[200, 4\]"):
        ardnem.check_result(dataclasses.replace(trained, priority=trained.priority[:10]), dataset)
    ardnem.check_result(trained, dataset)


def test_figure3_plots_are_written(dataset, trained, tmp_path):
    state = dper.build_dper(trained, dataset)
    paths = plots.plot_figure3(trained, state, tmp_path / "fig3", dataset)
    assert [p.name for p in paths] == ["ardnem_decomposition.png", "dper_priorities.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_saved_result_round_trips_and_decomposes_the_same(dataset, trained, tmp_path):
    """A Stage I result saved with `save_result` (msgpack) loads back equal, and its
    restored ensemble gives the same decomposition as the one that was trained."""
    path = ardnem.save_result(trained, tmp_path / "stage1.msgpack")
    loaded = ardnem.load_result(path)
    assert loaded.config == trained.config and loaded.shape == trained.shape
    for name in ("reward", "uncertainty", "step_return", "episode_return", "priority"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(trained, name))
    np.testing.assert_array_equal(loaded.logs["probe"].slot_mean, trained.logs["probe"].slot_mean)
    again = ardnem.decompose(loaded.config, loaded.shape, loaded.params, dataset)
    np.testing.assert_allclose(again["reward"], trained.reward, rtol=1e-6, atol=1e-6)
    # A result saved before the engine (format 1: schedule fields in the config, one loss
    # per update) still loads: Stage I results are reused from disk.
    from flax import serialization

    payload = serialization.msgpack_restore(path.read_bytes())
    payload["format"] = "teamsift-ardnem-result-1"
    payload["config"] = json.dumps({**json.loads(payload["config"]), "num_updates": 7, "log_every": 7})
    payload["logs"] = {"loss": np.arange(7.0), "member_loss": np.ones((7, 5)), "chunk_seconds": np.ones(1),
                       "probe_updates": np.asarray([7]), "probe_slot_mean": np.ones((1, 4)), "probe_level_mean": {}}
    (tmp_path / "old.msgpack").write_bytes(serialization.msgpack_serialize(payload))
    old = ardnem.load_result(tmp_path / "old.msgpack")
    assert old.config == trained.config
    np.testing.assert_array_equal(old.logs["updates"], np.arange(1, 8))
    np.testing.assert_array_equal(old.priority, trained.priority)
    (tmp_path / "other.msgpack").write_bytes(b"\x93\x01\x02\x03")
    with pytest.raises(ValueError, match="other.msgpack: field 'format'"):
        ardnem.load_result(tmp_path / "other.msgpack")
