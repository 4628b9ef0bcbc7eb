"""`teamsift.bench.seeds`: every seed's policy evaluated, and the summary over seeds."""

import math

import jax
import pytest

from teamsift.bench.seeds import bootstrap_interval, evaluate_seeds, over_seeds, paired_difference
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


def test_bootstrap_interval_brackets_the_mean():
    mean, low, high = bootstrap_interval([1.0, 2.0, 4.0, 8.0, 9.0], jax.random.key(0), reps=500)
    assert low <= mean <= high and mean == pytest.approx(4.8)
    assert bootstrap_interval([3.0, 3.0], jax.random.key(0), reps=50) == [3.0, 3.0, 3.0]


def test_paired_difference_pairs_seeds_by_index():
    """Seed-paired: a shared per-seed offset cancels, so the interval is the constant gap's."""
    a, b = [10.0, 20.0, 30.0, 40.0], [9.0, 19.0, 29.0, 39.0]
    assert paired_difference(a, b, jax.random.key(1), reps=200) == [1.0, 1.0, 1.0]
    mean, low, high = paired_difference(b, a, jax.random.key(1), reps=200)
    assert mean == low == high == -1.0
