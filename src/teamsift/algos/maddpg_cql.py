"""MADDPG+CQL with BRUD policy updates, optionally with PJAP sampling (Tilbury et al. 2024).

The reference learner of "Coordination Failure in Cooperative Offline MARL"
(methods.md §2; InstaDeep og-marl, branch `pjap`): a parameter-shared recurrent actor,
twin centralised critics on (state, joint action) made conservative with CQL, and a
policy gradient in which every agent best-responds to the other agents' *dataset*
actions (BRUD, "best response under data").

    items = windows of T steps starting every `sample_period` steps of every episode
    for update k = 1 … num_updates:                       (lax.scan inside jit)
        draw B items: uniformly, or with P(τ) ∝ ρ_τ^0.99 (PJAP, teamsift.value.pjap)
        unroll μ (online) and μ̄ (target) over each window from a zero GRU state
        y_t = r_t + γ·(1 − terminated_t)·min_k Q̄_k(s'_t, μ̄(o'_t))                      (1)
        CQL: M joint actions of each kind — uniform in [−1, 1]^{N·D}, μ(o_t) + ε and
             μ(o'_t) + ε with ε ~ N(0, σ²), clipped — scored at s_t:
             R_k = log Σ_j exp(Q_k(s_t, a^j) − log p(a^j)) − Q_k(s_t, a^D_t)               (2)
        L(φ) = ½·Σ_k E[½(Q_k(s_t, a^D_t) − y_t)² + w·R_k]                                  (3)
        BRUD: for agent i, â^i_t = (a^D_{1,t}, …, μ(o_{i,t}), …, a^D_{N,t})                (4)
        L(θ) = −E_{t,i}[min_k Q_k(s_t, â^i_t)] + 1e-3·E[μ(o_{i,t})²]                        (5)
        θ̄ ← (1 − τ)θ̄ + τθ,  φ̄ ← (1 − τ)φ̄ + τφ
        PJAP only: d_τ = (1/T) Σ_t (1/(N·D))‖μ̄(o_t) − a^D_t‖₁ of the drawn items, and
             ρ_τ = clip(exp(−(κ·min(1, k/K)·d_τ)²), ρ_min, 1) becomes their priority     (6)

Defaults are the reference's as methods.md §2 gives them: actor Linear 64 → ReLU →
GRU 64 → ReLU → Linear → tanh with agent ids; critics MLP 256-256; RMSProp with
critic lr 1e-3 and policy lr 3e-4; τ = 0.005; γ = 0.99; CQL weight w = 5 with M = 10
samples of each kind and σ = 0.3; batch 64 windows of 20 steps taken every 10 steps;
PJAP κ = 4, K = 150 000, ρ_min = 1e-3, exponent 0.99.

Choices where the reference and methods.md differ or are silent (documented, configurable):
* the reference's critic was 128-128 on the `pjap` branch; methods.md says 256-256;
* the uniform log density in (2) is that of the joint action, −N·D·log 2 (the reference
  uses the per-agent D); the Gaussian term uses the log density of the noise, as there;
* windows never cross an episode's end (padded and masked), where the reference's
  trajectory buffer runs on into the next episode with a reset;
* the Bellman target uses next-step values from `next_obs` (the GRU continues one step
  from h_t), so every step of a window has a target (the reference drops the last one);
* `policy_update="current"` replaces the other agents' dataset actions in (4) by their
  current policy actions (no gradient through them) — the comparison the paper discusses.

`brud_joint_actions` builds (4). `train(..., probe_obs=...)` also records the policy's
actions at a fixed observation after every update (the polynomial-game trajectories).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from teamsift.algos import common
from teamsift.algos.td3bc import (
    copy_tree, require_continuous, require_positive, require_unit_interval, split_metrics, stack_metrics, unstack_seed,
)
from teamsift.data import gather_steps, to_device
from teamsift.nets import AgentNetConfig, NetworkPolicy, apply_step, init_params, initial_carry
from teamsift.nets.critic import CentralCriticConfig, central_q, init_central_critic, polyak_update
from teamsift.value.pjap import PJAPConfig, PJAPState, pjap_init, pjap_sample, pjap_update, sequence_distance

SEQUENCE_FIELDS = ("obs", "state", "actions", "reward", "terminated", "truncated", "final_obs", "final_state")
SAMPLERS = ("uniform", "pjap")
POLICY_UPDATES = ("brud", "current")
OPTIMIZERS = {"rmsprop": optax.rmsprop, "adam": optax.adam}


@dataclasses.dataclass(frozen=True)
class MADDPGCQLConfig:
    recurrent: bool = True
    policy_hidden: tuple[int, ...] = (64,)  # GRU: Linear 64 → GRU 64 → Linear; MLP: hidden widths
    critic_hidden: tuple[int, ...] = (256, 256)
    critic_lr: float = 1e-3
    policy_lr: float = 3e-4
    optimizer: str = "rmsprop"
    max_grad_norm: float = 0.0  # 0: no clipping (as the reference)
    tau: float = 0.005
    gamma: float = 0.99
    cql_weight: float = 5.0  # w of eq. (3); 0 gives plain MADDPG with twin critics
    cql_samples: int = 10  # M per kind
    cql_sigma: float = 0.3
    action_l2: float = 1e-3
    batch_size: int = 64  # windows
    seq_len: int = 20
    sample_period: int = 10
    policy_update: str = "brud"  # brud | current
    sampler: str = "uniform"  # uniform | pjap
    pjap: PJAPConfig = PJAPConfig()
    num_updates: int = 500_000
    log_every: int = 5_000

    def __post_init__(self):
        require_positive(self, ("critic_lr", "policy_lr", "cql_samples", "cql_sigma", "batch_size", "seq_len",
                                "sample_period", "num_updates", "log_every"))
        require_unit_interval(self, ("tau", "gamma"))
        for name, allowed in (("sampler", SAMPLERS), ("policy_update", POLICY_UPDATES), ("optimizer", tuple(OPTIMIZERS))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"MADDPGCQLConfig.{name}: expected one of {list(allowed)}, got {getattr(self, name)!r}")
        if self.cql_weight < 0 or self.action_l2 < 0 or self.max_grad_norm < 0:
            raise ValueError("MADDPGCQLConfig: cql_weight, action_l2 and max_grad_norm must be >= 0")
        if not self.policy_hidden:
            raise ValueError("MADDPGCQLConfig.policy_hidden: expected at least one width")


METRICS = ("critic_loss", "td_loss", "cql_loss", "policy_loss", "q_mean", "distance", "priority")


class MADDPGState(NamedTuple):
    policy: Any
    policy_target: Any
    critic: Any
    critic_target: Any
    policy_opt: Any
    critic_opt: Any
    pjap: PJAPState | None
    step: jax.Array


# --- networks --------------------------------------------------------------------------------

def policy_config(config: MADDPGCQLConfig, spec) -> AgentNetConfig:
    return AgentNetConfig(num_agents=spec.num_agents, obs_dim=spec.obs_dim, num_actions=spec.num_actions,
                          discrete=False, recurrent=config.recurrent, hidden=tuple(config.policy_hidden))


def critic_config(config: MADDPGCQLConfig, spec) -> CentralCriticConfig:
    return CentralCriticConfig(state_dim=spec.state_dim, num_agents=spec.num_agents, action_dim=spec.num_actions,
                               hidden=tuple(config.critic_hidden))


def make_optimizer(config: MADDPGCQLConfig, lr: float) -> optax.GradientTransformation:
    opt = OPTIMIZERS[config.optimizer](lr)
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), opt) if config.max_grad_norm > 0 else opt


def unroll_policy(net: AgentNetConfig, params, obs: jax.Array, next_obs: jax.Array | None = None):
    """μ(o_t) [B, T, N, D] over windows obs [B, T, N, O], and μ(o'_t) when `next_obs` is given.

    A GRU starts from zeros at the window's first step; μ(o'_t) continues one step from
    the hidden state h_t reached after o_t.
    """
    if not net.recurrent:
        act = lambda o: apply_step(net, params, o, None)[0]
        return act(obs), (None if next_obs is None else act(next_obs))
    time_major = lambda x: jnp.swapaxes(x, 0, 1)

    def step(h, inputs):
        o, o_next = inputs
        a, h = apply_step(net, params, o, h)
        a_next = None if o_next is None else apply_step(net, params, o_next, h)[0]
        return h, (a, a_next)

    xs = (time_major(obs), None if next_obs is None else time_major(next_obs))
    _, (actions, next_actions) = jax.lax.scan(step, initial_carry(net, obs.shape[:1]), xs)
    return time_major(actions), (None if next_obs is None else time_major(next_actions))


# --- eq. (4): best response under data -------------------------------------------------------

def brud_joint_actions(policy_actions: jax.Array, other_actions: jax.Array) -> jax.Array:
    """The joint action each agent's policy gradient sees, eq. (4).

    policy_actions, other_actions [..., N, D] → [..., N, N, D]: entry [..., i, :, :] is the
    joint action for agent i's gradient — agent i's own current action μ(o_i) in slot i and
    `other_actions` (the dataset's actions: BRUD) in every other slot, with no gradient
    through them.
    """
    n = policy_actions.shape[-2]
    own = jnp.eye(n, dtype=bool)[:, :, None]  # [i, j, 1]: slot j is agent i's own
    return jnp.where(own, policy_actions[..., None, :, :], jax.lax.stop_gradient(other_actions)[..., None, :, :])


def policy_joint_actions(policy_actions: jax.Array, dataset_actions: jax.Array, mode: str) -> jax.Array:
    """Eq. (4) with the others' dataset actions ("brud") or their current actions ("current")."""
    others = dataset_actions if mode == "brud" else policy_actions
    return brud_joint_actions(policy_actions, others)


# --- sampling windows ---------------------------------------------------------------------------

def window_starts(dataset, period: int) -> np.ndarray:
    """First rows of the items: every `period`-th step of every episode [M] int32."""
    parts = [start + np.arange(0, length, period) for start, length in zip(dataset.starts, dataset.lengths)]
    return np.concatenate(parts).astype(np.int32)


def gather_windows(data: dict, first: jax.Array, seq_len: int) -> dict:
    """Windows of `seq_len` steps from rows `first` [B] ([B, T, ...] with mask [B, T]);
    steps past the episode's end are padded and masked, as in `sample_sequences`."""
    ep = data["episode_index"][first]
    start = data["episode_start"][ep]
    last = start + data["episode_length"][ep] - 1
    raw = first[:, None] + jnp.arange(seq_len, dtype=jnp.int32)[None]
    mask = raw <= last[:, None]
    rows = jnp.minimum(raw, last[:, None])
    out = gather_steps(jnp, data, rows, jnp.broadcast_to(ep[:, None], rows.shape),
                       jnp.broadcast_to(last[:, None], rows.shape), mask)
    out["mask"] = mask
    out["actions"] = jnp.clip(out["actions"], -1.0, 1.0)
    return out


def draw_items(key, state: MADDPGState, data: dict, config: MADDPGCQLConfig) -> jax.Array:
    if config.sampler == "pjap":
        return pjap_sample(state.pjap, key, config.batch_size)
    return jax.random.randint(key, (config.batch_size,), 0, data["window_start"].shape[0], dtype=jnp.int32)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    mask = jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


# --- eqs. (1)–(3): conservative twin critics -----------------------------------------------------

def gaussian_log_density(noise: jax.Array, sigma: float) -> jax.Array:
    """log N(noise; 0, σ²) summed over the last two axes (agents, action dims)."""
    return jnp.sum(-0.5 * (noise / sigma) ** 2 - jnp.log(sigma * jnp.sqrt(2.0 * jnp.pi)), axis=(-2, -1))


def cql_joint_samples(key, policy_actions, next_policy_actions, config: MADDPGCQLConfig):
    """Sampled joint actions [B, T, 3M, N, D] and their log densities [B, T, 3M]."""
    m = config.cql_samples
    shape = policy_actions.shape[:2] + (m,) + policy_actions.shape[2:]
    uniform_key, current_key, next_key = jax.random.split(key, 3)
    samples = [jax.random.uniform(uniform_key, shape, minval=-1.0, maxval=1.0)]
    log_density = [jnp.full(shape[:3], -shape[-2] * shape[-1] * jnp.log(2.0))]
    for k, centre in ((current_key, policy_actions), (next_key, next_policy_actions)):
        noise = config.cql_sigma * jax.random.normal(k, shape)
        samples.append(jnp.clip(centre[:, :, None] + noise, -1.0, 1.0))
        log_density.append(gaussian_log_density(noise, config.cql_sigma))
    return jnp.concatenate(samples, axis=2), jnp.concatenate(log_density, axis=2)


def critic_loss(critic, critic_cfg, batch, targets, sampled, log_density, config: MADDPGCQLConfig):
    """Eq. (3) averaged over the two critics; padded steps are masked out."""
    mask = batch["mask"]
    q_data = central_q(critic_cfg, critic, batch["state"], batch["actions"])  # [K, B, T]
    td = jnp.mean(jax.vmap(lambda q: masked_mean(0.5 * (q - targets) ** 2, mask))(q_data))
    q_mean = masked_mean(jnp.mean(q_data, axis=0), mask)
    if config.cql_weight == 0:
        return td, (td, jnp.float32(0.0), q_mean)
    q_sampled = central_q(critic_cfg, critic, batch["state"][:, :, None], sampled)  # [K, B, T, 3M]
    soft_max = jax.nn.logsumexp(q_sampled - log_density[None], axis=-1)  # [K, B, T]
    cql = jnp.mean(jax.vmap(lambda s, q: masked_mean(s - q, mask))(soft_max, q_data))
    return td + config.cql_weight * cql, (td, cql, q_mean)


# --- eq. (5): policy loss -------------------------------------------------------------------------

def policy_loss(policy, net, critic, critic_cfg, batch, config: MADDPGCQLConfig):
    actions, _ = unroll_policy(net, policy, batch["obs"])  # [B, T, N, D]
    joint = policy_joint_actions(actions, batch["actions"], config.policy_update)  # [B, T, N, N, D]
    q = jnp.min(central_q(critic_cfg, critic, batch["state"][:, :, None], joint), axis=0)  # [B, T, N]
    mask = batch["mask"][..., None]
    return -masked_mean(q, mask) + config.action_l2 * masked_mean(jnp.mean(actions**2, axis=-1), mask)


# --- the update ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def make_update(net: AgentNetConfig, critic_cfg: CentralCriticConfig, config: MADDPGCQLConfig):
    """The pure update: (MADDPGState, key, data) → (MADDPGState, metrics[7 (+ N·D probe actions)])."""
    policy_opt = make_optimizer(config, config.policy_lr)
    critic_opt = make_optimizer(config, config.critic_lr)

    def update(state: MADDPGState, key, data):
        item_key, cql_key = jax.random.split(key)
        items = draw_items(item_key, state, data, config)
        batch = gather_windows(data, data["window_start"][items], config.seq_len)
        # Critic, eqs. (1)-(3).
        target_actions, next_target_actions = unroll_policy(net, state.policy_target, batch["obs"], batch["next_obs"])
        next_q = jnp.min(central_q(critic_cfg, state.critic_target, batch["next_state"], next_target_actions), axis=0)
        not_terminal = 1.0 - batch["terminated"].astype(jnp.float32)
        targets = jax.lax.stop_gradient(batch["reward"] + config.gamma * not_terminal * next_q)
        current, next_current = unroll_policy(net, state.policy, batch["obs"], batch["next_obs"])
        sampled, log_density = jax.lax.stop_gradient(cql_joint_samples(cql_key, current, next_current, config))
        (c_loss, (td, cql, q_mean)), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
            state.critic, critic_cfg, batch, targets, sampled, log_density, config)
        # Policy, eqs. (4)-(5), against the critic of this step (both are updated together).
        p_loss, p_grads = jax.value_and_grad(policy_loss)(state.policy, net, state.critic, critic_cfg, batch, config)
        c_updates, critic_opt_state = critic_opt.update(c_grads, state.critic_opt, state.critic)
        p_updates, policy_opt_state = policy_opt.update(p_grads, state.policy_opt, state.policy)
        critic = optax.apply_updates(state.critic, c_updates)
        policy = optax.apply_updates(state.policy, p_updates)
        # PJAP, eq. (6): the drawn items' distance to the target policy (before this update).
        distance = sequence_distance(target_actions, batch["actions"], batch["mask"])
        pjap_state, priority = state.pjap, jnp.ones_like(distance)
        if config.sampler == "pjap":
            pjap_state, priority = pjap_update(state.pjap, items, distance, state.step, config.pjap)
        new_state = MADDPGState(policy, polyak_update(state.policy_target, policy, config.tau), critic,
                                polyak_update(state.critic_target, critic, config.tau), policy_opt_state,
                                critic_opt_state, pjap_state, state.step + 1)
        metrics = stack_metrics(c_loss, td, cql, p_loss, q_mean, jnp.mean(distance), jnp.mean(priority))
        if "probe_obs" in data:  # the policy's action at a fixed observation, after this update
            probe, _ = unroll_policy(net, policy, data["probe_obs"][None, None])
            metrics = jnp.concatenate([metrics, probe.reshape(-1)])
        return new_state, metrics

    return update


