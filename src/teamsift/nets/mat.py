"""The Multi-Agent Transformer (Wen et al. 2022), MILD²'s autoregressive generator.

    encoder:  o^1 … o^N  →  LN → Dense → GELU → LN → n_block × EncoderBlock  →  ô^1 … ô^N
              value head  V(ô^k) per agent                      (one value per agent)
    decoder:  shifted joint action  (start, a^1, …, a^{N−1})  →  Dense → GELU → LN →
              n_block × DecoderBlock(causal self-attention; MAT-layout cross-attention
              whose queries are ô^k and whose keys are the action tokens j ≤ k)  →  head
              →  logits of π(a^k | o^{1:N}, a^{1:k−1})  (discrete, masked by `avail`)
                 or the mean of a Gaussian with std = 0.5 · sigmoid(log_std) (continuous;
                 MILD² / MAT: `log_std` a learned vector, initialised to 1)

Action tokens: discrete — one-hot over nA + 1 slots, slot 0 the start token
(`(1, 0, …, 0)` for agent 1, `(0, onehot(a^{k−1}))` for agent k > 1); continuous — the
raw previous action, zeros for agent 1.

Acting (`mat_act`) is autoregressive: a `lax.scan` over agents k = 1 … N decodes the
whole token sequence and reads row k (rows > k are placeholders that the causal masks
hide), samples a^k and writes its token into position k + 1. Training (`mat_log_prob`)
decodes the shifted actions ONCE, giving every agent's log-probability and entropy in one
parallel pass; the causal masks make the two agree exactly.

Every function works on one environment's agents ([A, O]) or on any leading batch axes
([..., A, O]); `jax.vmap` works too. An optional one-hot agent id is appended to each
observation (MAT's observations carry ids in SMAC; ours may not).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from teamsift.nets.agent import masked_logits, with_agent_ids
from teamsift.nets.ops import LOG_2PI, gaussian_log_density
from teamsift.nets.transformer import DecoderBlock, EncoderBlock

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MATNetConfig:
    """Everything needed to rebuild a MAT (saved beside its parameters)."""

    num_agents: int
    obs_dim: int
    num_actions: int  # nA (discrete) or D, the padded action width (continuous)
    discrete: bool
    action_dims: tuple[int, ...] | None = None  # continuous: each agent's real action width
    n_block: int = 1
    n_embd: int = 64
    n_head: int = 1
    agent_ids: bool = True

    @classmethod
    def for_spec(cls, spec, **kwargs) -> "MATNetConfig":
        action_dims = None if spec.discrete else tuple(spec.action_dims)
        return cls(spec.num_agents, spec.obs_dim, spec.num_actions, spec.discrete, action_dims, **kwargs)

    @property
    def token_dim(self) -> int:
        return self.num_actions + 1 if self.discrete else self.num_actions

    def action_mask(self) -> Array:
        """[A, D] float: 1 on each agent's real action dimensions (continuous)."""
        dims = self.action_dims or (self.num_actions,) * self.num_agents
        return jnp.asarray(np.arange(self.num_actions)[None, :] < np.asarray(dims)[:, None], jnp.float32)


class _Head(nn.Module):
    """Dense → GELU → LayerNorm → Dense (MAT's value and action heads)."""

    hidden: int
    out: int
    final_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        x = nn.LayerNorm()(nn.gelu(nn.Dense(self.hidden)(x)))
        return nn.Dense(self.out, kernel_init=nn.initializers.orthogonal(self.final_scale))(x)


