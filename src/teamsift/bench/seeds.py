"""What the EV2BC benchmarks share: every seed of a vmapped run evaluated in the
environment, a summary over seeds (mean, std and 95% interval, `evaluate.stats`), and
percentile-bootstrap intervals over seeds, of one learner or of two paired by seed."""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from teamsift.evaluate import evaluate
from teamsift.evaluate.stats import ScoreSummary
from teamsift.value.clustering import numpy_rng

BOOTSTRAP_REPS = 10_000


def evaluate_seeds(env, policies: Sequence, key: jax.Array, episodes: int,
                   scores: Sequence[str] | None = None) -> dict[str, list[float]]:
    """{score: [mean over `episodes` episodes, one per seed]}: seed s's policy plays every
    slot, with key fold_in(key, s). `scores` picks scores (default: every score of the env)."""
    per_score: dict[str, list[float]] = {}
    for seed, policy in enumerate(policies):
        result = evaluate(env, policy, jax.random.fold_in(key, seed), episodes)
        for name in scores or result.scores:
            if name not in result.scores:
                raise ValueError(f"scores: {name!r} is not a score of {env.spec.env_id} "
                                 f"(expected one of {sorted(result.scores)})")
            per_score.setdefault(name, []).append(float(result.scores[name].mean))
    return per_score


def over_seeds(values: Sequence[float]) -> dict:
    """Mean, std (ddof 1) and normal 95% interval of per-seed numbers, with the numbers."""
    summary = ScoreSummary.of(values)
    return {"mean": summary.mean, "std": summary.std, "ci95": [summary.ci95_low, summary.ci95_high],
            "per_seed": [float(v) for v in values]}


def bootstrap_interval(values, key: jax.Array, reps: int = BOOTSTRAP_REPS) -> list[float]:
    """[mean, low, high]: the mean of `values` and its 95% percentile-bootstrap interval."""
    values = np.asarray(values, np.float64)
    means = numpy_rng(key).choice(values, size=(reps, len(values)), replace=True).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return [float(values.mean()), float(low), float(high)]


def paired_difference(a, b, key: jax.Array, reps: int = BOOTSTRAP_REPS) -> list[float]:
    """[mean, low, high] of a − b over seeds paired by index (seed s of both learners shares its key)."""
    return bootstrap_interval(np.asarray(a, np.float64) - np.asarray(b, np.float64), key, reps)
