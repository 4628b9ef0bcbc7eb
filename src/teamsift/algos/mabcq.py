"""MABCQ: multi-agent discrete BCQ (SIT appendix B, eq. 12).

    μ_i(·|τ_i)   behaviour model: parameter-shared recurrent network trained first by
                 behaviour cloning (`teamsift.algos.bc`, eq. 11)
    Q_i(τ_i, ·)  parameter-shared recurrent agent network (GRU 64)
    Q(τ, a) = Σ_i w_i(s) Q_i(τ_i, a_i) + b(s)      linear mixer, w ≥ 0 (`nets.mixer`)
    familiar_i(a | τ_i) = avail_i(a) ∧ μ_i(a|τ_i) / max_a' μ_i(a'|τ_i) > ζ
                 (actions with ratio ≤ ζ are "unfamiliar" and masked out of every max)

    train μ by behaviour cloning (behaviour_updates updates)
    for update in 1 … num_updates:                      (lax.scan inside jit)
        sample 32 whole episodes from the dataset
        ã_{i,t+1} = argmax_{a ∈ familiar_i} Q'_i(τ_{i,t+1}, a)
        L(φ, φ_i) = E[ (r_t + γ Q'(τ_{t+1}, ã_{t+1}) − Q(τ_t, a_t))² ]                (eq. 12)
        (φ, φ_i) ← RMSProp(∇L), gradients clipped to norm 10
        every 100 updates: target networks ← online networks
    act: a_i = argmax_{a ∈ familiar_i} Q_i(τ_i, a)

Training is centralised (the mixer sees the global state) and execution decentralised
(each agent acts on its own Q_i and μ_i): since the mixer is monotonic, the per-agent
argmax over familiar actions is the argmax of Q over the familiar joint actions.

Defaults follow SIT Table 11: ζ = 0.3, RMSProp, lr 5e-4, γ 0.99, gradient clipping 10,
GRU 64, mixer hidden 32, batch 32 episodes, target update interval 100, 15 000 updates.

Choices where SIT is silent (ours):
  * the behaviour model has the Q network's architecture and BC's defaults (15 000
    updates; `behaviour_updates` sets how many) and is frozen while Q learns;
  * eq. 12's perturbation ξ of a discrete action is the mask above (as SIT describes it),
    so no perturbation network is learned; ã is chosen and evaluated by the target
    networks (`double_q=True` chooses with the online network, as discrete BCQ does);
  * the mixer is the linear, bias-carrying one of SIT's appendix B.

The trained policy is a `BCQPolicy` (Q and μ parameters together); `teamsift.nets.save_policy`
writes it and `load_bcq_policy` here reads it back.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, struct

from teamsift.algos import bc
from teamsift.algos import offline_common as oc
from teamsift.nets import AgentNetConfig, apply_step, init_params, initial_carry, masked_logits
from teamsift.nets.mixer import MixerConfig, init_mixer, mix


@dataclasses.dataclass(frozen=True)
class MABCQConfig:
    hidden: tuple[int, ...] = (64,)  # GRU 64 → linear head (PyMARL's RNN agent)
    recurrent: bool = True
    threshold: float = 0.3  # ζ (SIT Table 11)
    mixer: str = "linear"  # "linear" (SIT appendix B) | "qmix"
    mixer_embed: int = 32
    gamma: float = 0.99
    learning_rate: float = 5e-4
    max_grad_norm: float = 10.0
    batch_size: int = 32  # episodes
    target_update_interval: int = 100
    bootstrap_truncated: bool = True  # time-limit ends bootstrap from the final observation (PyMARL)
    double_q: bool = False
    num_updates: int = 15_000
    behaviour_updates: int = 15_000  # (ours) BC updates for μ before Q learning
    log_every: int = 500

    def __post_init__(self):
        oc.require_positive(self, ("mixer_embed", "gamma", "learning_rate", "max_grad_norm", "batch_size",
                                   "target_update_interval"))
        oc.require_unit_interval(self, ("gamma",))
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"MABCQConfig.threshold: expected ζ in [0, 1), got {self.threshold!r}")
        if self.behaviour_updates < 0:
            raise ValueError(f"MABCQConfig.behaviour_updates: expected a non-negative integer, "
                             f"got {self.behaviour_updates!r}")


def familiar_actions(behaviour_logits: jax.Array, avail: jax.Array | None, threshold: float) -> jax.Array:
    """avail ∧ μ(a)/max μ > ζ  [..., nA] — the most likely available action is always familiar."""
    probs = jax.nn.softmax(masked_logits(behaviour_logits, avail), axis=-1)
    ratio = probs / jnp.max(probs, axis=-1, keepdims=True)
    familiar = ratio > threshold
    return familiar if avail is None else familiar & avail


def bcq_actions(q: jax.Array, behaviour_logits: jax.Array, avail: jax.Array | None, threshold: float) -> jax.Array:
    """argmax of Q over the familiar available actions."""
    return oc.greedy_actions(q, familiar_actions(behaviour_logits, avail, threshold))


@struct.dataclass
class BCQPolicy:
    """Greedy w.r.t. Q_i among familiar actions. `params` = {"q": …, "behaviour": …}, two
    networks of one `config`; acts like a `NetworkPolicy` inside `evaluate`."""

    params: Any
    config: AgentNetConfig = struct.field(pytree_node=False)
    threshold: float = struct.field(pytree_node=False, default=0.3)
    deterministic: bool = struct.field(pytree_node=False, default=True)
    noise_std: float = struct.field(pytree_node=False, default=0.0)  # unused (discrete); for save_policy

    def initial_carry(self):
        return initial_carry(self.config), initial_carry(self.config)

    def act(self, key, obs, avail, carry):
        del key  # greedy
        q_carry, behaviour_carry = carry
        q, q_carry = apply_step(self.config, self.params["q"], obs, q_carry)
        logits, behaviour_carry = apply_step(self.config, self.params["behaviour"], obs, behaviour_carry)
        return bcq_actions(q, logits, avail, self.threshold), (q_carry, behaviour_carry)

    def replace_mode(self, deterministic: bool) -> "BCQPolicy":
        return self  # always greedy


def load_bcq_policy(path: str | os.PathLike) -> tuple[BCQPolicy, dict]:
    """Read a `BCQPolicy` written by `teamsift.nets.save_policy(policy, path, extra=policy_extra(policy))`."""
    path = Path(path)
    payload = serialization.msgpack_restore(path.read_bytes())
    header = json.loads(payload["header"])
    extra = header.get("extra", {})
    if extra.get("kind") != "mabcq":
        raise ValueError(f"{path}: header field 'extra.kind' expected 'mabcq', found {extra.get('kind')!r}")
    config = AgentNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in header["config"].items()})
    template = {"q": init_params(config, jax.random.key(0)), "behaviour": init_params(config, jax.random.key(0))}
    params = jax.tree.map(jnp.asarray, serialization.from_state_dict(template, payload["params"]))
    return BCQPolicy(params=params, config=config, threshold=float(extra["threshold"])), header


def policy_extra(policy: BCQPolicy) -> dict:
    """The header entries `load_bcq_policy` needs: pass as `save_policy(..., extra=policy_extra(p))`."""
    return {"kind": "mabcq", "threshold": policy.threshold}


def mixer_config(config: MABCQConfig, spec) -> MixerConfig:
    return MixerConfig(num_agents=spec.num_agents, state_dim=spec.state_dim, embed_dim=config.mixer_embed,
                       kind=config.mixer)


def behaviour_config(config: MABCQConfig) -> bc.BCConfig:
    """BC settings for μ: the Q network's architecture, SIT's shared optimiser settings."""
    return bc.BCConfig(hidden=config.hidden, recurrent=config.recurrent, learning_rate=config.learning_rate,
                       max_grad_norm=config.max_grad_norm, batch_size=config.batch_size,
                       num_updates=config.behaviour_updates, log_every=config.log_every, sample_actions=False)


@functools.partial(jax.jit, static_argnums=0)
def _init_networks(net: AgentNetConfig, keys: jax.Array):
    return jax.vmap(lambda k: init_params(net, k))(keys)


def bcq_targets(net, mixer, params, target, behaviour, batch, config: MABCQConfig) -> jax.Array:
    """y_t = r_t + γ Q'(τ_{t+1}, ã_{t+1}) with ã the best familiar actions (eq. 12)."""
    q_next = oc.unroll(net, target["agent"], batch["obs_ext"])[:, 1:]
    chooser = oc.unroll(net, params["agent"], batch["obs_ext"])[:, 1:] if config.double_q else q_next
    logits_next = oc.unroll(net, behaviour, batch["obs_ext"])[:, 1:]
    best = bcq_actions(chooser, logits_next, batch["avail_ext"][:, 1:], config.threshold)
    value = mix(mixer, target["mixer"], oc.taken(q_next, best), batch["state_ext"][:, 1:])
    return oc.batch_returns(batch, value, config.gamma)


