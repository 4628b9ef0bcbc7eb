"""EV2BC and group-BC (behaviour cloning on valuation weights): selection rules, any
valuation driving any learner, and the paper's claim on the Tragedy of the Commons."""

import dataclasses

import jax
import numpy as np
import pytest

from teamsift.algos import pipeline
from teamsift.collect.datasets import generate_population, scripted_population
from teamsift.collect.scripted import COMMONS_TYPES
from teamsift.data import load_dataset
from teamsift.engine import RunConfig
from teamsift.envs import make
from teamsift.evaluate import evaluate
from teamsift.value import selection
from teamsift.value.weights import SelectionConfig, role_weights, rule_weights, valuation_weights

# --- selection rules ------------------------------------------------------------------------


def test_threshold_keeps_individuals_above_it():
    weights = selection.individual_weights(np.array(["a", "b", "c"]), np.array([-1.0, 0.5, 0.0]))
    assert weights.tolist() == [0.0, 1.0, 0.0]


def test_top_fraction_keeps_the_best():
    weights = selection.individual_weights(np.arange(4), np.array([3.0, -1.0, 5.0, 0.0]), rule="top_fraction",
                                           fraction=0.5)
    assert weights.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_weighted_rule_orders_weights_like_values_with_mean_one():
    values = np.array([-2.0, 0.0, 1.0])
    weights = selection.individual_weights(np.arange(3), values, rule="weighted", temperature=0.5)
    assert np.all(np.diff(weights) > 0)
    assert weights.mean() == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(rule="nope"), "rule"),
    (dict(rule="top_fraction", fraction=0.0), "fraction"),
    (dict(rule="weighted", temperature=0.0), "temperature"),
])
def test_bad_selection_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        selection.individual_weights(np.arange(2), np.array([0.0, 1.0]), **kwargs)


def test_non_finite_values_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        selection.individual_weights(np.arange(2), np.array([np.nan, 1.0]))


def test_slot_weights_follow_the_individual_in_each_slot():
    agent_ids = np.array([["a", "b"], ["b", "c"]])
    assert selection.slot_weights(agent_ids, {"a": 1.0, "c": 0.5}).tolist() == [[1.0, 0.0], [0.0, 0.5]]


def test_top_episodes_keeps_the_requested_fraction():
    kept = selection.top_episodes(np.array([1.0, 5.0, 3.0, 2.0]), 0.5)
    assert kept.tolist() == [0.0, 1.0, 1.0, 0.0]


# --- on commons data --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def commons_population(tmp_path_factory):
    """12 scripted consumers (3 of each type) in groups of 3, each in 30 episodes."""
    env = make("commons")
    bank, policy, levels = scripted_population(env, 12, COMMONS_TYPES)
    path = generate_population(env, bank, policy, levels, jax.random.key(0),
                               tmp_path_factory.mktemp("commons") / "pop", appearances=30)
    return env, load_dataset(path)


def test_group_bc_weights_whole_top_episodes(commons_population):
    _, dataset = commons_population
    weights = valuation_weights("group", dataset, jax.random.key(0), SelectionConfig(score="v_final", fraction=0.25))
    per_episode = weights.weights  # [E, A]
    assert np.all(per_episode == per_episode[:, :1])  # a whole episode or nothing
    kept = per_episode[:, 0] > 0
    assert kept.sum() == round(0.25 * dataset.num_episodes)
    assert dataset.score("v_final")[kept].min() >= dataset.score("v_final")[~kept].max()


def test_ev2bc_keeps_sustainable_consumers_and_drops_greedy_ones(commons_population):
    _, dataset = commons_population
    weights = valuation_weights("ev", dataset, jax.random.key(0), SelectionConfig(score="v_final"))
    behaviour = dataset.episodes["behaviour"]
    assert np.all(weights.weights[behaviour == "sustainable"] == 1.0)
    assert np.all(weights.weights[behaviour == "greedy"] == 0.0)
    assert set(weights.values) == set(np.unique(dataset.episodes["agent_ids"]))