def init_state(net, critic_cfg, config: MADDPGCQLConfig, key, num_items: int, init_policy=None) -> MADDPGState:
    policy_key, critic_key = jax.random.split(key)
    policy = init_params(net, policy_key) if init_policy is None else init_policy
    critic = init_central_critic(critic_cfg, critic_key)
    pjap_state = pjap_init(num_items, config.pjap) if config.sampler == "pjap" else None
    return MADDPGState(policy, policy, critic, critic, make_optimizer(config, config.policy_lr).init(policy),
                       make_optimizer(config, config.critic_lr).init(critic), pjap_state, jnp.int32(0))


def check_init_policy(init_policy, net: AgentNetConfig):
    expected = jax.tree.map(jnp.shape, init_params(net, jax.random.key(0)))
    found = jax.tree.map(jnp.shape, init_policy)
    if jax.tree.structure(expected) != jax.tree.structure(found) or jax.tree.leaves(expected) != jax.tree.leaves(found):
        raise ValueError(f"init_policy: expected parameters of the actor {net} (shapes {expected}), got {found}")


def train(config: MADDPGCQLConfig, dataset, key: jax.Array, *, num_seeds: int = 1, progress: bool = True,
          init_policy=None, probe_obs: np.ndarray | None = None) -> tuple[NetworkPolicy, dict[str, Any]]:
    """MADDPG+CQL (+PJAP with `sampler="pjap"`) on `dataset`.

    init_policy: actor parameters to start every seed from (default: a fresh init).
    probe_obs [N, O]: record the policy's actions there after every update
        (logs["probe_actions"] [seeds, updates, N, D]).
    Returns (policy, logs); with num_seeds > 1 the policy's params carry a leading seed
    axis. logs hold per-update metrics [seeds, updates] (`distance` = mean d_τ of eq. 6
    over the drawn items, `priority` = their new mean ρ, 1 with uniform sampling).
    """
    require_continuous(dataset, "MADDPG+CQL", SEQUENCE_FIELDS)
    spec = dataset.spec
    net, critic_cfg = policy_config(config, spec), critic_config(config, spec)
    if init_policy is not None:
        check_init_policy(init_policy, net)
    data = to_device(dataset, SEQUENCE_FIELDS)
    data["window_start"] = jnp.asarray(window_starts(dataset, config.sample_period))
    if probe_obs is not None:
        probe_obs = np.asarray(probe_obs, np.float32)
        if probe_obs.shape != (spec.num_agents, spec.obs_dim):
            raise ValueError(f"probe_obs: expected shape [N={spec.num_agents}, O={spec.obs_dim}], got {probe_obs.shape}")
        data["probe_obs"] = jnp.asarray(probe_obs)
    num_items = int(data["window_start"].shape[0])

    seed_keys = jax.random.split(key, (num_seeds, 2))
    carry = jax.vmap(lambda k: init_state(net, critic_cfg, config, k, num_items, init_policy))(seed_keys[:, 0])
    carry = carry._replace(policy=copy_tree(carry.policy), policy_target=copy_tree(carry.policy_target),
                           critic_target=copy_tree(carry.critic_target))
    update = make_update(net, critic_cfg, dataclasses.replace(config, num_updates=1, log_every=1))
    label = "MADDPG+CQL" + ("+PJAP" if config.sampler == "pjap" else "")
    carry, metrics = common.run_updates(update, carry, seed_keys[:, 1], config.num_updates, config.log_every, data,
                                        progress=progress, label=label)
    policy = NetworkPolicy(params=unstack_seed(carry.policy, num_seeds), config=net, deterministic=True)
    logs = {"num_seeds": num_seeds, "config": dataclasses.asdict(config), "num_items": num_items,
            **split_metrics(metrics, METRICS)}
    logs["loss"] = logs["critic_loss"]
    if probe_obs is not None:
        logs["probe_actions"] = metrics[..., len(METRICS):].reshape(metrics.shape[:2] + (spec.num_agents, -1))
    if config.sampler == "pjap":
        capacity = carry.pjap.tree.nodes.shape[-1] // 2  # sum-tree leaves hold ρ^α
        logs["final_priorities"] = np.asarray(carry.pjap.tree.nodes[:, capacity:capacity + num_items])
    return policy, logs
