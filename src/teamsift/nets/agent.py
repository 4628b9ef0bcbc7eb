"""Parameter-shared agent networks: one network for all agents, told apart by a one-hot id.

Two bodies:
  * `AgentMLP`  — obs (+ id) → MLP → head, for fully observable environments;
  * `AgentGRU`  — obs (+ id) → Dense → ReLU → GRU → head, for partially observable
    ones, unrolled over an episode with `lax.scan`.

Heads: discrete → logits (masked by available actions with `masked_logits`);
continuous → `tanh` mean in [−1, 1].
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

NEG_INF = -1e9


@dataclasses.dataclass(frozen=True)
class AgentNetConfig:
    """Everything needed to rebuild an agent network (saved beside its parameters)."""

    num_agents: int
    obs_dim: int
    num_actions: int  # nA (discrete) or D (continuous)
    discrete: bool
    recurrent: bool = False
    hidden: tuple[int, ...] = (64, 64)
    agent_ids: bool = True
    # Continuous only: a learned, state-independent log standard deviation per action
    # dimension (parameter `log_std`), used when the policy acts stochastically.
    learned_std: bool = False

    @property
    def input_dim(self) -> int:
        return self.obs_dim + (self.num_agents if self.agent_ids else 0)


def with_agent_ids(obs: jax.Array, num_agents: int) -> jax.Array:
    """Append one-hot agent ids to obs[..., A, O] → [..., A, O + A]."""
    ids = jnp.broadcast_to(jnp.eye(num_agents, dtype=obs.dtype), obs.shape[:-1] + (num_agents,))
    return jnp.concatenate([obs, ids], axis=-1)


def masked_logits(logits: jax.Array, avail: jax.Array | None) -> jax.Array:
    """Unavailable actions get a logit of −1e9, so softmax and argmax never pick them."""
    if avail is None:
        return logits
    return jnp.where(avail, logits, NEG_INF)


class MLP(nn.Module):
    hidden: Sequence[int]
    out_dim: int
    activate_final: bool = False

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        x = nn.Dense(self.out_dim)(x)
        return nn.relu(x) if self.activate_final else x


def _continuous_head(module: nn.Module, config: AgentNetConfig, out):
    if config.learned_std:
        module.param("log_std", nn.initializers.constant(-0.5), (config.num_actions,))
    return jnp.tanh(out)


class AgentMLP(nn.Module):
    config: AgentNetConfig

    @nn.compact
    def __call__(self, obs):
        out = MLP(self.config.hidden, self.config.num_actions)(obs)
        return out if self.config.discrete else _continuous_head(self, self.config, out)


class AgentGRU(nn.Module):
    """One step of the recurrent agent: (carry[..., H], obs[..., I]) → (carry, out)."""

    config: AgentNetConfig

    @nn.compact
    def __call__(self, carry, obs):
        width = self.config.hidden[0]
        x = nn.relu(nn.Dense(width)(obs))
        carry, x = nn.GRUCell(features=width)(carry, x)
        out = MLP(self.config.hidden[1:], self.config.num_actions)(nn.relu(x))
        return carry, (out if self.config.discrete else _continuous_head(self, self.config, out))

    def initial_carry(self, batch_shape: tuple[int, ...]) -> jax.Array:
        return jnp.zeros(batch_shape + (self.config.hidden[0],), jnp.float32)


def action_std(config: AgentNetConfig, params) -> jax.Array | None:
    """The learned action standard deviation [D] (continuous, learned_std), else None."""
    if config.discrete or not config.learned_std:
        return None
    return jnp.exp(params["params"]["log_std"])


def build(config: AgentNetConfig) -> nn.Module:
    return AgentGRU(config) if config.recurrent else AgentMLP(config)


def init_params(config: AgentNetConfig, key: jax.Array):
    net = build(config)
    dummy = jnp.zeros((config.num_agents, config.input_dim), jnp.float32)
    if config.recurrent:
        return net.init(key, net.initial_carry((config.num_agents,)), dummy)
    return net.init(key, dummy)


def initial_carry(config: AgentNetConfig, batch_shape: tuple[int, ...] = ()) -> jax.Array | None:
    """Zero GRU state [..., A, H] for recurrent configs, None otherwise."""
    if not config.recurrent:
        return None
    return jnp.zeros(batch_shape + (config.num_agents, config.hidden[0]), jnp.float32)


def apply_step(config: AgentNetConfig, params, obs, carry):
    """One decision for all agents: obs[..., A, O] → (outputs[..., A, nA|D], carry)."""
    net = build(config)
    inputs = with_agent_ids(obs, config.num_agents) if config.agent_ids else obs
    if config.recurrent:
        carry, out = net.apply(params, carry, inputs)
        return out, carry
    return net.apply(params, inputs), carry


def apply_agent(config: AgentNetConfig, params, obs, agent_index, carry):
    """One decision of one agent: obs[O] with its own id → (output[nA|D], carry[H] | None).

    Used when every slot plays different parameters (a bank of checkpoints): each slot
    evaluates only its own network instead of the whole team's.
    """
    inputs = obs
    if config.agent_ids:
        inputs = jnp.concatenate([obs, jax.nn.one_hot(agent_index, config.num_agents, dtype=obs.dtype)])
    net = build(config)
    if config.recurrent:
        carry, out = net.apply(params, carry, inputs)
        return out, carry
    return net.apply(params, inputs), carry


def apply_sequence(config: AgentNetConfig, params, obs_seq, carry=None):
    """Unroll over time: obs_seq[T, ..., A, O] → outputs[T, ..., A, nA|D].

    For recurrent configs the GRU state starts at zero (or `carry`) and is scanned over T.
    """
    if not config.recurrent:
        return apply_step(config, params, obs_seq, None)[0]
    if carry is None:
        carry = initial_carry(config, obs_seq.shape[1:-2])

    def step(carry, obs):
        out, carry = apply_step(config, params, obs, carry)
        return carry, out

    return jax.lax.scan(step, carry, obs_seq)[1]
