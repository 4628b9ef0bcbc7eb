"""OMAR: Offline Multi-Agent RL with Actor Rectification (Pan et al., ICML 2022).

Independent TD3 learners (per-agent twin critics Q_{i,1}, Q_{i,2} on (o_i, a_i), one
parameter-shared actor with agent ids) whose critics are conservative (CQL) and whose
actor imitates the better of its own action and a zeroth-order (CEM) search on Q_{i,1}.

    for update k = 1 … U:                                 (the engine: lax loops inside jit)
        draw a batch B of joint transitions (o, a, r, o', terminated)
        y_i = r + γ·(1 − terminated)·min_k Q̄_{i,k}(o'_i, μ̄(o'_i))                          (1)
        CQL: M uniform actions u ~ U[−1,1]^D,  M actions π(o_i) + ε,  M actions π(o'_i) + ε,
             ε ~ N(0, σ_cql²), all clipped to [−1, 1] and scored at o_i:
             R_{i,k} = log Σ_j exp(Q_{i,k}(o_i, a^j) − log p(a^j)) − Q_{i,k}(o_i, a_i)       (2)
             (the 3M actions share o_i: its part of the critics' first layer is computed
             once, `agent_q_actions`; the same for the CEM samples below)
        L(φ) = Σ_k E_B[(Q_{i,k}(o_i, a_i) − y_i)²] + α_cql·Σ_k E_B[R_{i,k}]                (3)
        CEM on Q_{i,1}(o_i, ·): μ⁰ = 0, σ⁰ = 2; each iteration draws S actions
             clip(N(μ, σ²), −1, 1), ranks them together with the previous elites, keeps
             the best E as elites and refits μ, σ to them (mean, std)                   (4)
        â_i = argmax over {π(o_i), best CEM action} of Q_{i,1}(o_i, ·)                    (5)
        L(θ) = E_B[ c·mean_d (π(o_i) − â_i)² − (1 − c)·Q_{i,1}(o_i, π(o_i)) + 1e-3·mean_d π(o_i)² ]  (6)
        θ̄ ← (1 − τ)θ̄ + τθ,  φ̄ ← (1 − τ)φ̄ + τφ

Defaults. methods.md §4 fixes the CEM search: 3 iterations, 10 samples, 10 elites,
μ⁰ = 0, σ⁰ = 2 (the reference's defaults). The rest follows the authors' code
(ling-pan/OMAR) for multi-agent HalfCheetah: Adam lr 3e-4 for actor and critics,
batch 256, hidden 256-256, τ = 0.005, γ = 0.99, gradient norms clipped to 0.5,
1M updates (the registry's budget),
10 CQL samples of each kind with σ_cql = 0.2, log-sum-exp temperature 1, no target
policy smoothing and no policy delay (its "TD3" is clipped double-Q only). The
coefficient c and the CQL weight α_cql are tuned per dataset there:

    HalfCheetah  random c=1.0 α=1.0 · medium-replay c=0.9 α=5.0 · medium c=0.7 α=1.0 · expert c=0.5 α=5.0
    MPE spread   random c=1.0 α=0.5 · medium-replay c=1.0 α=1.0 · medium/expert c=1.0 α=5.0

We default to the HalfCheetah-medium pair, c = 0.7 and α_cql = 1.0 (our choice for
mixed-quality data; set both per dataset).

Network sizes: the OMAR paper's text is not among our sources and methods.md §4 gives
none, so the reference code decides: its main.py sets `config.hidden_dim = 256` for
HalfCheetah-v2 (default 64, the MPE setting), two hidden layers (utils/networks.py,
fc1 → fc2 → fc3) for actor and critics: 256-256.

Deviations from the reference code, all documented choices:
* eq. (2) subtracts the Gaussian *log* density of the noise (the reference subtracts
  the density itself) and the uniform log density log(0.5^D), as in CQL(H);
* for MaMuJoCo the reference overrides the search with 2 iterations, 20 samples and
  5 elites, and for MPE refits μ as a softmax(Q)-weighted mean instead of elites; we
  use the elite refit of eq. (4) with the methods.md numbers (all configurable);
* the team reward is every agent's reward (the reference's cooperative tasks do so).

Per-decision weights w_i (`fit(..., weights=...)`) weigh agent i's terms of (3) and (6)
(weighted means over the batch and agents). With `proximity` the update reports PJAP's
d_τ (T = 1) of its transitions, (1/(N·D))‖μ̄(o) − a^D‖₁ with the target actor μ̄, so
`PJAP` can drive it.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import optax

from teamsift.checks import require_continuous, require_non_negative, require_positive, require_unit_interval
from teamsift.algos.continuous import (
    TRANSITION_FIELDS, ActorCriticState, actor_actions, actor_config, agent_critic_config, agent_mean,
    transition_batch, transition_distance,
)
from teamsift.data import to_device
from teamsift.engine import Feedback, Learner
from teamsift.nets import AgentNetConfig, NetworkPolicy, init_params
from teamsift.nets.critic import AgentCriticConfig, agent_q, agent_q_actions, init_agent_critic, one_head, polyak_update
from teamsift.nets.ops import gaussian_log_density


@dataclasses.dataclass(frozen=True)
class OMARConfig:
    omar_coef: float = 0.7  # c of eq. (6)
    cql_weight: float = 1.0  # α_cql of eq. (3)
    cql_samples: int = 10  # M per kind (uniform, π(o)+ε, π(o')+ε)
    cql_sigma: float = 0.2  # σ_cql
    cql_temperature: float = 1.0
    cem_iterations: int = 3
    cem_samples: int = 10
    cem_elites: int = 10
    cem_mu: float = 0.0
    cem_sigma: float = 2.0
    action_l2: float = 1e-3
    tau: float = 0.005
    gamma: float = 0.99
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    max_grad_norm: float = 0.5
    batch_size: int = 256
    actor_hidden: tuple[int, ...] = (256, 256)  # reference code, HalfCheetah: hidden_dim = 256, two layers
    critic_hidden: tuple[int, ...] = (256, 256)  # (the same)
    shared_critic: bool = False  # (ours) True: one critic network for all agents, with agent ids

    def __post_init__(self):
        require_positive(self, ("cql_samples", "cql_sigma", "cql_temperature", "cem_iterations", "cem_samples",
                                "cem_elites", "cem_sigma", "actor_lr", "critic_lr", "max_grad_norm", "batch_size"))
        require_unit_interval(self, ("omar_coef", "tau", "gamma"))
        require_non_negative(self, ("cql_weight",))
        if self.cem_elites > self.cem_samples:
            raise ValueError(f"OMARConfig.cem_elites: expected at most cem_samples ({self.cem_samples}), got "
                             f"{self.cem_elites}")


METRICS = ("critic_loss", "td_loss", "cql_loss", "actor_loss", "q_mean", "cem_better")

OMARState = ActorCriticState


def make_optimizer(lr: float, max_grad_norm: float) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr))


# --- eq. (2): conservative penalty ---------------------------------------------------------

def cql_samples(key, policy_actions, next_policy_actions, config: OMARConfig):
    """Sampled actions [B, 3M, N, D] and their log densities [B, 3M, N]."""
    m = config.cql_samples
    uniform_key, current_key, next_key = jax.random.split(key, 3)
    shape = policy_actions.shape[:1] + (m,) + policy_actions.shape[1:]
    uniform = jax.random.uniform(uniform_key, shape, minval=-1.0, maxval=1.0)
    uniform_logp = jnp.full(shape[:-1], -shape[-1] * jnp.log(2.0))
    noisy, noisy_logp = [], []
    for k, centre in ((current_key, policy_actions), (next_key, next_policy_actions)):
        noise = config.cql_sigma * jax.random.normal(k, shape)
        noisy.append(jnp.clip(centre[:, None] + noise, -1.0, 1.0))
        noisy_logp.append(gaussian_log_density(noise, 0.0, math.log(config.cql_sigma)))
    return (jnp.concatenate([uniform] + noisy, axis=1),
            jax.lax.stop_gradient(jnp.concatenate([uniform_logp] + noisy_logp, axis=1)))


def cql_penalty(q_sampled: jax.Array, log_density: jax.Array, q_data: jax.Array, temperature: float,
                weight: jax.Array | None = None) -> jax.Array:
    """Eq. (2) per head, averaged over batch and agents (weighted by `weight` [B, N]):
    q_sampled [K, B, M, N], q_data [K, B, N] → [K]."""
    scores = (q_sampled - log_density[None]) / temperature
    soft_max = temperature * jax.nn.logsumexp(scores, axis=2)
    if weight is None:
        return jnp.mean(soft_max - q_data, axis=(1, 2))
    return jax.vmap(lambda gap: agent_mean(gap, weight))(soft_max - q_data)


def critic_loss(critic, critic_cfg, batch, targets, sampled, log_density, config: OMARConfig):
    weight = batch.get("weight")
    q_data = agent_q(critic_cfg, critic, batch["obs"], batch["actions"])  # [K, B, N]
    if weight is None:
        td = jnp.sum(jnp.mean((q_data - targets[None]) ** 2, axis=(1, 2)))
    else:
        td = jnp.sum(jax.vmap(lambda q: agent_mean((q - targets) ** 2, weight))(q_data))
    q_sampled = agent_q_actions(critic_cfg, critic, batch["obs"], sampled)  # [K, B, 3M, N]
    cql = jnp.sum(cql_penalty(q_sampled, log_density, q_data, config.cql_temperature, weight))
    return td + config.cql_weight * cql, (td, cql)


# --- eqs. (4)–(5): actor rectification by CEM ------------------------------------------------

def cem_search(key, q_fn, batch_shape: tuple[int, ...], action_dim: int, config: OMARConfig):
    """Maximise q_fn(actions[B, S, N, D]) → [B, S, N] per (b, i) by the cross-entropy method.

    Returns the best action [B, N, D] and its value [B, N] among the last ranked candidates.
    """
    b, n = batch_shape
    mu = jnp.full((b, 1, n, action_dim), config.cem_mu, jnp.float32)
    sigma = jnp.full((b, 1, n, action_dim), config.cem_sigma, jnp.float32)
    elites = elite_q = None
    for it, k in enumerate(jax.random.split(key, config.cem_iterations)):
        draws = jnp.clip(mu + sigma * jax.random.normal(k, (b, config.cem_samples, n, action_dim)), -1.0, 1.0)
        values = q_fn(draws)
        if it > 0:  # rank together with the previous elites
            draws = jnp.concatenate([draws, elites], axis=1)
            values = jnp.concatenate([values, elite_q], axis=1)
        top_q, top = jax.lax.top_k(jnp.moveaxis(values, 1, -1), config.cem_elites)  # [B, N, E]
        elites = jnp.take_along_axis(draws, jnp.moveaxis(top, -1, 1)[..., None], axis=1)  # [B, E, N, D]
        elite_q = jnp.moveaxis(top_q, -1, 1)  # [B, E, N]
        mu, sigma = elites.mean(axis=1, keepdims=True), elites.std(axis=1, keepdims=True)
    best = elites[:, 0]  # top_k sorts descending
    return best, elite_q[:, 0]


def rectified_targets(key, critic, critic_cfg, obs, policy_actions, config: OMARConfig):
    """Eq. (5): â = the better of π(o) and the CEM action under Q_{i,1} (no gradient)."""
    first = one_head(critic_cfg, critic, 0)
    q1 = lambda acts: agent_q_actions(critic_cfg, first, obs, acts)[0]  # [B, S, N]
    best, best_q = cem_search(key, q1, policy_actions.shape[:2], policy_actions.shape[-1], config)
    policy_q = q1(policy_actions[:, None])[:, 0]
    better = best_q > policy_q
    return jax.lax.stop_gradient(jnp.where(better[..., None], best, policy_actions)), jnp.mean(better)


def actor_loss(actor, net, critic, critic_cfg, obs, rectified, config: OMARConfig, weight=None):
    """Eq. (6) (agent i's terms weighted by `weight` [B, N] when given)."""
    pi = actor_actions(net, actor, obs)
    q = agent_q(critic_cfg, critic, obs, pi)[0]  # [B, N]
    c = config.omar_coef
    if weight is None:
        loss = (c * jnp.mean((pi - rectified) ** 2) - (1.0 - c) * jnp.mean(q)
                + config.action_l2 * jnp.mean(pi**2))
        return loss, jnp.mean(q)
    per_agent = (c * jnp.mean((pi - rectified) ** 2, axis=-1) - (1.0 - c) * q
                 + config.action_l2 * jnp.mean(pi**2, axis=-1))  # [B, N]
    return agent_mean(per_agent, weight), agent_mean(q, weight)


def prepare(dataset, inputs: dict) -> dict:
    return to_device(dataset, TRANSITION_FIELDS)


@functools.lru_cache(maxsize=None)
def make_learner(config: OMARConfig, net: AgentNetConfig, critic_cfg: AgentCriticConfig) -> Learner:
    actor_opt = make_optimizer(config.actor_lr, config.max_grad_norm)
    critic_opt = make_optimizer(config.critic_lr, config.max_grad_norm)

    def init(key, arrays) -> OMARState:
        actor_key, critic_key = jax.random.split(key)
        actor = init_params(net, actor_key)
        critic = init_agent_critic(critic_cfg, critic_key)
        return OMARState(actor, actor, critic, critic, actor_opt.init(actor), critic_opt.init(critic), jnp.int32(0))

    def update(state: OMARState, key, arrays, rows):
        _, cql_key, cem_key = jax.random.split(key, 3)
        batch = transition_batch(arrays, rows)
        obs, next_obs = batch["obs"], batch["next_obs"]
        # Critic, eqs. (1)-(3).
        next_q = jnp.min(agent_q(critic_cfg, state.critic_target, next_obs,
                                 actor_actions(net, state.actor_target, next_obs)), axis=0)
        targets = jax.lax.stop_gradient(batch["reward"][:, None] + config.gamma * batch["not_terminal"][:, None] * next_q)
        policy_actions = actor_actions(net, state.actor, obs)  # π(o): CQL's and the rectification's
        sampled, log_density = cql_samples(cql_key, policy_actions, actor_actions(net, state.actor, next_obs), config)
        sampled = jax.lax.stop_gradient(sampled)
        (c_loss, (td, cql)), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
            state.critic, critic_cfg, batch, targets, sampled, log_density, config)
        c_updates, critic_opt_state = critic_opt.update(c_grads, state.critic_opt, state.critic)
        critic = optax.apply_updates(state.critic, c_updates)
        # Actor, eqs. (4)-(6), against the updated critic.
        rectified, cem_better = rectified_targets(cem_key, critic, critic_cfg, obs, policy_actions, config)
        (a_loss, q_mean), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(
            state.actor, net, critic, critic_cfg, obs, rectified, config, batch.get("weight"))
        a_updates, actor_opt_state = actor_opt.update(a_grads, state.actor_opt, state.actor)
        actor = optax.apply_updates(state.actor, a_updates)
        new_state = OMARState(actor, polyak_update(state.actor_target, actor, config.tau), critic,
                              polyak_update(state.critic_target, critic, config.tau), actor_opt_state,
                              critic_opt_state, state.step + 1)
        metrics = {"critic_loss": c_loss, "td_loss": td, "cql_loss": cql, "actor_loss": a_loss, "q_mean": q_mean,
                   "cem_better": cem_better}
        # PJAP's d_τ (T = 1): the target actor's action (before this update) against the data's.
        distance = transition_distance(actor_actions(net, state.actor_target, obs), batch["actions"])
        return new_state, metrics, Feedback(rows, distance)

    def policy(state: OMARState, arrays) -> NetworkPolicy:
        return NetworkPolicy(params=state.actor, config=net, deterministic=True)

    return Learner("omar", init, update, policy, prepare=prepare, unit="step",
                   batch_size=config.batch_size, headline="critic_loss",
                   proximity=True)


def learner(config: OMARConfig, dataset) -> Learner:
    """OMAR on `dataset` (continuous actions, transitions)."""
    require_continuous(dataset, "OMAR", TRANSITION_FIELDS)
    spec = dataset.spec
    return make_learner(config, actor_config(spec, config.actor_hidden), agent_critic_config(config, spec))
