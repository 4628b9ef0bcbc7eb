"""Input normalisation: running statistics per feature, and folding a normalisation into
(or out of) an agent network's first layer, so that a trained actor acts on raw inputs.

Used by PPO (`normalize_obs`), TD3+BC (dataset statistics) and MAGAIL's BC warm start."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from teamsift.nets.agent import AgentNetConfig

STD_EPS = 1e-8  # std = √(var + STD_EPS)


class RunningStats(NamedTuple):
    """Running mean / variance per feature (parallel Welford merge over batches)."""

    mean: jax.Array  # [D]
    var: jax.Array  # [D]
    count: jax.Array  # []

    @classmethod
    def create(cls, dim: int) -> "RunningStats":
        return cls(jnp.zeros((dim,), jnp.float32), jnp.ones((dim,), jnp.float32), jnp.float32(1e-4))

    @classmethod
    def of(cls, x: np.ndarray, count: float | None = None) -> "RunningStats":
        """The statistics of data x [..., D] (counted as `count` rows; default: its rows)."""
        flat = np.asarray(x, np.float32).reshape(-1, x.shape[-1])
        return cls(jnp.asarray(flat.mean(0)), jnp.asarray(flat.var(0)),
                   jnp.float32(flat.shape[0] if count is None else count))

    def update(self, x: jax.Array) -> "RunningStats":
        flat = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
        n = jnp.float32(flat.shape[0])
        batch_mean, batch_var = flat.mean(axis=0), flat.var(axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        return RunningStats(mean, m2 / total, total)

    def std(self) -> jax.Array:
        """√(var + 1e-8): a constant feature keeps a std of 1e-4, not 0."""
        return jnp.sqrt(self.var + STD_EPS)

    def normalize(self, x: jax.Array) -> jax.Array:
        return (x - self.mean) / self.std()


def normalize(stats: RunningStats | None, x: jax.Array) -> jax.Array:
    return x if stats is None else stats.normalize(x)


def _first_dense(net: AgentNetConfig, params):
    """(inner params, the dict owning Dense_0) of an agent network (GRU or MLP)."""
    inner = dict(params["params"])
    return inner, (inner if net.recurrent else dict(inner["MLP_0"]))


def _with_first_dense(net: AgentNetConfig, params, inner, owner, dense):
    owner["Dense_0"] = dense
    if not net.recurrent:
        inner["MLP_0"] = owner
    return {**params, "params": inner}


def fold_normalization(net: AgentNetConfig, params, stats: RunningStats | None):
    """Params that take RAW observations: the normalisation (x − μ)/σ of the first
    `obs_dim` inputs folded into the first Dense layer (W ← W/σ, b ← b − (μ/σ)·W)."""
    if stats is None:
        return params
    inner, owner = _first_dense(net, params)
    dense = owner["Dense_0"]
    kernel, bias = dense["kernel"], dense["bias"]
    obs_rows, std = kernel[: net.obs_dim], stats.std()
    return _with_first_dense(net, params, inner, owner, {
        **dense, "kernel": kernel.at[: net.obs_dim].set(obs_rows / std[:, None]),
        "bias": bias - (stats.mean / std) @ obs_rows})


def unfold_normalization(net: AgentNetConfig, params, stats: RunningStats):
    """The inverse of `fold_normalization`: params acting on raw x → on (x − μ)/σ
    (first layer W ← σ·W, b ← b + μ·W on the first obs_dim inputs)."""
    inner, owner = _first_dense(net, params)
    dense = owner["Dense_0"]
    kernel = dense["kernel"]
    obs_rows = kernel[: net.obs_dim]
    return _with_first_dense(net, params, inner, owner, {
        **dense, "kernel": kernel.at[: net.obs_dim].set(obs_rows * stats.std()[:, None]),
        "bias": dense["bias"] + stats.mean @ obs_rows})
