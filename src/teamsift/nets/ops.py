"""Small array functions the learners' losses share (one definition each)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

LOG_2PI = math.log(2.0 * math.pi)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of x over the entries where `mask` (broadcast to x's shape) holds; 0 if none."""
    mask = jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def gaussian_log_density(x: jax.Array, mean: jax.Array | float, log_std: jax.Array | float,
                         axis: int | tuple[int, ...] = -1, mask: jax.Array | None = None) -> jax.Array:
    """log N(x; μ, diag σ²) summed over `axis` (only where `mask` [..., D] is 1, e.g. an
    agent's real action dimensions)."""
    log_std = jnp.asarray(log_std, jnp.result_type(x))
    z = (x - mean) * jnp.exp(-log_std)
    per_dim = -0.5 * z**2 - log_std - 0.5 * LOG_2PI
    return jnp.sum(per_dim if mask is None else per_dim * mask, axis=axis)


def weighted_mean(x: jax.Array, mask: jax.Array | bool = True, weight: jax.Array | None = None) -> jax.Array:
    """Σ w·x / Σ w over the entries where `mask` holds (mask and weight broadcast to x's
    shape; 0 where every weight is 0); with no weight exactly `masked_mean(x, mask)`."""
    if weight is None:
        return masked_mean(x, mask)
    weight = jnp.broadcast_to(weight, x.shape).astype(x.dtype) * jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    return jnp.sum(x * weight) / jnp.maximum(jnp.sum(weight), 1e-8)


def step_weight(batch: dict) -> jax.Array | None:
    """The weight of a joint term (a mixed Q_tot, a centralised critic, a team reward) at
    every step: the mean over agents of the per-decision `batch["weight"]` [..., A]; None
    when the run weighs nothing."""
    return jnp.mean(batch["weight"], axis=-1) if "weight" in batch else None