class MAT(nn.Module):
    """Encoder (with per-agent values) and autoregressive decoder; see the module docstring."""

    config: MATNetConfig

    def setup(self):
        c = self.config
        block = dict(d_model=c.n_embd, num_heads=c.n_head, lipschitz=False, pre_norm=False)
        self.obs_norm = nn.LayerNorm()
        self.obs_embed = nn.Dense(c.n_embd)
        self.enc_norm = nn.LayerNorm()
        self.encoder = [EncoderBlock(**block) for _ in range(c.n_block)]
        self.value_head = _Head(c.n_embd, 1)
        self.act_embed = nn.Dense(c.n_embd, use_bias=not c.discrete)
        self.dec_norm = nn.LayerNorm()
        self.decoder = [DecoderBlock(**block, causal=True, mat_layout=True) for _ in range(c.n_block)]
        self.action_head = _Head(c.n_embd, c.num_actions, final_scale=0.01)  # near-uniform / near-zero start
        if not c.discrete:
            self.log_std = self.param("log_std", nn.initializers.ones, (c.num_actions,))

    def encode(self, obs: Array) -> tuple[Array, Array]:
        """obs [..., A, O] → (representation [..., A, n_embd], value [..., A])."""
        if self.config.agent_ids:
            obs = with_agent_ids(obs, self.config.num_agents)
        x = self.enc_norm(nn.gelu(self.obs_embed(self.obs_norm(obs))))
        for block in self.encoder:
            x = block(x)
        return x, self.value_head(x)[..., 0]

    def decode(self, tokens: Array, rep: Array) -> Array:
        """tokens [..., A, token_dim], rep [..., A, n_embd] → logits / means [..., A, nA | D]."""
        x = self.dec_norm(nn.gelu(self.act_embed(tokens)))
        for block in self.decoder:
            x = block(x, rep)
        return self.action_head(x)

    def __call__(self, obs: Array, tokens: Array):
        rep, value = self.encode(obs)
        return self.decode(tokens, rep), value


def init_mat_params(net: MATNetConfig, key: Array):
    """Fresh MAT parameters."""
    obs = jnp.zeros((net.num_agents, net.obs_dim))
    tokens = jnp.zeros((net.num_agents, net.token_dim))
    return MAT(net).init(key, obs, tokens)


def mat_encode(net: MATNetConfig, params, obs: Array) -> tuple[Array, Array]:
    return MAT(net).apply(params, obs, method=MAT.encode)


def mat_values(net: MATNetConfig, params, obs: Array) -> Array:
    """V per agent [..., A] (the encoder's value head)."""
    return mat_encode(net, params, obs)[1]


def mat_decode(net: MATNetConfig, params, tokens: Array, rep: Array) -> Array:
    return MAT(net).apply(params, tokens, rep, method=MAT.decode)


def action_std(net: MATNetConfig, params) -> Array:
    """Continuous: std = 0.5 · sigmoid(log_std) [D] (MAT / MILD²)."""
    return 0.5 * jax.nn.sigmoid(params["params"]["log_std"])


# --- action tokens -------------------------------------------------------------------------

def action_token(net: MATNetConfig, action: Array) -> Array:
    """The decoder token of one agent's action: [0, onehot(a)] (discrete) or a (continuous)."""
    if net.discrete:
        return jnp.concatenate([jnp.zeros(action.shape + (1,)), jax.nn.one_hot(action, net.num_actions)], axis=-1)
    return action


def start_tokens(net: MATNetConfig, batch_shape: tuple[int, ...] = ()) -> Array:
    """[..., A, token_dim]: the start token at position 0, zeros (placeholders) elsewhere."""
    tokens = jnp.zeros(batch_shape + (net.num_agents, net.token_dim))
    return tokens.at[..., 0, 0].set(1.0) if net.discrete else tokens


def shift_actions(net: MATNetConfig, actions: Array) -> Array:
    """Joint actions [..., A] | [..., A, D] → the shifted decoder input [..., A, token_dim]:
    position 0 holds the start token, position k the token of a^{k−1}."""
    batch_shape = actions.shape[:-1] if net.discrete else actions.shape[:-2]
    tokens = action_token(net, actions)[..., :-1, :]
    return start_tokens(net, batch_shape).at[..., 1:, :].set(tokens)


# --- distributions -------------------------------------------------------------------------

def _discrete(logits: Array, avail: Array | None, actions: Array) -> tuple[Array, Array]:
    """log π(a) and entropy of categoricals over masked logits [..., nA]."""
    logp_all = jax.nn.log_softmax(masked_logits(logits, avail), axis=-1)
    logp = jnp.take_along_axis(logp_all, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]
    terms = jnp.exp(logp_all) * logp_all
    if avail is not None:
        terms = jnp.where(avail, terms, 0.0)
    return logp, -jnp.sum(terms, axis=-1)


