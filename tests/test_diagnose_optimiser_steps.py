"""benchmarks/diagnose_optimiser_steps.py: how far an RMSProp with ε under the root lets a
parameter move, read from the optimiser's own ν, against PyMARL's ε added to the root."""

import numpy as np
import optax
import pytest

from teamsift.nets import optim


@pytest.fixture(scope="module")
def script(benchmark_script):
    return benchmark_script("diagnose_optimiser_steps")


def test_step_factors_are_read_from_the_optimisers_own_second_moments(script):
    # ν as RMSProp keeps it: two parameters with RMS gradients 1e-4 and 1e-1, one never touched
    optimizer = optim.clipped("rmsprop_eps_in_root", 1e-3, 10.0)
    params = np.zeros(3, np.float32)
    state = optimizer.init(params)
    for _ in range(2000):
        _, state = optimizer.update(np.array([1e-4, 1e-1, 0.0], np.float32), state, params)
    nu = script.second_moments(state)
    np.testing.assert_allclose(np.sqrt(nu[:2]), [1e-4, 1e-1], rtol=1e-3)
    stats = script.step_statistics(nu)
    assert stats["parameters"] == 2  # ν = 0: an input that never varies, left out
    assert stats["share_below_sqrt_eps"] == 0.5
    small, large = 1e-4 / np.sqrt(1e-8 + 1e-5), 1e-1 / np.sqrt(1e-2 + 1e-5)
    assert stats["step_factor_eps_in_root"] == pytest.approx((small + large) / 2, rel=1e-3)
    assert stats["step_factor_pymarl"] == pytest.approx((1e-4 / (1e-4 + 1e-5) + 1e-1 / (1e-1 + 1e-5)) / 2, rel=1e-3)


def test_an_optimiser_without_second_moments_is_refused(script):
    with pytest.raises(SystemExit, match="no RMSProp ν"):
        script.second_moments(optax.sgd(1e-3).init(np.zeros(2)))


def test_a_run_is_named_with_its_dataset_or_refused(script, tmp_path):
    with pytest.raises(SystemExit, match="expected NAME=RUN_DIR:DATASET"):
        script.main(["--run", "only-a-name", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="config.json not found .not a run directory."):
        script.main(["--run", f"x={tmp_path}:{tmp_path}", "--out", str(tmp_path)])
