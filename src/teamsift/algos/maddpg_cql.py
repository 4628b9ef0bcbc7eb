"""MADDPG+CQL with BRUD policy updates, optionally with PJAP sampling (Tilbury et al. 2024).

The reference learner of "Coordination Failure in Cooperative Offline MARL"
(methods.md §2; InstaDeep og-marl, branch `pjap`): a parameter-shared recurrent actor,
twin centralised critics on (state, joint action) made conservative with CQL, and a
policy gradient in which every agent best-responds to the other agents' *dataset*
actions (BRUD, "best response under data").

    items = windows of T steps starting every `sample_period` steps of every episode
    for update k = 1 … U:                                 (the engine: lax loops inside jit)
        draw B items: uniformly, or with P(τ) ∝ ρ_τ^0.99 (the PJAP sampler, teamsift.data.pjap)
        unroll μ (online) and μ̄ (target) over each window from a zero GRU state
        y_t = r_t + γ·(1 − terminated_t)·min_k Q̄_k(s'_t, μ̄(o'_t))                      (1)
        CQL: M joint actions of each kind — uniform in [−1, 1]^{N·D}, μ(o_t) + ε and
             μ(o'_t) + ε with ε ~ N(0, σ²), clipped — scored at s_t:
             R_k = log Σ_j exp(Q_k(s_t, a^j) − log p(a^j)) − Q_k(s_t, a^D_t)               (2)
             (the 3M actions of a step share s_t: its part of the critics' first layer
             is computed once, `central_q_actions`)
        L(φ) = ½·Σ_k E[½(Q_k(s_t, a^D_t) − y_t)² + w·R_k]                                  (3)
        BRUD: for agent i, â^i_t = (a^D_{1,t}, …, μ(o_{i,t}), …, a^D_{N,t})                (4)
        L(θ) = −E_{t,i}[min_k Q_k(s_t, â^i_t)] + 1e-3·E[μ(o_{i,t})²]                        (5)
        θ̄ ← (1 − τ)θ̄ + τθ,  φ̄ ← (1 − τ)φ̄ + τφ
        report d_τ = (1/T) Σ_t (1/(N·D))‖μ̄(o_t) − a^D_t‖₁ of the drawn items; the PJAP
             sampler makes ρ_τ = clip(exp(−(κ·min(1, k/K)·d_τ)²), ρ_min, 1) their priority  (6)

Defaults are the reference's as methods.md §2 gives them: actor Linear 64 → ReLU →
GRU 64 → ReLU → Linear → tanh with agent ids; RMSProp with critic lr 1e-3 and policy
lr 3e-4; τ = 0.005; γ = 0.99; CQL weight w = 5 with M = 10 samples of each kind and
σ = 0.3; batch 64 windows of 20 steps taken every 10 steps; 500 000 updates (the
registry's budget); PJAP (`teamsift.data.PJAP`, `PJAPConfig`) κ = 4, K = 150 000,
ρ_min = 1e-3, exponent 0.99. The critics are MLPs 128-128, from the reference code:
PJAP's text gives no network sizes, and the reference's MADDPG+CQL with the
prioritised buffer (og-marl's `pjap` branch) builds each critic as
`snt.Linear(128) → ReLU → snt.Linear(128) → ReLU → snt.Linear(1)`, where methods.md
says 256-256; `critic_hidden=(256, 256)` gives that.

Choices where the reference and methods.md differ or are silent (documented, configurable):
* critic widths: 128-128 as the reference (above), not methods.md's 256-256;
* the uniform log density in (2) is that of the joint action, −N·D·log 2 (the reference
  uses the per-agent D); the Gaussian term uses the log density of the noise, as there;
* windows never cross an episode's end (padded and masked), where the reference's
  trajectory buffer runs on into the next episode with a reset;
* the Bellman target uses next-step values from `next_obs` (the GRU continues one step
  from h_t), so every step of a window has a target (the reference drops the last one);
* `policy_update="current"` replaces the other agents' dataset actions in (4) by their
  current policy actions (no gradient through them) — the comparison the paper discusses.

Per-decision weights w_{t,i} (`fit(..., weights=...)`, ours): the centralised critic's
terms (1)–(3) at step t are weighted by the mean weight over agents, agent i's terms of
(5) by w_{t,i}.

`brud_joint_actions` builds (4). `learner(config, dataset, from_start=True)` starts every
seed's actor from given parameters (`fit(..., start=...)`); with `inputs={"probe_obs": o}`
([N, O]) the learner's probe records the policy's actions at o at every log point (the
polynomial-game trajectories of `teamsift.bench.poly`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from teamsift.checks import require_choice, require_continuous, require_non_negative, require_positive
from teamsift.checks import require_unit_interval
from teamsift.data import gather_windows, to_device
from teamsift.data.pjap import sequence_distance
from teamsift.engine import Feedback, Learner
from teamsift.nets import AgentNetConfig, NetworkPolicy, apply_step, init_params, initial_carry
from teamsift.nets.critic import CentralCriticConfig, central_q, central_q_actions, init_central_critic, polyak_update
from teamsift.nets.ops import gaussian_log_density, masked_mean, weighted_mean
from teamsift.nets.optim import OPTIMIZERS, clipped

SEQUENCE_FIELDS = ("obs", "state", "actions", "reward", "terminated", "truncated", "final_obs", "final_state")
POLICY_UPDATES = ("brud", "current")


@dataclasses.dataclass(frozen=True)
class MADDPGCQLConfig:
    recurrent: bool = True
    policy_hidden: tuple[int, ...] = (64,)  # GRU: Linear 64 → GRU 64 → Linear; MLP: hidden widths
    critic_hidden: tuple[int, ...] = (128, 128)  # the reference's (og-marl `pjap`); methods.md: 256-256
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

    def __post_init__(self):
        require_positive(self, ("critic_lr", "policy_lr", "cql_samples", "cql_sigma", "batch_size", "seq_len",
                                "sample_period"))
        require_unit_interval(self, ("tau", "gamma"))
        require_choice(self, "policy_update", POLICY_UPDATES)
        require_choice(self, "optimizer", tuple(OPTIMIZERS))
        require_non_negative(self, ("cql_weight", "action_l2", "max_grad_norm"))
        if not self.policy_hidden:
            raise ValueError("MADDPGCQLConfig.policy_hidden: expected at least one width")


#: What the update logs (the PJAP sampler adds "priority": the drawn items' new mean ρ).
METRICS = ("critic_loss", "td_loss", "cql_loss", "policy_loss", "q_mean", "distance")


class MADDPGState(NamedTuple):
    """One seed's training state."""

    policy: Any
    policy_target: Any
    critic: Any
    critic_target: Any
    policy_opt: Any
    critic_opt: Any


