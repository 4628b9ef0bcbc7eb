"""The learners' optimisers by name (`teamsift.nets.optim`). PyMARL's RMSProp, which ICQ and SIT
were published with, adds ε to the root; optax puts it under the root, where ε = 1e-5 floors
the RMS gradient at √ε ≈ 3·10⁻³. Small gradients then move a parameter much less far, and a
halved loss half as far: what ICQ's actor met on the human Overcooked data."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from teamsift.algos import bc, icq
from teamsift.engine.run import RunDir, RunDirError
from teamsift.nets import optim


def distance_moved(name: str, gradient: float, steps: int = 50, learning_rate: float = 1e-3) -> float:
    optimizer = optim.clipped(name, learning_rate, max_grad_norm=10.0)
    params = jnp.zeros(3)
    state = optimizer.init(params)
    for _ in range(steps):
        updates, state = optimizer.update(jnp.full(3, gradient), state, params)
        params = optax.apply_updates(params, updates)
    return float(jnp.abs(params[0]))


def test_epsilon_under_the_root_slows_small_gradients_and_halves_a_halved_loss():
    # an RMS gradient of 1e-4, far below √ε: a few per cent of PyMARL's step
    assert distance_moved("rmsprop_eps_in_root", 1e-4) < 0.1 * distance_moved("rmsprop_pymarl", 1e-4)
    # halving the loss halves that step, and leaves PyMARL's nearly as it was (ε ≪ 1e-4 there)
    assert distance_moved("rmsprop_eps_in_root", 5e-5) == pytest.approx(
        0.5 * distance_moved("rmsprop_eps_in_root", 1e-4), rel=0.05)
    assert distance_moved("rmsprop_pymarl", 5e-5) == pytest.approx(distance_moved("rmsprop_pymarl", 1e-4), rel=0.2)
    # far above √ε the two are one optimiser
    assert distance_moved("rmsprop_eps_in_root", 1.0) == pytest.approx(distance_moved("rmsprop_pymarl", 1.0),
                                                                       rel=1e-3)


def test_clipping_is_by_global_norm_and_zero_turns_it_off():
    gradient = {"a": jnp.full(4, 1e-3), "b": jnp.full(4, 1e-3)}  # global norm 2.8e-3

    def first_step(max_grad_norm: float) -> float:
        optimizer = optim.clipped("rmsprop_pymarl", 1.0, max_grad_norm)
        updates, _ = optimizer.update(gradient, optimizer.init(gradient))
        return float(-updates["b"][0])

    # a gradient g first moves a parameter by g / (0.1·|g| + ε): near ε, clipping shows
    assert first_step(0.0) == pytest.approx(1e-3 / (1e-4 + 1e-5), rel=1e-4)
    assert first_step(1.0) == first_step(0.0)  # under the bound: untouched
    clipped = 1e-3 * 1e-5 / np.sqrt(8 * 1e-6)  # every entry scaled by bound / global norm
    assert first_step(1e-5) == pytest.approx(clipped / (0.1 * clipped + 1e-5), rel=1e-4)


def test_icq_keeps_its_recorded_optimiser_and_names_a_wrong_one():
    assert icq.ICQConfig().optimizer == "rmsprop_eps_in_root"
    assert bc.BCConfig().optimizer == "rmsprop"
    with pytest.raises(ValueError, match="optimizer"):
        icq.ICQConfig(optimizer="sgd")
    assert bc.BCConfig(optimizer="rmsprop_pymarl").optimizer == "rmsprop_pymarl"


def test_an_icq_run_recorded_before_the_optimizer_setting_resumes_only_with_the_one_it_used(tmp_path):
    run = RunDir(tmp_path / "icq")
    run.open({"learner": "icq", "hyperparameters": {"beta": 0.1}}, resume=False, overwrite=False)
    now = {"learner": "icq", "hyperparameters": {"beta": 0.1, "optimizer": "rmsprop_pymarl"}}
    with pytest.raises(RunDirError, match="hyperparameters.optimizer: 'rmsprop_eps_in_root' for that run"):
        run.open(now, resume=True, overwrite=False)
    assert run.open({**now, "hyperparameters": {"beta": 0.1, "optimizer": "rmsprop_eps_in_root"}}, resume=True,
                    overwrite=False)
