"""Behaviour cloning with a parameter-shared agent network (the baseline of every paper here).

    for update in 1 … U:                                   (the engine: lax loops inside jit)
        draw a batch of joint transitions (MLP) or whole episodes (GRU)
        L(θ) = E[ Σ_i w_i · ℓ(π_θ(o_i, id_i), a_i) ] / E[ Σ_i w_i ]
            ℓ = −log softmax(masked logits)[a_i]      (discrete; unavailable actions masked)
            ℓ = ‖tanh(μ_θ(o_i, id_i)) − a_i‖²        (continuous)
        θ ← RMSProp(∇L), gradients clipped to norm 10

Defaults follow SIT's shared agent-training table (Table 11): RMSProp, lr 5e-4, gradient
clipping 10, GRU hidden 64, batch 32 episodes, 15 000 updates (the registry's budget).
MLP agents draw batches of `batch_size · 8` joint transitions instead of episodes (ours:
the same number of agent decisions as 32 short episodes).

The per-decision weights `w` are 1 for plain BC; a valuation passes 0/1 filters or soft
weights per (episode, slot) through the same loss (`fit(..., weights=...)`): EV2BC is BC
on Exchange-Value weights, group-BC on the best episodes (`teamsift.algos.selection`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from teamsift.checks import require_positive
from teamsift.data import gather_episodes, gather_transitions, to_device
from teamsift.engine import Learner
from teamsift.nets import AgentNetConfig, NetworkPolicy, apply_sequence, apply_step, init_params, masked_logits
from teamsift.nets.optim import OPTIMIZERS, clipped


@dataclasses.dataclass(frozen=True)
class BCConfig:
    hidden: tuple[int, ...] = (64, 64)
    recurrent: bool | None = None  # None: `default_recurrent(spec)`
    learning_rate: float = 5e-4
    optimizer: str = "rmsprop"  # a `teamsift.nets.optim.OPTIMIZERS` name (rmsprop: optax's)
    max_grad_norm: float = 10.0
    batch_size: int = 32  # episodes (GRU) — MLP batches hold batch_size · 8 transitions
    # Discrete policies act by sampling the cloned action distribution (a faithful copy of
    # the behaviour); False: always take its most likely action.
    sample_actions: bool = True

    def __post_init__(self):
        require_positive(self, ("learning_rate", "max_grad_norm", "batch_size"))
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"BCConfig.optimizer: expected one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"BCConfig.hidden: expected positive layer widths, got {self.hidden!r}")


class BCState(NamedTuple):
    params: dict
    opt_state: optax.OptState


def default_recurrent(spec) -> bool:
    """GRU agents for partially observable discrete environments (SIT Table 11's GRU 64 on
    batches of 32 whole episodes); MLP agents otherwise, as the continuous-control learners
    (TD3+BC, OMAR, MADDPG+CQL) use."""
    return bool(spec.partially_observable and spec.discrete)


def net_config(config: BCConfig, spec) -> AgentNetConfig:
    recurrent = default_recurrent(spec) if config.recurrent is None else config.recurrent
    return AgentNetConfig(num_agents=spec.num_agents, obs_dim=spec.obs_dim, num_actions=spec.num_actions,
                          discrete=spec.discrete, recurrent=recurrent, hidden=tuple(config.hidden))


def make_optimizer(config: BCConfig) -> optax.GradientTransformation:
    return clipped(config.optimizer, config.learning_rate, config.max_grad_norm)


def action_loss(net: AgentNetConfig, outputs, actions, avail):
    """Per-(…, agent) imitation loss: masked cross-entropy or squared error."""
    if net.discrete:
        log_probs = jax.nn.log_softmax(masked_logits(outputs, avail), axis=-1)
        return -jnp.take_along_axis(log_probs, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.sum((outputs - actions) ** 2, axis=-1)


def bc_loss(params, net: AgentNetConfig, batch: dict) -> jax.Array:
    """Weighted BC loss on a batch of transitions [B, A, …] or episodes [B, T, A, …]
    (padded steps carry weight 0)."""
    if net.recurrent:
        obs_time_major = jnp.swapaxes(batch["obs"], 0, 1)  # [T, B, A, O]
        outputs = jnp.swapaxes(apply_sequence(net, params, obs_time_major), 0, 1)
    else:
        outputs = apply_step(net, params, batch["obs"], None)[0]
    per_agent = action_loss(net, outputs, batch["actions"], batch.get("avail"))
    weights = batch["weight"] if "weight" in batch else jnp.ones_like(per_agent)
    if "mask" in batch:
        weights = weights * batch["mask"][..., None]
    return jnp.sum(per_agent * weights) / jnp.maximum(jnp.sum(weights), 1e-8)


def prepare(dataset, inputs: dict) -> dict:
    return to_device(dataset, ("obs", "actions", "avail") if dataset.spec.discrete else ("obs", "actions"))


@functools.lru_cache(maxsize=None)
def make_learner(config: BCConfig, net: AgentNetConfig, max_length: int) -> Learner:
    optimizer = make_optimizer(config)

    def init(key, arrays) -> BCState:
        params = init_params(net, key)
        return BCState(params, optimizer.init(params))

    def update(state: BCState, key, arrays, items):
        if net.recurrent:  # whole episodes from t = 0, padded
            batch = gather_episodes(arrays, items, max_length)
        else:  # joint transitions
            batch = gather_transitions(arrays, items)
        loss, grads = jax.value_and_grad(bc_loss)(state.params, net, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return BCState(optax.apply_updates(state.params, updates), opt_state), {"loss": loss}

    def policy(state: BCState, arrays) -> NetworkPolicy:
        return NetworkPolicy(params=state.params, config=net, deterministic=not (config.sample_actions and net.discrete))

    return Learner("bc", init, update, policy, prepare=prepare, unit="episode" if net.recurrent else "step",
                   batch_size=config.batch_size if net.recurrent else config.batch_size * 8, config=config)


def learner(config: BCConfig, dataset) -> Learner:
    return make_learner(config, net_config(config, dataset.spec), int(dataset.lengths.max()))