def test_ev2bc_beats_bc_on_the_commons(commons_population):
    """Select to Perfect, Section 5: imitating the high-EV individuals leaves far more of the
    common resource than imitating everyone."""
    env, dataset = commons_population
    run = RunConfig(updates=1500, log_every=1500, progress=False)
    key = jax.random.key(1)
    bc_policy = pipeline.train("bc", dataset, key, run).policy()
    ev2bc = pipeline.train("ev2bc", dataset, key, run, overrides={"selection.score": "v_final"})
    assert 0.0 < ev2bc.weights.kept_fraction < 1.0 and ev2bc.spec.weights == "ev"
    v_bc = evaluate(env, bc_policy, jax.random.key(2), 200).scores["v_final"].mean
    v_ev = evaluate(env, ev2bc.policy(), jax.random.key(2), 200).scores["v_final"].mean
    assert v_bc < 0.5 * v_ev


def test_any_valuation_drives_any_learner(commons_population, tmp_path):
    """`train --algo icq --weights ev`: the EV weights reach ICQ's losses as per-decision
    weights (the dropped individuals' decisions weigh 0), and they change what ICQ learns;
    `--sampler dper` runs Stage I first and draws ICQ's episodes by its priorities."""
    _, dataset = commons_population
    run = RunConfig(updates=3, log_every=1, progress=False)
    key = jax.random.key(3)
    plain = pipeline.train("icq", dataset, key, run)
    weighted = pipeline.train("icq", dataset, key, run, weights="ev", overrides={"selection.score": "v_final"})
    expected = valuation_weights("ev", dataset, key, SelectionConfig(score="v_final")).weights  # EV needs no key
    np.testing.assert_array_equal(np.asarray(weighted.fit.arrays["weight"]), np.repeat(expected, dataset.lengths, 0))
    assert not np.allclose(weighted.fit.final("actor_loss"), plain.fit.final("actor_loss"))
    prioritised = pipeline.train("icq", dataset, key, dataclasses.replace(run, run_dir=str(tmp_path / "run")),
                                 sampler="dper", stage_updates={"ardnem": 2})
    assert prioritised.stage1.priority.shape == (dataset.num_episodes, 3)
    assert (tmp_path / "run" / "stages" / "ardnem" / "result.msgpack").is_file()
    assert (tmp_path / "run" / "config.json").is_file() and prioritised.spec.sampler == "dper"


def test_ev2bc_rejects_a_rule_that_keeps_nobody(commons_population):
    _, dataset = commons_population
    with pytest.raises(ValueError, match="no decision passes the threshold rule"):
        valuation_weights("ev", dataset, jax.random.key(0), SelectionConfig(score="v_final", threshold=1e9))


def test_per_slot_rule_keeps_data_for_every_role():
    """Asymmetric roles: every slot-1 player is worse than every slot-0 player, so the global
    threshold keeps slot 0 only; per_slot keeps the above-average players of each role."""
    agent_ids = np.array([["a0", "b0"], ["a1", "b1"], ["a2", "b2"]])
    values = {"a0": 5.0, "a1": 3.0, "a2": 1.0, "b0": -1.0, "b1": -2.0, "b2": -6.0}
    config = SelectionConfig()
    global_weights = selection.slot_weights(agent_ids, rule_weights(config, values))
    np.testing.assert_array_equal(global_weights, [[1, 0], [1, 0], [1, 0]])
    role = role_weights(dataclasses.replace(config, per_slot=True), agent_ids, values)
    np.testing.assert_array_equal(role, [[1, 1], [0, 1], [0, 0]])  # slot means 3 and -3
    tied = role_weights(config, agent_ids, dict(values, b0=0.0, b1=0.0, b2=0.0))
    np.testing.assert_array_equal(tied[:, 1], [1, 1, 1])  # nothing to select on: keep the role
