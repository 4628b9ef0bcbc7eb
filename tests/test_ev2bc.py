"""EV2BC and group-BC: selection rules, and the paper's claim on the Tragedy of the Commons."""

import dataclasses

import jax
import numpy as np
import pytest

from teamsift.algos import bc, ev2bc, group_bc
from teamsift.collect.datasets import generate_population, scripted_population
from teamsift.collect.scripted import COMMONS_TYPES
from teamsift.data import load_dataset
from teamsift.envs import make
from teamsift.evaluate import evaluate
from teamsift.value import selection

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
    weights = group_bc.decision_weights(group_bc.GroupBCConfig(score="v_final", fraction=0.25), dataset)
    per_episode = weights[dataset.starts]  # [E, A]
    assert np.all(per_episode == per_episode[:, :1])  # a whole episode or nothing
    kept = per_episode[:, 0] > 0
    assert kept.sum() == round(0.25 * dataset.num_episodes)
    assert dataset.score("v_final")[kept].min() >= dataset.score("v_final")[~kept].max()


def test_ev2bc_keeps_sustainable_consumers_and_drops_greedy_ones(commons_population):
    _, dataset = commons_population
    config = ev2bc.EV2BCConfig(score="v_final")
    values = ev2bc.value_individuals(config, dataset, jax.random.key(0))
    weights = ev2bc.decision_weights(config, dataset, values)[dataset.starts]  # [E, A]
    behaviour = dataset.episodes["behaviour"]
    assert np.all(weights[behaviour == "sustainable"] == 1.0)
    assert np.all(weights[behaviour == "greedy"] == 0.0)


def test_ev2bc_beats_bc_on_the_commons(commons_population):
    """Select to Perfect, Section 5: imitating the high-EV individuals leaves far more of the
    common resource than imitating everyone."""
    env, dataset = commons_population
    bc_config = dataclasses.replace(bc.BCConfig(), num_updates=1500, log_every=1500)
    key = jax.random.key(1)
    bc_policy, _ = bc.train(bc_config, dataset, key, progress=False)
    ev_policy, logs = ev2bc.train(ev2bc.EV2BCConfig(bc=bc_config, score="v_final"), dataset, key, progress=False)
    assert 0.0 < logs["kept_fraction"] < 1.0
    v_bc = evaluate(env, bc_policy, jax.random.key(2), 200).scores["v_final"].mean
    v_ev = evaluate(env, ev_policy, jax.random.key(2), 200).scores["v_final"].mean
    assert v_bc < 0.5 * v_ev


def test_ev2bc_rejects_a_rule_that_keeps_nobody(commons_population):
    _, dataset = commons_population
    config = ev2bc.EV2BCConfig(score="v_final", threshold=1e9)
    with pytest.raises(ValueError, match="no individual"):
        ev2bc.decision_weights(config, dataset, {"ind00": 1.0})


def test_per_slot_rule_keeps_data_for_every_role():
    """Asymmetric roles: every slot-1 player is worse than every slot-0 player, so the global
    threshold keeps slot 0 only; per_slot keeps the above-average players of each role."""
    agent_ids = np.array([["a0", "b0"], ["a1", "b1"], ["a2", "b2"]])
    values = {"a0": 5.0, "a1": 3.0, "a2": 1.0, "b0": -1.0, "b1": -2.0, "b2": -6.0}
    config = ev2bc.EV2BCConfig()
    global_weights = selection.slot_weights(agent_ids, ev2bc.rule_weights(config, values))
    np.testing.assert_array_equal(global_weights, [[1, 0], [1, 0], [1, 0]])
    role = ev2bc.role_weights(dataclasses.replace(config, per_slot=True), agent_ids, values)
    np.testing.assert_array_equal(role, [[1, 1], [0, 1], [0, 0]])  # slot means 3 and -3
    tied = ev2bc.role_weights(config, agent_ids, dict(values, b0=0.0, b1=0.0, b2=0.0))
    np.testing.assert_array_equal(tied[:, 1], [1, 1, 1])  # nothing to select on: keep the role
