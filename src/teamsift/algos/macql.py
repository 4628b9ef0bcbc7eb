"""MACQL: multi-agent conservative Q-learning for discrete actions (SIT appendix B, eq. 13).

    Q_i(τ_i, ·)  parameter-shared recurrent agent network (GRU 64), one output per action
    Q(τ, a) = Σ_i w_i(s) Q_i(τ_i, a_i) + b(s)      linear mixer, w ≥ 0, Σ_i w_i = 1 (`nets.mixer`)

    for update in 1 … U:                                (the engine: lax loops inside jit)
        draw 32 whole episodes (the run's sampler)
        y_t  Tree-Backup(λ) return under the greedy target policy (eq. R of offline_common):
             V_{t+1} = Q'(τ_{t+1}, argmax Q'),  c_{t+1} = λ·1[a_{t+1} = argmax Q'_i for every i]
        L(φ, φ_i) = β_CQL · E[ Σ_i ( log Σ_{a_i ∈ avail} exp(w_i Q_i(τ_i, a_i)) − w_i Q_i(τ_i, a_i^D) ) ]
                    + ½ E[ (y_t − Q(τ_t, a_t^D))² ]                                     (eq. 13)
        (φ, φ_i) ← RMSProp(∇L), gradients clipped to norm 10
        every 100 updates: target networks ← online networks
    act: a_i = argmax_{a ∈ avail} Q_i(τ_i, a)  (= the greedy joint action of the monotonic mixer)

Defaults follow SIT Table 11 (shared agent-training settings and β_CQL = 2.0): RMSProp,
lr 5e-4, γ 0.99, gradient clipping 10, GRU 64, mixer hidden 32, batch 32 episodes,
target update interval 100, 15 000 updates (the registry's budget).

Choices where SIT is silent (ours):
  * eq. 13 writes log Σ exp(w_i Q_i + b) per agent against one Q(τ, a^D) = Σ_i w_i Q_i + b;
    that differs from the form above only by (n − 1)·b(s), which does not depend on the
    actions (it would only drag the bias down), so the regulariser here is per agent and
    bias-free;
  * y is SIT's "n-step off-policy estimation (e.g. Tree Backup)": Tree Backup(λ) over the
    whole episode with λ = 0.93, the tree-backup λ of the ICQ reference configuration
    (`tree_backup_lambda=0` gives the one-step Q-learning target);
  * the greedy target action is chosen and evaluated by the target networks;
  * the mixer is the linear, bias-carrying one of SIT's appendix B ("Q = w_i Q_i + b",
    after Yang et al. 2021), with its weights normalised to sum to 1 over the agents as in
    ICQ's reference mixer (`normalise_mixer=True`; unnormalised, they grow during training
    and the critic drifts, as MABCQ's diverges); `mixer="qmix"` (with
    `normalise_mixer=False`) swaps in QMIX's nonlinear mixer (then w_i is the mixer's
    local slope ∂Q/∂Q_i);
  * per-decision weights (`fit(..., weights=...)`, `batch["weight"]` w_{t,i}) weigh each
    agent's regulariser term by w_{t,i} and each step's TD term by w̄_t = mean_i w_{t,i},
    both normalised by Σ_t w̄_t (so that unit weights give the loss above).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from teamsift.algos import offline_common as oc
from teamsift.checks import (
    require_discrete, require_non_negative, require_positive, require_unit_interval,
)
from teamsift.engine import Learner
from teamsift.nets import AgentNetConfig, NetworkPolicy, init_params
from teamsift.nets.mixer import MixerConfig, init_mixer, mix, mixing_weights
from teamsift.nets import ops


@dataclasses.dataclass(frozen=True)
class MACQLConfig:
    hidden: tuple[int, ...] = (64,)  # GRU 64 → linear head (PyMARL's RNN agent)
    recurrent: bool = True
    mixer: str = "linear"  # "linear" (SIT appendix B) | "qmix"
    normalise_mixer: bool = True  # linear: k_i(s) / Σ_j k_j(s), ICQ's reference mixer (False: unbounded k)
    mixer_embed: int = 32
    cql_weight: float = 2.0  # β_CQL (SIT Table 11)
    tree_backup_lambda: float = 0.93  # (ours) λ of Tree Backup; 0 = one-step target
    gamma: float = 0.99
    learning_rate: float = 5e-4
    optimizer: str = oc.OPTIMIZER  # RMSProp (`nets.optim.OPTIMIZERS`; PyMARL's: "rmsprop_pymarl")
    max_grad_norm: float = 10.0
    batch_size: int = 32  # episodes
    target_update_interval: int = 100
    bootstrap_truncated: bool = True  # time-limit ends bootstrap from the final observation (PyMARL)

    def __post_init__(self):
        require_positive(self, ("mixer_embed", "gamma", "learning_rate", "max_grad_norm", "batch_size",
                                "target_update_interval"))
        require_unit_interval(self, ("tree_backup_lambda", "gamma"))
        require_non_negative(self, ("cql_weight",))
        oc.require_decomposition_mixer(self)
        oc.require_optimizer(self)
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"MACQLConfig.hidden: expected positive layer widths, got {self.hidden!r}")


class MACQLState(NamedTuple):
    """One seed's MACQL state."""

    params: dict  # {"agent": Q_i's parameters, "mixer": the mixer's}
    target: dict  # the target copy of `params`
    opt_state: optax.OptState
    step: jax.Array  # int32: updates so far (the target period counts them)


