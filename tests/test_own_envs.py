"""Our own environments: the polynomial games return their formulas' exact rewards and the
Tragedy of the Commons pool follows its dynamics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift import envs
from teamsift.collect import commons_policy
from teamsift.envs.poly import coupled_reward, sign_reward, twin_peaks_reward
from teamsift.evaluate import evaluate, rollout

GRID = np.linspace(-1.0, 1.0, 9)


def _poly_reward(env_id, x, y):
    env = envs.make(env_id)
    first = env.reset(jax.random.key(0))
    out = env.step(jax.random.key(1), first.env_state, jnp.array([[x], [y]], jnp.float32))
    assert bool(out.done)
    return float(out.reward)


@pytest.mark.parametrize("x", GRID[::2])
@pytest.mark.parametrize("y", GRID[::2])
def test_poly_rewards_are_exact(x, y):
    assert _poly_reward("poly_sign", x, y) == pytest.approx(x * y, abs=1e-6)
    expected = -(x**2 + y**2) - 4 * (x * y) ** 2 + 5 * x * y
    assert _poly_reward("poly_twin_peaks", x, y) == pytest.approx(expected, abs=1e-5)
    assert _poly_reward("poly_coupled", x, y) == pytest.approx(-((x - y) ** 2) + x * y, abs=1e-6)
    assert _poly_reward("poly_decoupled", x, y) == pytest.approx(-((x - 1) ** 2) - (y - 1) ** 2, abs=1e-6)


def test_twin_peaks_landmarks_of_the_paper():
    # methods.md §2: optima at ±(0.61, 0.61) with R = 0.5625; R(−0.5, 0.5) = −2.
    assert float(twin_peaks_reward(-0.5, 0.5)) == pytest.approx(-2.0)
    xs = np.linspace(-1, 1, 2001)
    grid = twin_peaks_reward(xs[:, None], xs[None, :])
    best = np.unravel_index(np.argmax(grid), grid.shape)
    assert grid.max() == pytest.approx(0.5625, abs=1e-3)
    assert abs(abs(xs[best[0]]) - 0.61) < 0.02 and xs[best[0]] == pytest.approx(xs[best[1]])
    assert float(sign_reward(0.3, -0.2)) == pytest.approx(-0.06)
    assert float(coupled_reward(0.5, 0.5, 3.0)) == pytest.approx(0.25)


def test_poly_actions_are_clipped():
    assert _poly_reward("poly_sign", 3.0, -4.0) == pytest.approx(-1.0)


def test_commons_pool_follows_logistic_dynamics():
    env = envs.make("commons")
    capacity, growth = 90.0, 0.3
    state = env.reset(jax.random.key(0)).env_state
    pool = capacity
    rng = np.random.default_rng(0)
    for t in range(30):
        actions = rng.integers(0, 6, size=3)
        out = env.step(jax.random.key(t), state, jnp.asarray(actions, jnp.int32))
        request = actions.astype(float)
        consumed = request * min(1.0, pool / request.sum()) if request.sum() > 0 else request
        pool = float(np.clip(pool + growth * pool * (1 - pool / capacity) - consumed.sum(), 0, capacity))
        np.testing.assert_allclose(np.asarray(out.info["consumption"]), consumed, rtol=1e-5, atol=1e-5)
        assert float(out.info["resources"]) == pytest.approx(pool, rel=1e-4, abs=1e-4)
        assert float(out.reward) == pytest.approx(consumed.sum(), rel=1e-5, abs=1e-5)
        state = out.env_state


def test_commons_empty_pool_never_regrows_and_consumption_is_clipped():
    env = envs.make("commons")
    episodes = rollout(env, commons_policy("greedy"), jax.random.key(0), 2)
    resources = np.asarray(episodes.scores["v_final"])
    assert np.all(resources < 1e-6)  # taken faster than it regrows: the pool is gone
    # Greedy groups can never take more than the pool held plus what it regrew.
    assert np.all(np.asarray(episodes.scores["v_total"]) <= 90.0 + 0.3 * 90 * episodes.reward.shape[1])


def test_commons_scores_rank_sustainable_above_greedy():
    env = envs.make("commons")
    sustainable = evaluate(env, commons_policy("sustainable"), jax.random.key(0), 8)
    greedy = evaluate(env, commons_policy("greedy"), jax.random.key(0), 8)
    for score in ("v_final", "v_total", "v_min"):
        assert sustainable.scores[score].mean > greedy.scores[score].mean
    # Sustainable harvest: 2 per agent per step for 100 steps, pool settling at 2/3 of R_max.
    assert sustainable.scores["v_total"].mean == pytest.approx(600.0)
    assert sustainable.scores["v_min"].mean == pytest.approx(200.0)
    assert sustainable.scores["v_final"].mean == pytest.approx(60.0, rel=0.01)
