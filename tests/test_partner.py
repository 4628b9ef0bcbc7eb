"""Evaluation beside a partner (`teamsift.evaluate.partner`): the policy plays the requested
seat, the partner every other one, and the partner changes the outcome."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from teamsift.collect.scripted import commons_policy
from teamsift.envs import make
from teamsift.evaluate import evaluate, evaluate_paired, evaluate_seats, paired, rollout
from teamsift.nets import FunctionPolicy


def constant(action: int) -> FunctionPolicy:
    return FunctionPolicy(lambda key, obs, avail, a=action: jnp.full(obs.shape[:1], a, jnp.int32))


@pytest.fixture(scope="module")
def env():
    return make("commons", episode_length=20)


@pytest.mark.parametrize("seat", [0, 1, 2])
def test_the_policy_plays_its_seat_and_the_partner_the_others(env, seat):
    episodes = rollout(env, paired(constant(3), constant(1), seat, env.spec.num_agents), jax.random.key(0), 2)
    actions = np.asarray(episodes.actions)  # [E, T, A]
    expected = np.where(np.arange(env.spec.num_agents) == seat, 3, 1)
    assert (actions == expected).all()


def test_a_partner_that_never_acts_and_a_greedy_one_give_different_outcomes(env):
    key = jax.random.key(1)
    idle = evaluate_paired(env, commons_policy("sustainable"), constant(0), key, 4, seat=0)
    greedy = evaluate_paired(env, commons_policy("sustainable"), commons_policy("greedy"), key, 4, seat=0)
    assert idle.scores["v_total"].mean != greedy.scores["v_total"].mean
    # With itself as the partner, pairing is self-play.
    alone = evaluate(env, commons_policy("greedy"), key, 4)
    with_itself = evaluate_paired(env, commons_policy("greedy"), commons_policy("greedy"), key, 4, seat=2)
    assert alone.scores["v_total"].mean == with_itself.scores["v_total"].mean


def test_seats_are_swapped(env):
    """A greedy consumer beside idle partners: its seat's consumption moves with the seat."""
    results = evaluate_seats(env, commons_policy("greedy"), constant(0), jax.random.key(2), 2)
    assert sorted(results) == [0, 1, 2]
    for seat in results:
        episodes = rollout(env, paired(commons_policy("greedy"), constant(0), seat, 3), jax.random.key(2), 1)
        consumed = np.asarray(episodes.actions)[0].sum(axis=0)
        assert consumed[seat] > 0 and consumed.sum() == consumed[seat]


def test_bad_seats_are_refused(env):
    for seat in (-1, 3, True, 1.0):
        with pytest.raises(ValueError, match="seat: expected an agent slot in 0 … 2"):
            paired(constant(0), constant(1), seat, env.spec.num_agents)


def test_cli_eval_with_a_partner():
    from teamsift.cli.main import app

    runner = CliRunner()
    args = ["eval", "scripted:sustainable", "--env", "commons", "--episodes", "2", "--json"]
    both = runner.invoke(app, args + ["--partner", "scripted:greedy"])
    assert both.exit_code == 0, both.output
    payload = json.loads(both.stdout)
    assert payload["partner"] == "scripted:greedy" and sorted(payload["seats"]) == ["0", "1", "2"]
    one = json.loads(runner.invoke(app, args + ["--partner", "scripted:greedy", "--seat", "1"]).stdout)
    assert list(one["seats"]) == ["1"] and one["seats"]["1"] == payload["seats"]["1"]
    refused = runner.invoke(app, args + ["--seat", "0"])
    assert refused.exit_code == 2 and "only with --partner" in refused.output
    refused = runner.invoke(app, args + ["--partner", "random", "--seat", "3"])
    assert refused.exit_code == 2 and "--seat: expected a slot 0 … 2 or 'all'" in refused.output