def net_config(config: MACQLConfig, spec) -> AgentNetConfig:
    return oc.agent_net_config(spec, config.hidden, config.recurrent)


def divergence_hint(config: MACQLConfig) -> str:
    """What to do when the loss diverges (for `oc.warn_if_diverged(history["loss"], ...)`)."""
    if config.mixer == "linear" and not config.normalise_mixer:
        return ("the linear mixer's weights are unnormalised (normalise_mixer=False), so they can grow and multiply "
                "the overestimation of the greedy target; set normalise_mixer=True (the default)")
    return (f"the greedy target overestimates; raise MACQLConfig.cql_weight (now {config.cql_weight:g}), lower the "
            f"learning rate (now {config.learning_rate:g}) or lengthen target_update_interval "
            f"(now {config.target_update_interval})")


def mixer_config(config: MACQLConfig, spec) -> MixerConfig:
    return oc.decomposition_mixer(config, spec)


def cql_terms(q: jax.Array, avail: jax.Array, actions: jax.Array, weights: jax.Array) -> jax.Array:
    """logsumexp_{a ∈ avail} w_i Q_i(a) − w_i Q_i(a^D_i)  per agent ([B, T, A, nA] → [B, T, A];
    `weights` are the mixer's w_i)."""
    scaled = weights[..., None] * q
    logsumexp = jax.nn.logsumexp(oc.masked_values(scaled, avail), axis=-1)
    return logsumexp - oc.taken(scaled, actions)


def cql_regulariser(q: jax.Array, avail: jax.Array, actions: jax.Array, weights: jax.Array) -> jax.Array:
    """Σ_i [ logsumexp_{a ∈ avail} w_i Q_i(a) − w_i Q_i(a^D_i) ]  per step ([B, T, A, nA] → [B, T])."""
    return jnp.sum(cql_terms(q, avail, actions, weights), axis=-1)


