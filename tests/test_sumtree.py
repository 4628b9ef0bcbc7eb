"""The sum-tree: sums are right, sampling is proportional to priority (chi-square), batched
updates (duplicates included) change the probabilities as expected, and it all runs
under jit and vmap."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from teamsift.data.sumtree import (
    SumTree,
    sumtree_build,
    sumtree_capacity,
    sumtree_init,
    sumtree_leaves,
    sumtree_probabilities,
    sumtree_sample,
    sumtree_total,
    sumtree_update,
)

DRAWS = 40_000


@functools.partial(jax.jit, static_argnames=("batch_size", "stratified"))
def sample(tree, key, batch_size, stratified):
    return sumtree_sample(tree, key, batch_size, stratified)


def chi_square_pvalue(indices, priorities) -> float:
    """Goodness of fit of the draw counts to p_i / Σp over the items with p_i > 0."""
    priorities = np.asarray(priorities, np.float64)
    counts = np.bincount(np.asarray(indices), minlength=len(priorities))
    assert counts[len(priorities):].sum() == 0  # padding leaves are never drawn
    counts = counts[: len(priorities)]
    positive = priorities > 0
    assert counts[~positive].sum() == 0  # zero priority is never drawn
    expected = priorities[positive] / priorities[positive].sum() * len(indices)
    return stats.chisquare(counts[positive], expected).pvalue


def internal_nodes_are_sums(tree: SumTree) -> bool:
    nodes = np.asarray(tree.nodes, np.float64)
    cap = sumtree_capacity(tree)
    parents = np.arange(1, cap)
    return np.allclose(nodes[parents], nodes[2 * parents] + nodes[2 * parents + 1], rtol=1e-5, atol=1e-6)


def test_build_pads_to_a_power_of_two_and_sums():
    priorities = np.array([1.0, 0.0, 3.0, 2.0, 0.5])
    tree = sumtree_build(priorities)
    assert sumtree_capacity(tree) == 8 and tree.nodes.shape == (16,)
    assert float(sumtree_total(tree)) == pytest.approx(6.5)
    np.testing.assert_array_equal(np.asarray(sumtree_leaves(tree)), [1, 0, 3, 2, 0.5, 0, 0, 0])
    assert internal_nodes_are_sums(tree)
    assert sumtree_capacity(sumtree_init(1)) == 1 and sumtree_capacity(sumtree_init(9)) == 16
    assert sumtree_capacity(sumtree_build(np.ones(3), capacity=100)) == 128


@pytest.mark.parametrize("stratified", [False, True])
def test_sampling_frequencies_are_proportional_to_priorities(stratified):
    priorities = np.random.default_rng(0).gamma(0.7, size=37)
    priorities[[3, 20]] = 0.0
    tree = sumtree_build(priorities)
    indices = sample(tree, jax.random.key(1), DRAWS, stratified)
    # Stratified draws are not i.i.d. (less spread than a multinomial), so the same test is conservative.
    assert chi_square_pvalue(indices, priorities) > 1e-3
    np.testing.assert_allclose(np.asarray(sumtree_probabilities(tree, np.arange(37))),
                               priorities / priorities.sum(), rtol=1e-5, atol=1e-7)


def test_a_wrong_distribution_is_rejected():
    # The chi-square check has power: draws from p do not fit a clearly different q.
    p = np.array([1.0, 2.0, 3.0, 4.0])
    indices = sample(sumtree_build(p), jax.random.key(2), DRAWS, False)
    assert chi_square_pvalue(indices, p[::-1]) < 1e-6


def test_updates_change_probabilities_and_the_last_duplicate_wins():
    priorities = np.ones(10)
    tree = sumtree_build(priorities)
    tree = sumtree_update(tree, np.array([2, 7, 2, 9, 7]), np.array([5.0, 0.0, 9.0, 0.0, 4.0]))
    expected = priorities.copy()
    expected[[2, 7, 9]] = [9.0, 4.0, 0.0]  # index 2 → 9 (last), 7 → 4 (last), 9 → 0
    np.testing.assert_allclose(np.asarray(sumtree_leaves(tree))[:10], expected)
    assert float(sumtree_total(tree)) == pytest.approx(expected.sum())
    assert internal_nodes_are_sums(tree)
    indices = sample(tree, jax.random.key(3), DRAWS, False)
    assert chi_square_pvalue(indices, expected) > 1e-3
    assert not np.any(np.asarray(indices) == 9)


def test_many_updates_do_not_drift():
    rng = np.random.default_rng(4)
    tree = sumtree_build(rng.random(100))
    update = jax.jit(sumtree_update)
    leaves = np.asarray(sumtree_leaves(tree))[:100].astype(np.float64)
    for _ in range(200):
        idx = rng.integers(0, 100, 16)
        values = rng.random(16).astype(np.float32)
        tree = update(tree, idx, values)
        for i, v in zip(idx, values):
            leaves[i] = v
    assert float(sumtree_total(tree)) == pytest.approx(leaves.sum(), rel=1e-5)
    assert internal_nodes_are_sums(tree)


def test_runs_under_jit_scan_and_vmap():
    priorities = jnp.stack([jnp.arange(8.0), jnp.arange(8.0)[::-1]])  # two trees, mirrored
    trees = jax.vmap(sumtree_build)(priorities)
    assert isinstance(trees, SumTree) and trees.nodes.shape == (2, 16)

    @jax.jit
    def step(trees, key):
        drawn = jax.vmap(lambda t, k: sumtree_sample(t, k, 2000, False))(trees, jax.random.split(key, 2))
        # Inside jit: zero out the item just drawn most often, per tree.
        top = jax.vmap(lambda d: jnp.argmax(jnp.bincount(d, length=8)))(drawn)
        return jax.vmap(lambda t, i: sumtree_update(t, i[None], 0.0))(trees, top), drawn

    new_trees, drawn = step(trees, jax.random.key(5))
    drawn = np.asarray(drawn)
    assert chi_square_pvalue(drawn[0], np.arange(8.0)) > 1e-3
    assert chi_square_pvalue(drawn[1], np.arange(8.0)[::-1]) > 1e-3
    np.testing.assert_allclose(np.asarray(jax.vmap(sumtree_total)(new_trees)), [28.0 - 7.0, 28.0 - 7.0])
    scanned, _ = jax.lax.scan(lambda t, k: step(t, k), trees, jax.random.split(jax.random.key(6), 3))
    assert scanned.nodes.shape == (2, 16)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="capacity"):
        sumtree_init(0)
    with pytest.raises(ValueError, match=">= 0"):
        sumtree_build(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="finite"):
        sumtree_build(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="indices"):
        sumtree_update(sumtree_build(np.ones(4)), np.array([4]), np.array([1.0]))
