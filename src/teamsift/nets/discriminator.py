"""MLP discriminators for multi-agent adversarial imitation (MAGAIL, Song et al. 2018).

Two kinds, both scoring one joint transition (s, o^{1:A}, a^{1:A}) with a logit per agent:

  * decentralised — D_i(o_i, a_i, id_i): one MLP applied to every agent's own observation,
    its own action and (by default) its one-hot id, parameters shared across agents
    (`shared=True`, the id tells the agents apart) or one MLP per agent (`shared=False`).
    Output [..., A]: one logit per agent.
  * centralised — D(s, a^{1:A}): one MLP over the global state (or, with `use_state=False`,
    all observations concatenated) and the joint action. Output: one logit, broadcast to
    [..., A] so both kinds plug into the same per-agent loss and reward.

Action features: discrete actions are one-hot encoded over `num_actions`; continuous
actions are used raw, clipped to the environment's range [−1, 1] (generators such as our
MAPPO keep the unclipped Gaussian sample, the expert data holds what the env executed, so
without the clip out-of-range actions alone would give the generator away).

A logit d is "how expert-like": d > 0 leans expert. The loss and the reward built on it
(BCE, 2σ(d) − 1) live with the learner (`teamsift.algos.magail`).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from teamsift.nets.agent import MLP, with_agent_ids


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """Everything that shapes an MLP discriminator (static under jit)."""

    num_agents: int
    obs_dim: int
    state_dim: int
    num_actions: int  # nA (discrete) or D (continuous)
    discrete: bool
    centralised: bool = False
    hidden: tuple[int, ...] = (128, 128)
    agent_ids: bool = True  # decentralised: append the one-hot id to each agent's input
    shared: bool = True  # decentralised: one parameter-shared MLP (else one MLP per agent)
    use_state: bool = True  # centralised: the global state (else all observations concatenated)

    @property
    def input_dim(self) -> int:
        """Width of one MLP input row."""
        if self.centralised:
            context = self.state_dim if self.use_state else self.num_agents * self.obs_dim
            return context + self.num_agents * self.num_actions
        return self.obs_dim + self.num_actions + (self.num_agents if self.agent_ids else 0)


def action_features(config: DiscriminatorConfig, actions: jax.Array) -> jax.Array:
    """actions [..., A] (int) or [..., A, D] (float) → features [..., A, nA | D]."""
    if config.discrete:
        return jax.nn.one_hot(actions.astype(jnp.int32), config.num_actions, dtype=jnp.float32)
    return jnp.clip(actions.astype(jnp.float32), -1.0, 1.0)


def decentralised_inputs(config: DiscriminatorConfig, obs: jax.Array, actions: jax.Array) -> jax.Array:
    """[o_i, a_i (, id_i)] per agent: obs [..., A, O] → [..., A, input_dim]."""
    own = with_agent_ids(obs, config.num_agents) if config.agent_ids else obs
    return jnp.concatenate([own, action_features(config, actions)], axis=-1)


def centralised_inputs(config: DiscriminatorConfig, obs: jax.Array, state: jax.Array, actions: jax.Array) -> jax.Array:
    """[s (or o^{1:A}), a^{1:A}]: → [..., input_dim]."""
    context = state if config.use_state else obs.reshape(obs.shape[:-2] + (-1,))
    joint = action_features(config, actions)
    joint = joint.reshape(joint.shape[:-2] + (-1,))
    return jnp.concatenate([context.astype(jnp.float32), joint], axis=-1)


class PerAgentMLPs(nn.Module):
    """One MLP per agent (own parameters), applied along the agent axis: [..., A, F] → [..., A, 1]."""

    hidden: tuple[int, ...]
    num_agents: int

    @nn.compact
    def __call__(self, x):
        agents_first = jnp.moveaxis(x, -2, 0)  # [A, ..., F]
        stacked = nn.vmap(MLP, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=0, out_axes=0,
                          axis_size=self.num_agents)
        return jnp.moveaxis(stacked(self.hidden, 1)(agents_first), 0, -2)


class MLPDiscriminator(nn.Module):
    """(obs [..., A, O], state [..., S], actions) → logits [..., A]."""

    config: DiscriminatorConfig

    @nn.compact
    def __call__(self, obs, state, actions):
        cfg = self.config
        if cfg.centralised:
            logit = MLP(cfg.hidden, 1)(centralised_inputs(cfg, obs, state, actions))  # [..., 1]
            return jnp.broadcast_to(logit, logit.shape[:-1] + (cfg.num_agents,))
        x = decentralised_inputs(cfg, obs, actions)
        body = MLP(cfg.hidden, 1) if cfg.shared else PerAgentMLPs(cfg.hidden, cfg.num_agents)
        return body(x)[..., 0]


def init_discriminator(config: DiscriminatorConfig, key: jax.Array):
    """Fresh parameters (from a dummy single transition)."""
    obs = jnp.zeros((config.num_agents, config.obs_dim), jnp.float32)
    state = jnp.zeros((config.state_dim,), jnp.float32)
    if config.discrete:
        actions = jnp.zeros((config.num_agents,), jnp.int32)
    else:
        actions = jnp.zeros((config.num_agents, config.num_actions), jnp.float32)
    return MLPDiscriminator(config).init(key, obs, state, actions)


def discriminator_logits(config: DiscriminatorConfig, params, obs, state, actions) -> jax.Array:
    """Per-agent logits d [..., A] for any leading batch shape."""
    return MLPDiscriminator(config).apply(params, obs, state, actions)