def tree_backup_targets(mixer, q_target_ext, target_mixer, batch, config: MACQLConfig) -> jax.Array:
    """y_t: Tree Backup(λ) with the greedy policy of the target networks (eq. R).

    q_target_ext [B, T + 1, A, nA]: Q'_i over the episode and its final observation."""
    q_next, state_next = q_target_ext[:, 1:], batch["state_ext"][:, 1:]
    greedy = oc.greedy_actions(q_next, batch["avail_ext"][:, 1:])
    value = mix(mixer, target_mixer, oc.taken(q_next, greedy), state_next)  # V_{t+1} = max_a Q'
    data_value = mix(mixer, target_mixer, oc.taken(q_next, batch["actions_next"]), state_next)
    on_greedy = jnp.all(greedy == batch["actions_next"], axis=-1).astype(value.dtype)  # π(a_{t+1}) ∈ {0, 1}
    return oc.batch_returns(batch, value, config.gamma, config.tree_backup_lambda * on_greedy, data_value)


def macql_loss(params, target, batch, net: AgentNetConfig, mixer: MixerConfig, config: MACQLConfig):
    """Eq. 13 on a batch of padded episodes (weighted as the module docstring says when the
    batch has per-decision weights)."""
    q_target_ext = oc.unroll(net, target["agent"], batch["obs_ext"])
    y = jax.lax.stop_gradient(tree_backup_targets(mixer, q_target_ext, target["mixer"], batch, config))
    q = oc.unroll(net, params["agent"], batch["obs"])
    q_data = oc.taken(q, batch["actions"])
    q_tot = mix(mixer, params["mixer"], q_data, batch["state"])
    weights = mixing_weights(mixer, params["mixer"], q_data, batch["state"])
    if "weight" not in batch:
        regulariser = ops.weighted_mean(cql_regulariser(q, batch["avail"], batch["actions"], weights), batch["mask"])
        td = 0.5 * ops.weighted_mean((y - q_tot) ** 2, batch["mask"])
    else:  # Σ_t Σ_i w_{t,i} ℓ_{t,i} / Σ_t w̄_t = A · (Σ w ℓ / Σ w)
        terms = cql_terms(q, batch["avail"], batch["actions"], weights)
        regulariser = terms.shape[-1] * ops.weighted_mean(terms, batch["mask"][..., None], batch["weight"])
        td = 0.5 * ops.weighted_mean((y - q_tot) ** 2, batch["mask"], ops.step_weight(batch))
    return config.cql_weight * regulariser + td


def prepare(dataset, inputs: dict) -> dict:
    return oc.episode_data(dataset)


@functools.lru_cache(maxsize=None)
def make_learner(config: MACQLConfig, net: AgentNetConfig, mixer: MixerConfig, max_length: int) -> Learner:
    optimizer = oc.optimizer(config, config.learning_rate)

    def init(key, arrays) -> MACQLState:
        agent_key, mixer_key = jax.random.split(key)
        params = {"agent": init_params(net, agent_key), "mixer": init_mixer(mixer, mixer_key)}
        return MACQLState(params, params, optimizer.init(params), jnp.int32(0))

    def update(state: MACQLState, key, arrays, items):
        batch = oc.episode_batch(arrays, items, max_length, config.bootstrap_truncated)
        loss, grads = jax.value_and_grad(macql_loss)(state.params, state.target, batch, net, mixer, config)
        params, opt_state = oc.apply_gradients(optimizer, state.params, state.opt_state, grads)
        target = oc.hard_update(state.target, params, state.step, state.step + 1, config.target_update_interval)
        return MACQLState(params, target, opt_state, state.step + 1), {"loss": loss}

    def policy(state: MACQLState, arrays) -> NetworkPolicy:
        """Greedy w.r.t. Q_i over the available actions."""
        return NetworkPolicy(params=state.params["agent"], config=net, deterministic=True)

    return Learner("macql", init, update, policy, prepare=prepare, unit="episode",
                   batch_size=config.batch_size, headline="loss",
                   config=config)


def learner(config: MACQLConfig, dataset) -> Learner:
    """MACQL on `dataset` (a discrete-action dataset with avail masks and a global state)."""
    require_discrete(dataset, "MACQL")
    return make_learner(config, net_config(config, dataset.spec), mixer_config(config, dataset.spec),
                        int(dataset.lengths.max()))