# --- networks --------------------------------------------------------------------------------

def policy_config(config: MADDPGCQLConfig, spec) -> AgentNetConfig:
    return AgentNetConfig(num_agents=spec.num_agents, obs_dim=spec.obs_dim, num_actions=spec.num_actions,
                          discrete=False, recurrent=config.recurrent, hidden=tuple(config.policy_hidden))


def critic_config(config: MADDPGCQLConfig, spec) -> CentralCriticConfig:
    return CentralCriticConfig(state_dim=spec.state_dim, num_agents=spec.num_agents, action_dim=spec.num_actions,
                               hidden=tuple(config.critic_hidden))


def make_optimizer(config: MADDPGCQLConfig, lr: float) -> optax.GradientTransformation:
    return clipped(config.optimizer, lr, config.max_grad_norm)


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


# --- the items: windows ---------------------------------------------------------------------------

def window_starts(dataset, period: int) -> np.ndarray:
    """First rows of the items: every `period`-th step of every episode [M] int32."""
    parts = [start + np.arange(0, length, period) for start, length in zip(dataset.starts, dataset.lengths)]
    return np.concatenate(parts).astype(np.int32)


def window_batch(arrays: dict, items: jax.Array, seq_len: int) -> dict:
    """The windows of items [B] (`gather_windows`: [B, T, ...], padded past an episode's end
    with mask [B, T] False), with actions clipped to [−1, 1]."""
    batch = gather_windows(arrays, arrays["window_start"][items], seq_len)
    batch["actions"] = jnp.clip(batch["actions"], -1.0, 1.0)
    return batch


def step_mask(batch: dict) -> jax.Array:
    """[B, T]: the weight of a joint (critic) term at every step — the mask, times the mean
    weight over agents when the run weighs decisions."""
    if "weight" not in batch:
        return batch["mask"]
    return batch["mask"] * jnp.mean(batch["weight"], axis=-1)


