"""`teamsift.bench.seeds`: every seed's policy evaluated, and the summary over seeds."""

import math

import jax
import pytest

from teamsift.bench.seeds import evaluate_seeds, over_seeds
from teamsift.collect import behaviours
from teamsift.envs import make


def test_evaluate_seeds_scores_each_seed_and_names_unknown_scores():
    env = make("commons")
    policies = [behaviours.resolve(f"scripted:{kind}", env)[0] for kind in ("sustainable", "greedy")]
    scores = evaluate_seeds(env, policies, jax.random.key(0), 3, ("v_final", "return"))
    assert set(scores) == {"v_final", "return"} and all(len(v) == 2 for v in scores.values())
    assert scores["v_final"][0] > scores["v_final"][1]  # sustainable consumers leave more than greedy ones
    assert set(evaluate_seeds(env, policies[:1], jax.random.key(0), 2)) >= {"return", "v_final", "v_min", "v_total"}
    with pytest.raises(ValueError, match="scores: 'win' is not a score of commons"):
        evaluate_seeds(env, policies, jax.random.key(0), 2, ("win",))


def test_over_seeds_is_mean_std_and_normal_interval():
    summary = over_seeds([1.0, 2.0, 3.0])
    assert summary["mean"] == 2.0 and summary["std"] == 1.0 and summary["per_seed"] == [1.0, 2.0, 3.0]
    half = 1.959963984540054 / math.sqrt(3)
    assert summary["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
