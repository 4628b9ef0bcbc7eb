"""MACQL: multi-agent conservative Q-learning for discrete actions (SIT appendix B, eq. 13).

    Q_i(τ_i, ·)  parameter-shared recurrent agent network (GRU 64), one output per action
    Q(τ, a) = Σ_i w_i(s) Q_i(τ_i, a_i) + b(s)      linear mixer, w ≥ 0 (`nets.mixer`)

    for update in 1 … num_updates:                      (lax.scan inside jit)
        sample 32 whole episodes from the dataset
        y_t  Tree-Backup(λ) return under the greedy target policy (eq. R of offline_common):
             V_{t+1} = Q'(τ_{t+1}, argmax Q'),  c_{t+1} = λ·1[a_{t+1} = argmax Q'_i for every i]
        L(φ, φ_i) = β_CQL · E[ Σ_i ( log Σ_{a_i ∈ avail} exp(w_i Q_i(τ_i, a_i)) − w_i Q_i(τ_i, a_i^D) ) ]
                    + ½ E[ (y_t − Q(τ_t, a_t^D))² ]                                     (eq. 13)
        (φ, φ_i) ← RMSProp(∇L), gradients clipped to norm 10
        every 100 updates: target networks ← online networks
    act: a_i = argmax_{a ∈ avail} Q_i(τ_i, a)  (= the greedy joint action of the monotonic mixer)

Defaults follow SIT Table 11 (shared agent-training settings and β_CQL = 2.0): RMSProp,
lr 5e-4, γ 0.99, gradient clipping 10, GRU 64, mixer hidden 32, batch 32 episodes,
target update interval 100, 15 000 updates.

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
    after Yang et al. 2021); `mixer="qmix"` swaps in QMIX's nonlinear mixer (then w_i is
    the mixer's local slope ∂Q/∂Q_i).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from teamsift.algos import offline_common as oc
from teamsift.nets import AgentNetConfig, NetworkPolicy, init_params
from teamsift.nets.mixer import MixerConfig, init_mixer, mix, mixing_weights


@dataclasses.dataclass(frozen=True)
class MACQLConfig:
    hidden: tuple[int, ...] = (64,)  # GRU 64 → linear head (PyMARL's RNN agent)
    recurrent: bool = True
    mixer: str = "linear"  # "linear" (SIT appendix B) | "qmix"
    mixer_embed: int = 32
    cql_weight: float = 2.0  # β_CQL (SIT Table 11)
    tree_backup_lambda: float = 0.93  # (ours) λ of Tree Backup; 0 = one-step target
    gamma: float = 0.99
    learning_rate: float = 5e-4
    max_grad_norm: float = 10.0
    batch_size: int = 32  # episodes
    target_update_interval: int = 100
    bootstrap_truncated: bool = True  # time-limit ends bootstrap from the final observation (PyMARL)
    num_updates: int = 15_000
    log_every: int = 500

    def __post_init__(self):
        oc.require_positive(self, ("mixer_embed", "gamma", "learning_rate", "max_grad_norm", "batch_size",
                                   "target_update_interval"))
        oc.require_unit_interval(self, ("tree_backup_lambda", "gamma"))
        if self.cql_weight < 0:
            raise ValueError(f"MACQLConfig.cql_weight: expected a non-negative number, got {self.cql_weight!r}")


def mixer_config(config: MACQLConfig, spec) -> MixerConfig:
    return MixerConfig(num_agents=spec.num_agents, state_dim=spec.state_dim, embed_dim=config.mixer_embed,
                       kind=config.mixer)


def cql_regulariser(q: jax.Array, avail: jax.Array, actions: jax.Array, weights: jax.Array) -> jax.Array:
    """Σ_i [ logsumexp_{a ∈ avail} w_i Q_i(a) − w_i Q_i(a^D_i) ]  per step ([B, T, A, nA] → [B, T])."""
    scaled = weights[..., None] * q
    logsumexp = jax.nn.logsumexp(oc.masked_values(scaled, avail), axis=-1)
    return jnp.sum(logsumexp - oc.taken(scaled, actions), axis=-1)


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
    """Eq. 13 on a batch of padded episodes."""
    q_target_ext = oc.unroll(net, target["agent"], batch["obs_ext"])
    y = jax.lax.stop_gradient(tree_backup_targets(mixer, q_target_ext, target["mixer"], batch, config))
    q = oc.unroll(net, params["agent"], batch["obs"])
    q_data = oc.taken(q, batch["actions"])
    q_tot = mix(mixer, params["mixer"], q_data, batch["state"])
    weights = mixing_weights(mixer, params["mixer"], q_data, batch["state"])
    regulariser = cql_regulariser(q, batch["avail"], batch["actions"], weights)
    td = 0.5 * oc.masked_mean((y - q_tot) ** 2, batch["mask"])
    return config.cql_weight * oc.masked_mean(regulariser, batch["mask"]) + td


@functools.lru_cache(maxsize=None)
def make_update(net: AgentNetConfig, mixer: MixerConfig, config: MACQLConfig, max_length: int):
    """The pure update: ((params, target, opt_state, step), key, data) → (carry, loss)."""
    optimizer = oc.rmsprop(config.learning_rate, config.max_grad_norm)

    def update(carry, key, data):
        params, target, opt_state, step = carry
        batch = oc.sample_episodes(key, data, config.batch_size, max_length, config.bootstrap_truncated)
        loss, grads = jax.value_and_grad(macql_loss)(params, target, batch, net, mixer, config)
        params, opt_state = oc.apply_gradients(optimizer, params, opt_state, grads)
        target = oc.hard_update(target, params, step, step + 1, config.target_update_interval)
        step = step + 1
        return (params, target, opt_state, step), loss

    return update


@functools.lru_cache(maxsize=None)
def make_init(net: AgentNetConfig, mixer: MixerConfig, config: MACQLConfig):
    """seed keys [n] → carries (params, target = params, optimiser state, step 0), jitted."""
    optimizer = oc.rmsprop(config.learning_rate, config.max_grad_norm)

    def init(seed_key):
        agent_key, mixer_key = jax.random.split(seed_key)
        params = {"agent": init_params(net, agent_key), "mixer": init_mixer(mixer, mixer_key)}
        return params, params, optimizer.init(params), jnp.int32(0)

    return oc.batched_init(init)


def train(config: MACQLConfig, dataset, key: jax.Array, *, num_seeds: int = 1,
          progress: bool = True) -> tuple[NetworkPolicy, dict[str, Any]]:
    """Learn per-agent Q networks from `dataset`; the policy acts greedily w.r.t. Q_i over
    available actions. With num_seeds > 1 the policy's params have a leading seed axis."""
    oc.require_discrete(dataset, "MACQL")
    net = oc.agent_net_config(dataset.spec, config.hidden, config.recurrent)
    mixer = mixer_config(config, dataset.spec)
    shape_config = dataclasses.replace(config, num_updates=0, log_every=0)  # the fields that shape the program
    update = make_update(net, mixer, shape_config, int(dataset.lengths.max()))
    carry, losses = oc.train_seeds(update, make_init(net, mixer, shape_config), key, num_seeds, config.num_updates, config.log_every,
                                   oc.episode_data(dataset), progress=progress, label="MACQL")
    params = oc.seed_params(carry[0], num_seeds)
    policy = NetworkPolicy(params=params["agent"], config=net, deterministic=True)
    logs = {"loss": np.asarray(losses), "num_seeds": num_seeds, "config": dataclasses.asdict(config),
            "mixer": jax.tree.map(np.asarray, params["mixer"])}
    return policy, logs
