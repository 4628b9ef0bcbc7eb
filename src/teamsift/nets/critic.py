"""Critics for the continuous offline learners, and Polyak averaging of target networks.

Two kinds, both with K independent heads (K = 2: the twin critics of TD3, whose minimum
gives the Bellman target):

* centralised — Q_k(s, a_1 … a_N): an MLP on the global state and the flattened joint
  action (MADDPG, MADDPG+CQL). `central_q` evaluates any number of joint actions per
  state, e.g. one per agent in the BRUD policy update;
* per agent — Q_{i,k}(o_i, a_i) for independent learners (TD3+BC, OMAR): one network
  per agent (parameters stacked on a leading agent axis and applied with `vmap`), or,
  with `shared=True`, one network for all agents told apart by a one-hot id.

Heads are MLPs (default 256-256, ReLU) with a scalar output; outputs put the head axis
first: [K, ...].

Many actions at one input (CQL's sampled actions, a CEM search, BRUD's N joint actions):
`central_q_actions` and `agent_q_actions` score M actions per state or observation with
the first layer split by rows of its kernel, W₁ᵀ[x; a] + b₁ = (W_xᵀx + b₁) + W_aᵀa: the
state's part is computed once and added to every action's part, so no [.., M, S] copy of
the input is made. They read the parameters of `central_q` and `agent_q` (the same
checkpoints) and equal them up to float rounding.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from teamsift.nets.agent import MLP, with_agent_ids


class QHeads(nn.Module):
    """K independent MLPs x[..., I] → q[K, ...] (parameters stacked on a leading head axis)."""

    hidden: tuple[int, ...]
    num_heads: int

    @nn.compact
    def __call__(self, x):
        heads = nn.vmap(MLP, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, out_axes=0,
                        axis_size=self.num_heads)
        return heads(tuple(self.hidden), 1)(x)[..., 0]


def _check_heads(num_heads: int, where: str) -> None:
    if num_heads < 1:
        raise ValueError(f"{where}.num_heads: expected >= 1, got {num_heads}")


# --- centralised critic Q(s, a_1 … a_N) ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CentralCriticConfig:
    state_dim: int
    num_agents: int
    action_dim: int  # D per agent (the joint action has N·D entries)
    hidden: tuple[int, ...] = (256, 256)
    num_heads: int = 2

    @property
    def input_dim(self) -> int:
        return self.state_dim + self.num_agents * self.action_dim


def init_central_critic(config: CentralCriticConfig, key: jax.Array):
    _check_heads(config.num_heads, "CentralCriticConfig")
    return QHeads(config.hidden, config.num_heads).init(key, jnp.zeros((1, config.input_dim), jnp.float32))


def central_q(config: CentralCriticConfig, params, state: jax.Array, joint_actions: jax.Array) -> jax.Array:
    """Q_k(s, a): state[..., S] and joint_actions[..., N, D] → q[K, ...].

    The leading axes broadcast against each other, so one state [B, 1, S] can be paired
    with several joint actions [B, M, N, D] (→ q[K, B, M]).
    """
    flat = joint_actions.reshape(joint_actions.shape[:-2] + (config.num_agents * config.action_dim,))
    lead = jnp.broadcast_shapes(state.shape[:-1], flat.shape[:-1])
    x = jnp.concatenate([jnp.broadcast_to(state, lead + state.shape[-1:]),
                         jnp.broadcast_to(flat, lead + flat.shape[-1:])], axis=-1)
    return QHeads(config.hidden, config.num_heads).apply(params, x)


def central_q_actions(config: CentralCriticConfig, params, state: jax.Array, joint_actions: jax.Array) -> jax.Array:
    """Q_k(s, a^j) of M joint actions per state: state[..., S], joint_actions[..., M, N, D] → q[K, ..., M].

    Equals `central_q(config, params, state[..., None, :], joint_actions)`; the state's share
    of the first layer is computed once per state (see the module docstring).
    """
    flat = joint_actions.reshape(joint_actions.shape[:-2] + (config.num_agents * config.action_dim,))
    return split_input_heads(params, state, flat)


# --- many actions at one input: the first layer split ----------------------------------------

def split_input_heads(params, shared: jax.Array, per_action: jax.Array) -> jax.Array:
    """`QHeads` (params of K heads) on inputs [shared; a^j] for M actions per shared input.

    shared[..., I_x] and per_action[..., M, I_a] (leading axes broadcast; the kernel's first
    I_x rows belong to `shared`) → q[K, ..., M]. Per head, every layer is one matmul over
    all inputs and actions.
    """
    layers = params["params"]["VmapMLP_0"]
    names = sorted(layers, key=lambda name: int(name.rsplit("_", 1)[1]))  # Dense_0, Dense_1, …
    width = shared.shape[-1]

    def head(layers):
        kernel, bias = layers[names[0]]["kernel"], layers[names[0]]["bias"]  # [I_x + I_a, H], [H]
        z = (shared @ kernel[:width] + bias)[..., None, :] + per_action @ kernel[width:]  # [..., M, H]
        for name in names[1:]:  # ReLU, then the next Dense (the last one's output is the scalar q)
            z = jax.nn.relu(z) @ layers[name]["kernel"] + layers[name]["bias"]
        return z[..., 0]

    return jax.vmap(head)(layers)


# --- per-agent critics Q_i(o_i, a_i) ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AgentCriticConfig:
    num_agents: int
    obs_dim: int
    action_dim: int
    hidden: tuple[int, ...] = (256, 256)
    num_heads: int = 2
    shared: bool = False  # True: one network with agent ids; False: one network per agent

    @property
    def input_dim(self) -> int:
        return self.obs_dim + self.action_dim + (self.num_agents if self.shared else 0)


def init_agent_critic(config: AgentCriticConfig, key: jax.Array):
    """Parameters of the per-agent critics (leaves [N, ...] unless `shared`)."""
    _check_heads(config.num_heads, "AgentCriticConfig")
    module = QHeads(config.hidden, config.num_heads)
    dummy = jnp.zeros((1, config.input_dim), jnp.float32)
    if config.shared:
        return module.init(key, dummy)
    return jax.vmap(lambda k: module.init(k, dummy))(jax.random.split(key, config.num_agents))


def agent_q(config: AgentCriticConfig, params, obs: jax.Array, actions: jax.Array) -> jax.Array:
    """Q_{i,k}(o_i, a_i): obs[..., N, O] and actions[..., N, D] → q[K, ..., N].

    Leading axes broadcast (obs [B, N, O] against actions [B, M, N, D] gives [K, B, M, N]).
    """
    module = QHeads(config.hidden, config.num_heads)
    if config.shared:
        obs = with_agent_ids(obs, config.num_agents)
    lead = jnp.broadcast_shapes(obs.shape[:-1], actions.shape[:-1])
    x = jnp.concatenate([jnp.broadcast_to(obs, lead + obs.shape[-1:]),
                         jnp.broadcast_to(actions, lead + actions.shape[-1:])], axis=-1)
    if config.shared:
        return module.apply(params, x)
    # One network per agent: map agent i's parameters over slot i (axis −2 of the input).
    return jax.vmap(module.apply, in_axes=(0, -2), out_axes=-1)(params, x)


def agent_q_actions(config: AgentCriticConfig, params, obs: jax.Array, actions: jax.Array) -> jax.Array:
    """Q_{i,k}(o_i, a^j_i) of M actions per observation: obs[..., N, O], actions[..., M, N, D] → q[K, ..., M, N].

    Equals `agent_q(config, params, obs[..., None, :, :], actions)`; each observation's share
    of the first layer (with its agent id when `shared`) is computed once.
    """
    if config.shared:
        obs = with_agent_ids(obs, config.num_agents)
        return jnp.moveaxis(split_input_heads(params, obs, jnp.moveaxis(actions, -3, -2)), -1, -2)
    # One network per agent: map agent i's parameters over its observation and actions.
    per_agent = jax.vmap(split_input_heads, in_axes=(0, -2, -2), out_axes=-1)  # → [K, ..., M, N]
    return per_agent(params, obs, actions)


def one_head(config: CentralCriticConfig | AgentCriticConfig, params, k: int):
    """Head k's parameters alone, for `central_q_actions` / `agent_q_actions` (which then
    return q[1, ...]) when only that head is read."""
    axis = 1 if isinstance(config, AgentCriticConfig) and not config.shared else 0  # per agent: [N, K, ...]
    return jax.tree.map(lambda x: jax.lax.slice_in_dim(x, k, k + 1, axis=axis), params)


# --- target networks ----------------------------------------------------------------------

def polyak_update(target, online, tau: float):
    """θ̄ ← (1 − τ)·θ̄ + τ·θ for every leaf."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)
