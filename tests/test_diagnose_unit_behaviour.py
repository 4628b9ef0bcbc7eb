"""benchmarks/diagnose_unit_behaviour.py: what a SMAX policy's units do, per unit type, read
from SMAX's action layout (0-3 move, 4 stop, 5 + j attack) and availability masks."""

import types

import numpy as np
import pytest


@pytest.fixture(scope="module")
def script(benchmark_script):
    return benchmark_script("diagnose_unit_behaviour")


def avail_rows(*rows):
    """SMAX availability rows for one unit and two enemies: "dead" (stop only), "far" (moves
    and stop), "near" (moves, stop and an attack on enemy 0)."""
    table = {"dead": [0, 0, 0, 0, 1, 0, 0], "far": [1, 1, 1, 1, 1, 0, 0], "near": [1, 1, 1, 1, 1, 1, 0]}
    return np.asarray([table[r] for r in rows], bool)


def test_unit_shares_count_living_steps_only(script):
    # One episode of five steps, one unit: east, attack, stop, west; dead on the last step.
    avail = avail_rows("far", "near", "near", "far", "dead")[None, :, None]  # [E, T, U, nA]
    valid = np.ones((1, 5), bool)
    actions = np.asarray([[1, 5, 4, 3, 4]])[..., None]
    alive, in_range = script.living(avail, valid)
    assert alive[0, :, 0].tolist() == [True, True, True, True, False]
    assert in_range[0, :, 0].tolist() == [False, True, True, False, False]
    shares = script.unit_shares(actions, alive, in_range)
    assert (shares["move"], shares["stop"], shares["attack"]) == (0.5, 0.25, 0.25)
    assert shares["in_range"] == 0.5 and shares["attack_in_range"] == 0.5  # attacked on one of two
    assert shares["living_steps"] == 4.0
    assert shares["directions"] == {"north": 0.0, "east": 0.5, "south": 0.0, "west": 0.5}


def test_steps_after_the_episode_are_not_counted(script):
    avail = avail_rows("near", "near")[None, :, None]
    alive, in_range = script.living(avail, np.asarray([[True, False]]))
    assert alive.sum() == 1 and in_range.sum() == 1


def test_greedy_choices_in_range_read_the_argmax_not_the_mass(script):
    # Attack mass split over two targets loses the argmax to one move direction: the
    # collapse's signature (more probability on attacking, yet the greedy unit walks).
    logits = np.log(np.asarray([[0.01, 0.35, 0.01, 0.01, 0.02, 0.30, 0.30],    # in range: walks east
                                [0.01, 0.01, 0.01, 0.01, 0.01, 0.90, 0.05],    # in range: attacks
                                [0.10, 0.60, 0.10, 0.10, 0.10, 1e-9, 1e-9]]))  # out of range
    logits = logits[None, :, None]  # [E, T, U, nA]
    avail = np.ones((1, 3, 1, 7), bool)
    avail[0, 2, 0, 5:] = False
    alive, in_range = script.living(avail, np.ones((1, 3), bool))
    data_actions = np.asarray([[5, 5, 1]])[..., None]
    got = script.choices_in_range(logits, data_actions, alive, in_range)
    assert got["greedy_attack_in_range"] == 0.5
    assert got["data_attack_in_range"] == 1.0
    assert got["p_move_in_range"] == pytest.approx((0.38 + 0.04) / 2)
    assert got["agreement"] == pytest.approx(2 / 3)  # step 1's attack and step 2's east


def test_padded_episodes_lay_each_episode_from_its_start(script):
    lengths, starts = np.asarray([3, 1]), np.asarray([0, 3])
    steps = {"obs": np.arange(4, dtype=np.float32).reshape(4, 1, 1), "avail": np.ones((4, 1, 7), bool),
             "actions": np.asarray([[0], [1], [2], [3]])}
    episodes = script.padded_episodes(types.SimpleNamespace(lengths=lengths, starts=starts, steps=steps))
    assert episodes["obs"].shape == (3, 2, 1, 1)  # [T, E, A, O]
    assert episodes["actions"][:, 0, 0].tolist() == [0, 1, 2]
    assert episodes["actions"][0, 1, 0] == 3
    assert episodes["mask"].tolist() == [[True, True], [True, False], [True, False]]


def test_unit_groups_follow_the_spec(script):
    env = types.SimpleNamespace(spec=types.SimpleNamespace(agent_types=("stalker", "stalker", "zealot")))
    assert script.unit_groups(env) == {"stalker": [0, 1], "zealot": [2]}


def test_filter_shares_weigh_moves_against_attacks_on_living_steps(script):
    # Four decisions of one unit: a move, two attacks, a stop, then dead (its forced stop).
    actions = np.asarray([[1, 5, 6, 4, 4]])[..., None]
    weight = np.asarray([[3.0, 0.5, 0.5, 9.0, 9.0]])[..., None]
    advantage = np.asarray([[0.2, -0.1, -0.3, 5.0, 5.0]])[..., None]
    alive = np.asarray([[True, True, True, True, False]])[..., None]
    got = script.filter_shares(weight, advantage, actions, alive)
    assert got["data_move"] == pytest.approx(1 / 3)  # stops take no part
    assert got["weight_move"] == pytest.approx(3.0 / 4.0)
    assert got["advantage_move"] == pytest.approx(0.2)
    assert got["advantage_attack"] == pytest.approx(-0.2)