def masked_or_weighted_mean(x: jax.Array, mask: jax.Array, weighted: bool) -> jax.Array:
    return weighted_mean(x, True, mask) if weighted else masked_mean(x, mask)


# --- eqs. (1)–(3): conservative twin critics -----------------------------------------------------

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
        log_density.append(gaussian_log_density(noise, 0.0, math.log(config.cql_sigma), axis=(-2, -1)))
    return jnp.concatenate(samples, axis=2), jnp.concatenate(log_density, axis=2)


def critic_loss(critic, critic_cfg, batch, targets, sampled, log_density, config: MADDPGCQLConfig):
    """Eq. (3) averaged over the two critics; padded steps are masked out (and every step
    weighted by its agents' mean weight when `batch["weight"]` is present)."""
    weighted = "weight" in batch
    mask = step_mask(batch)
    mean = lambda x: masked_or_weighted_mean(x, mask, weighted)
    q_data = central_q(critic_cfg, critic, batch["state"], batch["actions"])  # [K, B, T]
    td = jnp.mean(jax.vmap(lambda q: mean(0.5 * (q - targets) ** 2))(q_data))
    q_mean = mean(jnp.mean(q_data, axis=0))
    if config.cql_weight == 0:
        return td, (td, jnp.float32(0.0), q_mean)
    q_sampled = central_q_actions(critic_cfg, critic, batch["state"], sampled)  # [K, B, T, 3M]
    soft_max = jax.nn.logsumexp(q_sampled - log_density[None], axis=-1)  # [K, B, T]
    cql = jnp.mean(jax.vmap(lambda s, q: mean(s - q))(soft_max, q_data))
    return td + config.cql_weight * cql, (td, cql, q_mean)


# --- eq. (5): policy loss -------------------------------------------------------------------------

def policy_loss(policy, net, critic, critic_cfg, batch, config: MADDPGCQLConfig):
    """Eq. (5); agent i's terms weighted by `batch["weight"][..., i]` when present.

    Returns (loss, (μ(o_t), μ(o'_t))): the one unroll also gives the centres of the CQL
    samples (with `next_obs` in the batch; else μ(o'_t) is None).
    """
    actions, next_actions = unroll_policy(net, policy, batch["obs"], batch.get("next_obs"))  # [B, T, N, D]
    joint = policy_joint_actions(actions, batch["actions"], config.policy_update)  # [B, T, N, N, D]
    q = jnp.min(central_q_actions(critic_cfg, critic, batch["state"], joint), axis=0)  # [B, T, N]
    mask = batch["mask"][..., None]
    if "weight" in batch:
        weight = mask * batch["weight"]  # [B, T, N]
        loss = -weighted_mean(q, True, weight) + config.action_l2 * weighted_mean(jnp.mean(actions**2, axis=-1), True,
                                                                                  weight)
    else:
        loss = -masked_mean(q, mask) + config.action_l2 * masked_mean(jnp.mean(actions**2, axis=-1), mask)
    return loss, (actions, next_actions)


# --- the learner ----------------------------------------------------------------------------------

def check_start(start, net: AgentNetConfig) -> None:
    """`start` must be parameters of the actor `net` (one seed's)."""
    expected = jax.eval_shape(lambda: init_params(net, jax.random.key(0)))
    shapes = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)
    if jax.tree.structure(expected) != jax.tree.structure(start) or \
            jax.tree.leaves(shapes(expected)) != jax.tree.leaves(shapes(start)):
        raise ValueError(f"MADDPG+CQL start: expected one seed's parameters of the actor {net} (shapes "
                         f"{shapes(expected)}), got {shapes(start)}")


def prepare_arrays(dataset, inputs: dict, sample_period: int) -> dict:
    """Windows' fields on the device, their start rows ("window_start") and, when the caller
    gives `inputs["probe_obs"]` [N, O], the probe observation."""
    arrays = to_device(dataset, SEQUENCE_FIELDS)
    arrays["window_start"] = jnp.asarray(window_starts(dataset, sample_period))
    if inputs.get("probe_obs") is not None:
        spec = dataset.spec
        probe_obs = np.asarray(inputs["probe_obs"], np.float32)
        if probe_obs.shape != (spec.num_agents, spec.obs_dim):
            raise ValueError(f"probe_obs: expected shape [N={spec.num_agents}, O={spec.obs_dim}], got "
                             f"{list(probe_obs.shape)}")
        arrays["probe_obs"] = jnp.asarray(probe_obs)
    return arrays


