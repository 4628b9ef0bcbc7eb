"""The pools committed in `pools/` (built with `teamsift pools train ENV`): for each
environment, the evaluated mean return of the expert pool > medium > random, with
non-overlapping 95% intervals; and a SIT-style low-quality dataset drawn from them has
the average return its composition implies."""

from pathlib import Path

import jax
import pytest

from teamsift import envs
from teamsift.collect.datasets import generate_from_spec, implied_return
from teamsift.collect.pools import evaluate_level, list_pools, load_pools
from teamsift.collect.suites import SIT_SUITE
from teamsift.data import load_dataset, summarize

ROOT = Path(__file__).resolve().parents[1] / "pools"
COMMITTED = list_pools(ROOT)
SLOW_FAMILIES = ("mabrax",)
#: The one case CI runs: generating SIT's low-quality data from pools end to end (code, not data).
IN_CI = "CN_3ls3l"


def _marks(env_id, in_ci: bool = False):
    """These audits check committed data, not code (minutes in all), so they run with the
    benchmarks (`make bench`), not in CI's test tiers; CI keeps one generation case."""
    return [] if in_ci and env_id == IN_CI else [pytest.mark.bench]


@pytest.mark.parametrize("env_id", [pytest.param(e, marks=_marks(e)) for e in COMMITTED])
def test_expert_above_medium_above_random(env_id):
    pools = load_pools(env_id, ROOT)
    env = envs.make(env_id, **pools.env_kwargs)
    key = jax.random.key(11)
    episodes = 100 if envs.entry(env_id).family in SLOW_FAMILIES else 300
    results = {level: evaluate_level(env, pools, level, jax.random.fold_in(key, i), episodes)
               for i, level in enumerate(("random", "medium", "expert"))}
    assert results["random"].ci95_high < results["medium"].ci95_low, results
    assert results["medium"].ci95_high < results["expert"].ci95_low, results


@pytest.mark.parametrize("env_id", [pytest.param(e, marks=_marks(e, in_ci=True)) for e in COMMITTED
                                    if e in SIT_SUITE])
def test_low_quality_dataset_has_the_return_its_composition_implies(env_id, tmp_path):
    pools = load_pools(env_id, ROOT)
    env = envs.make(env_id, **pools.env_kwargs)
    spec = SIT_SUITE[env_id]["low"]
    episodes = 200 if envs.entry(env_id).family in SLOW_FAMILIES else 600
    path = generate_from_spec(env, pools, spec, episodes, jax.random.key(3), tmp_path / "low")
    summary = summarize(load_dataset(path))
    implied, stderr = implied_return(env, pools, spec, jax.random.key(4), episodes)
    dataset_stderr = summary["return"]["std"] / summary["episodes"] ** 0.5
    assert abs(summary["return"]["mean"] - implied) < 3 * (stderr**2 + dataset_stderr**2) ** 0.5
    # and the low-quality data sits between the random and expert pools, as SIT's tables do
    assert pools.random_return["mean"] < summary["return"]["mean"] < pools.info["level_returns"]["expert"]["mean"]
