"""A sum-tree (Schaul et al. 2016, used by SIT's DPER) as pure functions over arrays.

The tree is a binary heap stored in one array `nodes` of length 2·C, C = the capacity
padded to a power of two: node 1 is the root, node n has children 2n and 2n+1, and the
leaves (the priorities) are nodes C … 2C−1. Node 0 is unused. Every internal node holds
the sum of its two children, so the root holds the total priority.

    tree = sumtree_build(priorities)                 # vectorised, one level at a time
    tree = sumtree_update(tree, indices, new_values) # batched; duplicates: last one wins
    idx  = sumtree_sample(tree, key, batch_size)     # P(i) = p_i / Σ_j p_j

Everything is a pure function of a `SumTree` NamedTuple (a pytree), so trees can live
inside `jit`, `lax.scan` and `vmap` (a stack of trees is a SumTree with a leading axis).
Leaves past the number of items are zero and are never sampled; a zero priority is
never sampled either. Sampling needs a positive total.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class SumTree(NamedTuple):
    nodes: jax.Array  # [2C] float32: nodes[1] = root, nodes[C + i] = priority of item i


def _padded_capacity(capacity: int) -> int:
    if not isinstance(capacity, (int, np.integer)) or isinstance(capacity, bool) or capacity < 1:
        raise ValueError(f"sumtree capacity: expected an integer >= 1, got {capacity!r}")
    return 1 << max(0, int(capacity - 1).bit_length())


def sumtree_capacity(tree: SumTree) -> int:
    """Number of leaves (a power of two) — static, read from the array shape."""
    return tree.nodes.shape[-1] // 2


def _depth(tree: SumTree) -> int:
    return sumtree_capacity(tree).bit_length() - 1


def sumtree_init(capacity: int) -> SumTree:
    """An all-zero tree with room for `capacity` items (padded to a power of two)."""
    return SumTree(jnp.zeros(2 * _padded_capacity(capacity), jnp.float32))


def _check_priorities(priorities, field: str = "priorities") -> None:
    """Eager check (skipped under tracing): finite and non-negative."""
    if isinstance(priorities, jax.core.Tracer):
        return
    values = np.asarray(priorities)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"sumtree {field}: expected finite values, found NaN or inf")
    if np.any(values < 0):
        raise ValueError(f"sumtree {field}: expected values >= 0, found min {values.min()!r}")


def sumtree_build(priorities, capacity: int | None = None) -> SumTree:
    """A tree over `priorities` [K] (padded with zeros to `capacity` or the next power of 2)."""
    _check_priorities(priorities)
    priorities = jnp.asarray(priorities, jnp.float32)
    if priorities.ndim != 1:
        raise ValueError(f"sumtree priorities: expected a 1-D array, got shape {tuple(priorities.shape)}")
    k = priorities.shape[0]
    cap = _padded_capacity(max(k, 1) if capacity is None else capacity)
    if k > cap:
        raise ValueError(f"sumtree priorities: {k} items do not fit a capacity of {capacity}")
    level = jnp.zeros(cap, jnp.float32).at[:k].set(priorities)
    levels = [level]
    while level.shape[0] > 1:  # parents of one level are the pairwise sums of its children
        level = level[0::2] + level[1::2]
        levels.append(level)
    return SumTree(jnp.concatenate([jnp.zeros(1, jnp.float32)] + levels[::-1]))


def sumtree_total(tree: SumTree) -> jax.Array:
    return tree.nodes[..., 1]


def sumtree_leaves(tree: SumTree) -> jax.Array:
    """All leaf priorities [C] (padding included)."""
    cap = sumtree_capacity(tree)
    return tree.nodes[..., cap:]


def sumtree_probabilities(tree: SumTree, indices) -> jax.Array:
    """Sampling probability p_i / Σ_j p_j of items `indices`."""
    cap = sumtree_capacity(tree)
    return tree.nodes[cap + jnp.asarray(indices)] / sumtree_total(tree)


def _check_indices(indices, capacity: int) -> None:
    """Eager check (skipped under tracing): integer indices in [0, capacity)."""
    if isinstance(indices, jax.core.Tracer):
        return
    values = np.asarray(indices)
    if values.size and (values.dtype.kind not in "iu" or values.min() < 0 or values.max() >= capacity):
        raise ValueError(f"sumtree indices: expected integers in [0, {capacity}), "
                         f"found {values.dtype} in [{values.min()}, {values.max()}]")


def _last_occurrence(indices: jax.Array) -> jax.Array:
    """True where indices[j] does not appear again later in the batch."""
    order = jnp.argsort(indices, stable=True)
    ranked = indices[order]
    last_in_run = jnp.concatenate([ranked[1:] != ranked[:-1], jnp.ones(1, bool)])
    return jnp.zeros(indices.shape, bool).at[order].set(last_in_run)


def sumtree_update(tree: SumTree, indices, priorities) -> SumTree:
    """Set the priorities of items `indices` [B] to `priorities` [B] (or a scalar).

    A repeated index takes the value of its last occurrence in the batch. Ancestors are
    recomputed from their children (not patched with deltas), so repeated updates do not
    accumulate rounding error. Indices must lie in [0, capacity).
    """
    _check_priorities(priorities)
    cap = sumtree_capacity(tree)
    _check_indices(indices, cap)
    indices = jnp.asarray(indices, jnp.int32).reshape(-1)
    priorities = jnp.broadcast_to(jnp.asarray(priorities, jnp.float32).reshape(-1), indices.shape)
    keep = _last_occurrence(indices)
    nodes_at = jnp.where(keep, cap + indices, 2 * cap)  # dropped writes go out of bounds
    nodes = tree.nodes.at[nodes_at].set(priorities, mode="drop")
    parents = cap + indices
    for _ in range(_depth(tree)):  # walk up: every parent = sum of its two children
        parents = parents // 2
        nodes = nodes.at[parents].set(nodes[2 * parents] + nodes[2 * parents + 1])
    return SumTree(nodes)


def _descend(tree: SumTree, targets: jax.Array) -> jax.Array:
    """Leaf index holding the prefix-sum position `targets` [B], for each target."""
    nodes = tree.nodes

    def step(_, state):
        node, target = state
        left = nodes[2 * node]
        right = nodes[2 * node + 1]
        # Go right past the left mass; never into an empty subtree (guards float rounding).
        go_right = ((target >= left) & (right > 0)) | (left <= 0)
        return jnp.where(go_right, 2 * node + 1, 2 * node), jnp.where(go_right, target - left, target)

    start = (jnp.ones(targets.shape, jnp.int32), targets)
    node, _ = jax.lax.fori_loop(0, _depth(tree), step, start)
    return node - sumtree_capacity(tree)


def sumtree_sample(tree: SumTree, key: jax.Array, batch_size: int, stratified: bool = True) -> jax.Array:
    """Draw `batch_size` item indices [B] int32 with P(i) = p_i / Σ_j p_j.

    stratified=True (PER's scheme): the total mass is cut into B equal segments and one
    point is drawn uniformly in each — lower variance, and each draw is still
    proportional to priority when averaged over the segment a draw falls in (the batch
    as a whole is a proportional sample; individual positions are not i.i.d.).
    stratified=False: B i.i.d. proportional draws. `batch_size` must be static under jit.
    """
    total = sumtree_total(tree)
    u = jax.random.uniform(key, (batch_size,), jnp.float32)
    if stratified:
        u = (jnp.arange(batch_size, dtype=jnp.float32) + u) / batch_size
    targets = jnp.minimum(u * total, jnp.nextafter(total, jnp.float32(0)))
    return _descend(tree, targets)