@functools.lru_cache(maxsize=None)
def make_learner(config: MADDPGCQLConfig, net: AgentNetConfig, critic_cfg: CentralCriticConfig,
                 from_start: bool = False) -> Learner:
    policy_opt = make_optimizer(config, config.policy_lr)
    critic_opt = make_optimizer(config, config.critic_lr)

    def init(key, arrays, start=None) -> MADDPGState:
        policy_key, critic_key = jax.random.split(key)
        if from_start:
            check_start(start, net)
            policy = start
        else:
            policy = init_params(net, policy_key)
        critic = init_central_critic(critic_cfg, critic_key)
        return MADDPGState(policy, policy, critic, critic, policy_opt.init(policy), critic_opt.init(critic))

    def update(state: MADDPGState, key, arrays, items):
        cql_key = jax.random.split(key)[1]
        batch = window_batch(arrays, items, config.seq_len)
        # Bellman targets, eq. (1).
        target_actions, next_target_actions = unroll_policy(net, state.policy_target, batch["obs"], batch["next_obs"])
        next_q = jnp.min(central_q(critic_cfg, state.critic_target, batch["next_state"], next_target_actions), axis=0)
        not_terminal = 1.0 - batch["terminated"].astype(jnp.float32)
        targets = jax.lax.stop_gradient(batch["reward"] + config.gamma * not_terminal * next_q)
        # Policy, eqs. (4)-(5), against the critic of this step (both are updated together); its
        # unroll of μ over the window also gives the centres μ(o_t), μ(o'_t) of the CQL samples.
        (p_loss, (current, next_current)), p_grads = jax.value_and_grad(policy_loss, has_aux=True)(
            state.policy, net, state.critic, critic_cfg, batch, config)
        # Critic, eqs. (2)-(3).
        sampled, log_density = jax.lax.stop_gradient(cql_joint_samples(cql_key, current, next_current, config))
        (c_loss, (td, cql, q_mean)), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
            state.critic, critic_cfg, batch, targets, sampled, log_density, config)
        c_updates, critic_opt_state = critic_opt.update(c_grads, state.critic_opt, state.critic)
        p_updates, policy_opt_state = policy_opt.update(p_grads, state.policy_opt, state.policy)
        critic = optax.apply_updates(state.critic, c_updates)
        policy = optax.apply_updates(state.policy, p_updates)
        # Eq. (6)'s d_τ: the drawn items' distance to the target policy (before this update).
        distance = sequence_distance(target_actions, batch["actions"], batch["mask"])
        new_state = MADDPGState(policy, polyak_update(state.policy_target, policy, config.tau), critic,
                                polyak_update(state.critic_target, critic, config.tau), policy_opt_state,
                                critic_opt_state)
        metrics = {"critic_loss": c_loss, "td_loss": td, "cql_loss": cql, "policy_loss": p_loss, "q_mean": q_mean,
                   "distance": jnp.mean(distance)}
        return new_state, metrics, Feedback(items, distance)

    def policy(state: MADDPGState, arrays) -> NetworkPolicy:
        return NetworkPolicy(params=state.policy, config=net, deterministic=True)

    def probe(state: MADDPGState, arrays) -> dict:
        """{"probe_actions": μ(probe_obs) [N, D]} when the arrays hold a probe observation."""
        if "probe_obs" not in arrays:
            return {}
        actions, _ = unroll_policy(net, state.policy, arrays["probe_obs"][None, None])
        return {"probe_actions": actions[0, 0]}

    return Learner("maddpg_cql", init, update, policy,
                   prepare=lambda dataset, inputs: prepare_arrays(dataset, inputs, config.sample_period),
                   unit="window", batch_size=config.batch_size, span=config.seq_len,
                   headline="critic_loss", proximity=True, probe=probe, needs_start=from_start)


def learner(config: MADDPGCQLConfig, dataset, *, from_start: bool = False) -> Learner:
    """MADDPG+CQL on `dataset` (continuous actions, windows with a global state).

    from_start: every seed's actor starts from given parameters, `fit(..., start=params)`
        with a leading seed axis (default: a fresh initialisation).
    """
    require_continuous(dataset, "MADDPG+CQL", SEQUENCE_FIELDS)
    spec = dataset.spec
    return make_learner(config, policy_config(config, spec), critic_config(config, spec), from_start)
