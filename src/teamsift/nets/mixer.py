"""Monotonic mixing networks: Q_tot = mix(Q_1 … Q_n, s), with ∂Q_tot/∂Q_i ≥ 0.

Hypernetworks read the global state s and produce the mixing weights, made
non-negative with |·|, so that maximising every Q_i maximises Q_tot (QMIX, Rashid
et al. 2018):

    hidden = φ(Q · |W_1(s)| + b_1(s))          Q [..., n], W_1(s) [n, E], b_1(s) [E]
    Q_tot  = hidden · |w_2(s)| + V(s)           w_2(s) [E], V(s) = MLP(s) → scalar

  * kind="qmix":   φ = ELU — QMIX's monotonic nonlinear mixer (also SIT's MNC ablation).
  * kind="linear": φ = identity, so Q_tot = Σ_i k_i(s) Q_i + b(s) with
    k(s) = |W_1(s)| · |w_2(s)| ≥ 0 and b(s) = b_1(s) · |w_2(s)| + V(s) — the linear
    decomposition "Q(τ, a) = w_i Q_i(τ_i, a_i) + b" of SIT's appendix B (after ICQ,
    Yang et al. 2021, whose reference mixer is this product of two hypernetworks).
    `normalise_weights=True` rescales k to sum to 1 over agents and `state_bias=False`
    drops b(s): that is the ICQ reference's mixer exactly (Q_tot = Σ_i k_i(s) Q_i).

`mixing_weights` returns k_i = ∂Q_tot/∂Q_i (exactly k(s) for the linear mixer, the
local slope for QMIX); ICQ's actor loss weighs agent i by it.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

MIXER_KINDS = ("qmix", "linear")


@dataclasses.dataclass(frozen=True)
class MixerConfig:
    num_agents: int
    state_dim: int
    embed_dim: int = 32  # QMIX's / ICQ's mixing_embed_dim (SIT Table 11: mixer hidden 32)
    kind: str = "qmix"  # "qmix" (ELU hidden layer) | "linear" (Σ_i k_i(s) Q_i + b(s))
    hypernet_hidden: int = 0  # 0: one-layer hypernetworks (QMIX default); > 0: Dense → ReLU → Dense
    normalise_weights: bool = False  # linear only: k_i / Σ_j k_j (the ICQ reference)
    state_bias: bool = True  # add b_1(s) and V(s)

    def __post_init__(self):
        if self.kind not in MIXER_KINDS:
            raise ValueError(f"MixerConfig.kind: expected one of {MIXER_KINDS}, got {self.kind!r}")
        if self.normalise_weights and self.kind != "linear":
            raise ValueError("MixerConfig.normalise_weights: only the 'linear' mixer can normalise its weights")
        for name in ("num_agents", "state_dim", "embed_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"MixerConfig.{name}: expected a positive integer, got {getattr(self, name)!r}")


class Hypernet(nn.Module):
    """state [..., S] → [..., out]: one Dense, or Dense → ReLU → Dense."""

    out_dim: int
    hidden: int = 0

    @nn.compact
    def __call__(self, state):
        x = state
        if self.hidden > 0:
            x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.out_dim)(x)


class MonotonicMixer(nn.Module):
    """(agent_qs [..., n], state [..., S]) → Q_tot [...]."""

    config: MixerConfig

    def setup(self):
        c = self.config
        self.hyper_w1 = Hypernet(c.num_agents * c.embed_dim, c.hypernet_hidden)
        self.hyper_w2 = Hypernet(c.embed_dim, c.hypernet_hidden)
        if c.state_bias:
            self.hyper_b1 = nn.Dense(c.embed_dim)
            self.value = nn.Sequential([nn.Dense(c.embed_dim), nn.relu, nn.Dense(1)])

    def layers(self, state):
        """|W_1(s)| [..., n, E] and |w_2(s)| [..., E] — the non-negative mixing weights."""
        c = self.config
        w1 = jnp.abs(self.hyper_w1(state)).reshape(state.shape[:-1] + (c.num_agents, c.embed_dim))
        w2 = jnp.abs(self.hyper_w2(state))
        return w1, w2

    def linear_weights(self, state):
        """k(s) [..., n] of the linear mixer (normalised over agents if configured)."""
        w1, w2 = self.layers(state)
        k = jnp.einsum("...ne,...e->...n", w1, w2)
        if self.config.normalise_weights:
            k = k / jnp.maximum(jnp.sum(k, axis=-1, keepdims=True), 1e-8)
        return k

    def __call__(self, agent_qs, state):
        c = self.config
        if c.kind == "linear":
            q_tot = jnp.sum(self.linear_weights(state) * agent_qs, axis=-1)
            if c.state_bias:  # b(s) = b_1(s)·|w_2(s)| + V(s)
                w2 = self.layers(state)[1]
                q_tot = q_tot + jnp.sum(self.hyper_b1(state) * w2, axis=-1) + self.value(state)[..., 0]
            return q_tot
        w1, w2 = self.layers(state)
        hidden = jnp.einsum("...n,...ne->...e", agent_qs, w1)
        if c.state_bias:
            hidden = hidden + self.hyper_b1(state)
        q_tot = jnp.sum(nn.elu(hidden) * w2, axis=-1)
        return q_tot + self.value(state)[..., 0] if c.state_bias else q_tot


def init_mixer(config: MixerConfig, key: jax.Array):
    dummy_qs = jnp.zeros((1, config.num_agents), jnp.float32)
    dummy_state = jnp.zeros((1, config.state_dim), jnp.float32)
    return MonotonicMixer(config).init(key, dummy_qs, dummy_state)


def mix(config: MixerConfig, params, agent_qs: jax.Array, state: jax.Array) -> jax.Array:
    """Q_tot [...] from per-agent values agent_qs [..., n] and the global state [..., S]."""
    if agent_qs.shape[-1] != config.num_agents:
        raise ValueError(f"mix: agent_qs last axis expected {config.num_agents} agents, got {agent_qs.shape}")
    if state.shape[-1] != config.state_dim:
        raise ValueError(f"mix: state last axis expected width {config.state_dim}, got {state.shape}")
    return MonotonicMixer(config).apply(params, agent_qs, state)


def mixing_weights(config: MixerConfig, params, agent_qs: jax.Array, state: jax.Array) -> jax.Array:
    """k_i = ∂Q_tot/∂Q_i [..., n] (≥ 0): k(s) for the linear mixer, the local slope for QMIX."""
    if config.kind == "linear":
        return MonotonicMixer(config).apply(params, state, method=MonotonicMixer.linear_weights)
    flat_qs = agent_qs.reshape((-1, config.num_agents))
    flat_state = state.reshape((-1, config.state_dim))
    one = jax.grad(lambda q, s: mix(config, params, q, s))
    return jax.vmap(one)(flat_qs, flat_state).reshape(agent_qs.shape)
