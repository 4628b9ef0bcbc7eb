"""PJAP: Proximal Joint-Action Prioritisation (Tilbury et al. 2024; methods.md §2).

Sample the dataset items (sequences) whose joint action is close to what the current
joint policy would do, so that a BRUD policy update (each agent best-responding to the
other agents' dataset actions) sees partners that behave like its current partners.

For a sampled sequence τ of T steps, N agents with action dimension A:

    d_τ = (1/T) Σ_t (1/(N·A)) ‖μ̄(o_t) − a^D_t‖₁                 (1) mean L1 joint-action distance
    ρ_τ = clip( exp(−(κ · min(1, step/K) · d_τ)²), ρ_min, 1 )     (2) Gaussian proximity, ramped in
    P(τ) ∝ ρ_τ^α                                                  (3) sum-tree sampling

with μ̄ the *target* policy, κ = 4, K = 150 000 updates, ρ_min = 1e-3, α = 0.99 (the
reference's flashbax priority exponent). Only the items of the sampled batch get new
priorities (after they were used); items that enter the buffer get the largest priority
seen so far (1 at the start, so sampling starts uniform); no importance-sampling
correction of the loss.

The target policy's actions are an input (`target_actions`), so this module needs no
learner: a learner that reports proximity (`teamsift.algos.maddpg_cql`, `td3bc`, `omar`)
returns d_τ of the items it drew, and the `PJAP` sampler (`teamsift.data.samplers`)
calls `pjap_update` with them after the update. Padded steps of a sequence (mask False)
are left out of the mean over t.

Everything is a pure function of a `PJAPState` pytree (a sum-tree over ρ^α plus the
largest ρ seen), usable inside `jit`, `lax.scan` and `vmap`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from teamsift.data.sumtree import SumTree, sumtree_build, sumtree_leaves, sumtree_sample, sumtree_total, sumtree_update


@dataclasses.dataclass(frozen=True)
class PJAPConfig:
    steepness: float = 4.0  # κ, eq. (2)
    ramp_steps: int = 150_000  # K: the proximity sharpens linearly over the first K updates
    min_priority: float = 1e-3  # ρ_min
    exponent: float = 0.99  # α: sampling probability ∝ ρ^α, eq. (3)

    def __post_init__(self):
        checks = {
            "steepness": self.steepness >= 0,
            "ramp_steps": self.ramp_steps >= 0,
            "min_priority": 0 < self.min_priority <= 1,
            "exponent": self.exponent >= 0,
        }
        expected = {"steepness": ">= 0", "ramp_steps": ">= 0", "min_priority": "in (0, 1]", "exponent": ">= 0"}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"PJAPConfig.{name}: expected {expected[name]}, got {getattr(self, name)!r}")


class PJAPState(NamedTuple):
    tree: SumTree  # leaves: ρ_i^α of every item (0 past the number of items)
    max_priority: jax.Array  # [] the largest ρ ever assigned (new items enter with it)


def sequence_distance(target_actions: jax.Array, dataset_actions: jax.Array,
                      mask: jax.Array | None = None) -> jax.Array:
    """Eq. (1): d_τ for actions [B, T, N, A] (mask [B, T], True on real steps) → [B].

    A sequence without any real step gets distance 0.
    """
    if target_actions.shape != dataset_actions.shape or target_actions.ndim != 4:
        raise ValueError(f"sequence_distance: expected target and dataset actions of one shape [B, T, N, A], got "
                         f"{tuple(target_actions.shape)} and {tuple(dataset_actions.shape)}")
    per_step = jnp.mean(jnp.abs(target_actions - dataset_actions), axis=(-2, -1))  # (1/(N·A)) ‖·‖₁  [B, T]
    if mask is None:
        return per_step.mean(axis=-1)
    mask = mask.astype(per_step.dtype)
    return jnp.sum(per_step * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


def ramp(step, config: PJAPConfig) -> jax.Array:
    """min(1, step / K); 1 from the start when K = 0."""
    if config.ramp_steps == 0:
        return jnp.float32(1.0)
    return jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / config.ramp_steps)


def pjap_priority(distance: jax.Array, step, config: PJAPConfig) -> jax.Array:
    """Eq. (2): ρ = clip(exp(−(κ·min(1, step/K)·d)²), ρ_min, 1)."""
    scaled = config.steepness * ramp(step, config) * distance
    return jnp.clip(jnp.exp(-(scaled**2)), config.min_priority, 1.0)


def pjap_init(num_items: int, config: PJAPConfig, capacity: int | None = None) -> PJAPState:
    """A buffer of `num_items` items, all at the initial maximum priority ρ = 1."""
    if num_items < 1:
        raise ValueError(f"pjap_init num_items: expected >= 1, got {num_items}")
    leaves = jnp.ones((num_items,), jnp.float32)  # 1^α = 1
    return PJAPState(sumtree_build(leaves, capacity), jnp.float32(1.0))


def pjap_add(state: PJAPState, indices: jax.Array, config: PJAPConfig) -> PJAPState:
    """New items `indices` enter at the largest priority seen so far."""
    indices = jnp.asarray(indices, jnp.int32)
    value = jnp.broadcast_to(state.max_priority ** config.exponent, indices.shape)
    return state._replace(tree=sumtree_update(state.tree, indices, value))


def pjap_sample(state: PJAPState, key: jax.Array, batch_size: int) -> jax.Array:
    """Eq. (3): `batch_size` item indices with P(i) ∝ ρ_i^α (stratified over the total mass)."""
    return sumtree_sample(state.tree, key, batch_size)


def pjap_update(state: PJAPState, indices: jax.Array, distance: jax.Array, step,
                config: PJAPConfig) -> tuple[PJAPState, jax.Array]:
    """New priorities for the sampled items only. Returns (state, ρ [B])."""
    rho = pjap_priority(distance, step, config)
    tree = sumtree_update(state.tree, indices, rho ** config.exponent)
    return PJAPState(tree, jnp.maximum(state.max_priority, jnp.max(rho))), rho


def pjap_probabilities(state: PJAPState, num_items: int) -> jax.Array:
    """Sampling probability of every item [num_items] (for plots and tests)."""
    return sumtree_leaves(state.tree)[:num_items] / sumtree_total(state.tree)