def bcq_loss(params, target, behaviour, batch, net: AgentNetConfig, mixer: MixerConfig, config: MABCQConfig):
    y = jax.lax.stop_gradient(bcq_targets(net, mixer, params, target, behaviour, batch, config))
    q = oc.unroll(net, params["agent"], batch["obs"])
    q_tot = mix(mixer, params["mixer"], oc.taken(q, batch["actions"]), batch["state"])
    return oc.masked_mean((y - q_tot) ** 2, batch["mask"])  # eq. 12


@functools.lru_cache(maxsize=None)
def make_update(net: AgentNetConfig, mixer: MixerConfig, config: MABCQConfig, max_length: int):
    """The pure update: ((params, target, behaviour, opt_state, step), key, data) → (carry, loss)."""
    optimizer = oc.rmsprop(config.learning_rate, config.max_grad_norm)

    def update(carry, key, data):
        params, target, behaviour, opt_state, step = carry
        batch = oc.sample_episodes(key, data, config.batch_size, max_length, config.bootstrap_truncated)
        loss, grads = jax.value_and_grad(bcq_loss)(params, target, behaviour, batch, net, mixer, config)
        params, opt_state = oc.apply_gradients(optimizer, params, opt_state, grads)
        target = oc.hard_update(target, params, step, step + 1, config.target_update_interval)
        step = step + 1
        return (params, target, behaviour, opt_state, step), loss

    return update


