"""Pieces the continuous-action learners share (TD3+BC, OMAR, MADDPG+CQL): the
parameter-shared deterministic actor, batches of joint transitions with clipped actions,
the dataset's observation statistics, the per-agent actor-critic state of TD3+BC and OMAR,
weighted means for `batch["weight"]`, and the joint-action distance PJAP learns from."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from teamsift.data import gather_transitions
from teamsift.data.pjap import sequence_distance
from teamsift.nets import AgentNetConfig, apply_step
from teamsift.nets.critic import AgentCriticConfig
from teamsift.nets.normalization import STD_EPS, RunningStats
from teamsift.nets import ops

#: Step fields the transition learners read (next_obs comes from final_obs at episode ends).
TRANSITION_FIELDS = ("obs", "actions", "reward", "terminated", "truncated", "final_obs")

OBS_STD_FLOOR = 1e-3  # TD3+BC's code: (o − μ) / (σ + 1e-3)


def actor_config(spec, hidden: tuple[int, ...], recurrent: bool = False) -> AgentNetConfig:
    """The parameter-shared deterministic actor: obs (+ agent id) → MLP/GRU → tanh."""
    return AgentNetConfig(num_agents=spec.num_agents, obs_dim=spec.obs_dim, num_actions=spec.num_actions,
                          discrete=False, recurrent=recurrent, hidden=tuple(hidden))


def actor_actions(net: AgentNetConfig, params, obs: jax.Array) -> jax.Array:
    """π(o) for obs [..., N, O] → [..., N, D] (feed-forward actors)."""
    return apply_step(net, params, obs, None)[0]


def agent_critic_config(config, spec) -> AgentCriticConfig:
    """Per-agent critics Q_i(o_i, a_i) from a config's `critic_hidden` and `shared_critic`."""
    return AgentCriticConfig(num_agents=spec.num_agents, obs_dim=spec.obs_dim, action_dim=spec.num_actions,
                             hidden=tuple(config.critic_hidden), shared=config.shared_critic)


def transition_batch(arrays: dict, rows: jax.Array) -> dict:
    """The joint transitions at step rows [B] (`gather_transitions`), with actions clipped to
    [−1, 1] and the float flag `not_terminal`."""
    batch = gather_transitions(arrays, rows)
    batch["actions"] = jnp.clip(batch["actions"], -1.0, 1.0)
    batch["not_terminal"] = 1.0 - batch["terminated"].astype(jnp.float32)
    return batch


def obs_statistics(dataset, rows_per_chunk: int = 1 << 16) -> RunningStats:
    """Mean of every observation feature over all steps and agents, and a variance chosen so
    that `RunningStats.std()` (√(var + 1e-8)) is σ_D + 1e-3.

    Two passes over the (memory-mapped) observations in chunks of rows, accumulated in
    float64, so no float64 copy of the whole array is made."""
    obs = dataset.steps["obs"]
    dim = dataset.spec.obs_dim
    count = 0
    total = np.zeros(dim, np.float64)
    for first in range(0, obs.shape[0], rows_per_chunk):
        chunk = np.asarray(obs[first:first + rows_per_chunk]).reshape(-1, dim)
        total += chunk.sum(0, dtype=np.float64)
        count += chunk.shape[0]
    mean = total / count
    squares = np.zeros(dim, np.float64)
    for first in range(0, obs.shape[0], rows_per_chunk):
        chunk = np.asarray(obs[first:first + rows_per_chunk]).reshape(-1, dim)
        squares += np.square(chunk - mean).sum(0)  # float32 chunk − float64 mean: float64
    std = np.sqrt(squares / count) + OBS_STD_FLOOR
    return RunningStats(jnp.asarray(mean, jnp.float32), jnp.asarray(std**2 - STD_EPS, jnp.float32),
                        jnp.float32(count))


class ActorCriticState(NamedTuple):
    """One seed's training state of the per-agent actor-critic learners (TD3+BC, OMAR)."""

    actor: Any
    actor_target: Any
    critic: Any
    critic_target: Any
    actor_opt: Any
    critic_opt: Any
    step: jax.Array  # updates done


# --- per-decision weights (`batch["weight"]`) -----------------------------------------------------

def agent_mean(x: jax.Array, weight: jax.Array | None) -> jax.Array:
    """The mean of per-(sample, agent) terms x [..., B, N]: plain when `weight` is None,
    else the weighted mean with the agents' weights [B, N]."""
    return jnp.mean(x) if weight is None else ops.weighted_mean(x, True, weight)


# --- PJAP's d_τ for single transitions -------------------------------------------------------------

def transition_distance(target_actions: jax.Array, actions: jax.Array) -> jax.Array:
    """d_τ of PJAP's eq. (1) with T = 1: (1/(N·D))‖μ̄(o) − a^D‖₁ per transition, [B, N, D] → [B]."""
    return sequence_distance(target_actions[:, None], actions[:, None])
