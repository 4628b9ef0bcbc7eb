"""What the EV2BC benchmarks share: every seed of a vmapped run evaluated in the
environment, and a summary over seeds (mean, std and 95% interval, `evaluate.stats`)."""

from __future__ import annotations

from typing import Sequence

import jax

from teamsift.evaluate import evaluate
from teamsift.evaluate.stats import ScoreSummary


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