def _gaussian(mean: Array, std: Array, actions: Array, mask: Array) -> tuple[Array, Array]:
    """log N(a; mean, std²) and entropy, summed over the real action dimensions (`mask`)."""
    logp = gaussian_log_density(actions, mean, jnp.log(std), mask=mask)
    entropy = jnp.sum((jnp.log(std) + 0.5 * (1.0 + LOG_2PI)) * mask, axis=-1)
    return logp, jnp.broadcast_to(entropy, logp.shape)


def _sample(net: MATNetConfig, params, key, out: Array, avail: Array | None, mask: Array, deterministic: bool):
    """One agent's action from its decoder output [..., nA | D] (no clipping)."""
    if net.discrete:
        logits = masked_logits(out, avail)
        if deterministic:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
    if deterministic:
        return out * mask
    return (out + action_std(net, params) * jax.random.normal(key, out.shape)) * mask


def _log_prob(net: MATNetConfig, params, out: Array, avail, actions: Array, mask: Array):
    if net.discrete:
        return _discrete(out, avail, actions)
    return _gaussian(out, action_std(net, params), actions, mask)


# --- acting and training -------------------------------------------------------------------

def mat_act(net: MATNetConfig, params, obs: Array, avail: Array | None, key: Array, deterministic: bool = False):
    """Act autoregressively, agent by agent: obs [..., A, O], avail [..., A, nA] | None →
    (actions [..., A] int32 | [..., A, D] unclipped, log_prob [..., A], value [..., A]).

    One `lax.scan` over agents; step k decodes the token sequence built so far, samples
    a^k ~ π(· | o^{1:N}, a^{1:k−1}) (argmax / mean when deterministic) and writes its token
    into position k + 1. Padded continuous dimensions are set to 0."""
    rep, value = mat_encode(net, params, obs)
    batch_shape = obs.shape[:-2]
    mask = net.action_mask()
    positions = jnp.arange(net.num_agents)[:, None]

    def step(tokens, xs):
        k, step_key = xs
        out = mat_decode(net, params, tokens, rep)[..., k, :]
        avail_k = None if avail is None else avail[..., k, :]
        action = _sample(net, params, step_key, out, avail_k, mask[k], deterministic)
        logp, _ = _log_prob(net, params, out, avail_k, action, mask[k])
        token = action_token(net, action)[..., None, :]
        tokens = jnp.where(positions == k + 1, token, tokens)
        return tokens, (action, logp)

    xs = (jnp.arange(net.num_agents), jax.random.split(key, net.num_agents))
    _, (actions, log_prob) = jax.lax.scan(step, start_tokens(net, batch_shape), xs)
    agent_axis = len(batch_shape)
    return jnp.moveaxis(actions, 0, agent_axis), jnp.moveaxis(log_prob, 0, agent_axis), value


class MATEvaluation(NamedTuple):
    log_prob: Array  # [..., A]
    entropy: Array  # [..., A]
    value: Array  # [..., A]


def mat_log_prob(net: MATNetConfig, params, obs: Array, avail: Array | None, actions: Array) -> MATEvaluation:
    """All agents' log π(a^k | o, a^{1:k−1}), entropies and values in ONE parallel pass
    over the shifted joint action (teacher forcing). obs [..., A, O], actions [..., A] | [..., A, D]."""
    rep, value = mat_encode(net, params, obs)
    out = mat_decode(net, params, shift_actions(net, actions), rep)
    logp, entropy = _log_prob(net, params, out, avail, actions, net.action_mask())
    return MATEvaluation(logp, entropy, value)


# --- the policy the evaluator runs -----------------------------------------------------------

@struct.dataclass
class MATPolicy:
    """A MAT acting for the whole team (the `NetworkPolicy` interface: `initial_carry`,
    `act(key, obs[A,O], avail, carry) -> (actions, carry)`, `replace_mode`). Continuous
    actions are clipped to [−1, 1]; stochastic by default like a PPO generator."""

    params: Any
    config: MATNetConfig = struct.field(pytree_node=False)
    deterministic: bool = struct.field(pytree_node=False, default=True)

    def initial_carry(self):
        return None

    def act(self, key, obs, avail, carry):
        actions, _, _ = mat_act(self.config, self.params, obs, avail, key, self.deterministic)
        if not self.config.discrete:
            actions = jnp.clip(actions, -1.0, 1.0)
        return actions, carry

    def replace_mode(self, deterministic: bool) -> "MATPolicy":
        return self.replace(deterministic=deterministic)