@functools.lru_cache(maxsize=None)
def make_init(net: AgentNetConfig, mixer: MixerConfig, config: MABCQConfig):
    """(seed keys [n], μ params [n, …]) → carries (params, target = params, μ, optimiser state,
    step 0), jitted. μ rides along in the carry, frozen."""
    optimizer = oc.rmsprop(config.learning_rate, config.max_grad_norm)

    def init(seed_key, seed_behaviour):
        agent_key, mixer_key = jax.random.split(seed_key)
        params = {"agent": init_params(net, agent_key), "mixer": init_mixer(mixer, mixer_key)}
        return params, params, seed_behaviour, optimizer.init(params), jnp.int32(0)

    return oc.batched_init(init)


def train_behaviour(config: MABCQConfig, dataset, key: jax.Array, num_seeds: int, progress: bool):
    """μ by behaviour cloning (eq. 11), one per seed: (params with a seed axis, BC losses)."""
    net = oc.agent_net_config(dataset.spec, config.hidden, config.recurrent)
    if config.behaviour_updates == 0:  # untrained μ, initialised as bc.train would
        init_keys = jax.random.split(key, (num_seeds, 2))[:, 0]
        return _init_networks(net, init_keys), np.zeros((num_seeds, 0), np.float32)
    policy, logs = bc.train(behaviour_config(config), dataset, key, num_seeds=num_seeds, progress=progress)
    if policy.config != net:
        raise AssertionError(f"behaviour network {policy.config} differs from the Q network {net}")
    params = policy.params if num_seeds > 1 else jax.tree.map(lambda x: x[None], policy.params)
    return params, logs["loss"]


def train(config: MABCQConfig, dataset, key: jax.Array, *, num_seeds: int = 1,
          progress: bool = True) -> tuple[BCQPolicy, dict[str, Any]]:
    """Clone μ, then learn Q under the BCQ constraint. Returns (policy, logs); with
    num_seeds > 1 the policy's params have a leading seed axis."""
    oc.require_discrete(dataset, "MABCQ")
    net = oc.agent_net_config(dataset.spec, config.hidden, config.recurrent)
    mixer = mixer_config(config, dataset.spec)
    behaviour_key, q_key = jax.random.split(key)
    behaviour, behaviour_losses = train_behaviour(config, dataset, behaviour_key, num_seeds, progress)
    shape_config = dataclasses.replace(config, num_updates=0, log_every=0, behaviour_updates=0)
    update = make_update(net, mixer, shape_config, int(dataset.lengths.max()))
    carry, losses = oc.train_seeds(update, make_init(net, mixer, shape_config), q_key, num_seeds, config.num_updates, config.log_every,
                                   oc.episode_data(dataset), progress=progress, label="MABCQ",
                                   init_args=(behaviour,))
    params = oc.seed_params({"q": carry[0]["agent"], "behaviour": carry[2]}, num_seeds)
    policy = BCQPolicy(params=params, config=net, threshold=config.threshold)
    logs = {"loss": np.asarray(losses), "behaviour_loss": np.asarray(behaviour_losses), "num_seeds": num_seeds,
            "config": dataclasses.asdict(config)}
    return policy, logs
