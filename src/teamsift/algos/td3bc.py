"""TD3+BC per agent (Fujimoto & Gu 2021, "A Minimalist Approach to Offline RL").

Every agent i is an independent TD3 learner on its own observation o_i, action a_i and
the team reward r; the actor is one parameter-shared network with a one-hot agent id,
the critics are one twin network per agent.

    normalise observations: o ← (o − μ_D) / σ_D          (dataset statistics per feature)
    for update k = 1 … U:                                 (the engine: lax loops inside jit)
        draw a batch B of joint transitions (o, a, r, o', terminated)
        ã_i = clip(μ̄(o'_i) + clip(ε, −c, c), −1, 1),  ε ~ N(0, σ̃²)       target policy smoothing
        y_i = r + γ·(1 − terminated)·min_{k=1,2} Q̄_{i,k}(o'_i, ã_i)        (clipped double Q)
        L(φ) = Σ_i Σ_k E_B[(Q_{i,k}(o_i, a_i) − y_i)²]
        if k mod d = 0:                                    (delayed policy update)
            λ_i = α / E_B|Q_{i,1}(o_i, π(o_i))|            (eq. 5, no gradient through λ)
            L(θ) = (1/N) Σ_i E_B[ −λ_i·Q_{i,1}(o_i, π(o_i)) + mean_d (π(o_i) − a_i)² ]   (eq. 4)
            θ̄ ← (1 − τ)θ̄ + τθ,  φ̄ ← (1 − τ)φ̄ + τφ

Defaults are the paper's: α = 2.5, σ̃ = 0.2, c = 0.5, d = 2, τ = 0.005, γ = 0.99,
Adam lr 3e-4 for actor and critics, batch 256, MLPs 256-256 (ReLU), 1M updates (the
registry's budget); the normalisation divides by σ_D + 1e-3, as the paper's code does
(the floor matters: a constant feature, σ_D = 0, would otherwise be scaled by 1e4 when
the normalisation is folded into the actor, and float32 rounding of that fold wrecks the
returned policy).
The normalisation is folded into the actor's first layer when the policy is built, so
the returned `NetworkPolicy` acts on raw observations.

Per-decision weights w_i (`fit(..., weights=...)`) weigh agent i's terms: the critic's
squared errors, and in the actor's loss the λ_i·Q and BC terms (λ_i = α / the weighted
mean |Q_i|). With `proximity` the update reports PJAP's d_τ (T = 1) of its transitions,
(1/(N·D))‖μ̄(o) − a^D‖₁ with the target actor μ̄, so `PJAP` can drive it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from teamsift.checks import require_continuous, require_non_negative, require_positive, require_unit_interval
from teamsift.algos.continuous import (
    TRANSITION_FIELDS, ActorCriticState, actor_actions, actor_config, agent_critic_config, agent_mean, obs_statistics,
    transition_batch, transition_distance,
)
from teamsift.data import to_device
from teamsift.engine import Feedback, Learner
from teamsift.nets import AgentNetConfig, NetworkPolicy, init_params
from teamsift.nets.critic import AgentCriticConfig, agent_q, init_agent_critic, polyak_update
from teamsift.nets.normalization import fold_normalization


@dataclasses.dataclass(frozen=True)
class TD3BCConfig:
    alpha: float = 2.5  # α of eq. 5
    policy_noise: float = 0.2  # σ̃
    noise_clip: float = 0.5  # c
    policy_delay: int = 2  # d
    tau: float = 0.005
    gamma: float = 0.99
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    batch_size: int = 256
    actor_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (256, 256)
    shared_critic: bool = False  # (ours) True: one critic network for all agents, with agent ids
    normalize_obs: bool = True

    def __post_init__(self):
        require_positive(self, ("batch_size", "policy_delay", "actor_lr", "critic_lr"))
        require_unit_interval(self, ("tau", "gamma"))
        require_non_negative(self, ("alpha", "policy_noise", "noise_clip"))


METRICS = ("critic_loss", "actor_loss", "q_mean", "bc_mse")

TD3BCState = ActorCriticState


def smoothed_target_actions(key, net, actor_target, next_obs, config: TD3BCConfig) -> jax.Array:
    """ã = clip(μ̄(o') + clip(ε, −c, c), −1, 1), ε ~ N(0, σ̃²)."""
    target = actor_actions(net, actor_target, next_obs)
    noise = jnp.clip(config.policy_noise * jax.random.normal(key, target.shape), -config.noise_clip, config.noise_clip)
    return jnp.clip(target + noise, -1.0, 1.0)


def critic_loss(critic, critic_cfg, batch, targets) -> jax.Array:
    """Σ_k E[(Q_{i,k}(o_i, a_i) − y_i)²], averaged over agents (weighted by `batch["weight"]`)."""
    q = agent_q(critic_cfg, critic, batch["obs"], batch["actions"])  # [K, B, N]
    if "weight" not in batch:
        return jnp.sum(jnp.mean((q - targets[None]) ** 2, axis=(1, 2)))
    return jnp.sum(jax.vmap(lambda qk: agent_mean((qk - targets) ** 2, batch["weight"]))(q))


def actor_loss(actor, net, critic, critic_cfg, batch, alpha: float):
    """Eq. 4 with λ_i = α / E|Q_i| (eq. 5). Returns (loss, (q mean, BC mse)).

    With `batch["weight"]` [B, N] every expectation over the batch is agent i's weighted mean."""
    pi = actor_actions(net, actor, batch["obs"])
    q = agent_q(critic_cfg, critic, batch["obs"], pi)[0]  # first head [B, N]
    if "weight" not in batch:
        lam = jax.lax.stop_gradient(alpha / jnp.maximum(jnp.mean(jnp.abs(q), axis=0), 1e-6))  # [N]
        bc = jnp.mean((pi - batch["actions"]) ** 2, axis=(0, 2))  # [N]
        loss = jnp.mean(-lam * jnp.mean(q, axis=0) + bc)
        return loss, (jnp.mean(q), jnp.mean(bc))
    weight = batch["weight"]  # [B, N]
    agent_weight = jnp.maximum(jnp.sum(weight, axis=0), 1e-8)  # [N]
    lam = jax.lax.stop_gradient(alpha / jnp.maximum(jnp.sum(weight * jnp.abs(q), axis=0) / agent_weight, 1e-6))
    bc = jnp.mean((pi - batch["actions"]) ** 2, axis=2)  # [B, N]
    loss = agent_mean(-lam * q + bc, weight)
    return loss, (agent_mean(q, weight), agent_mean(bc, weight))


def prepare_arrays(dataset, normalize_obs: bool) -> dict:
    """Transitions on the device; with `normalize_obs` the dataset's observation statistics
    ("obs_stats"), by which every batch's observations are normalised (`normalized_batch`)
    and which the returned policy folds into its first layer."""
    arrays = to_device(dataset, TRANSITION_FIELDS)
    if normalize_obs:
        arrays["obs_stats"] = obs_statistics(dataset)
    return arrays


def normalized_batch(arrays: dict, rows: jax.Array) -> dict:
    """The transitions at rows [B] (`transition_batch`), observations normalised by the
    dataset's statistics when the arrays hold them (the data itself stays raw)."""
    batch = transition_batch(arrays, rows)
    if "obs_stats" in arrays:
        for name in ("obs", "next_obs"):
            batch[name] = arrays["obs_stats"].normalize(batch[name])
    return batch


@functools.lru_cache(maxsize=None)
def make_learner(config: TD3BCConfig, net: AgentNetConfig, critic_cfg: AgentCriticConfig) -> Learner:
    actor_opt = optax.adam(config.actor_lr)
    critic_opt = optax.adam(config.critic_lr)

    def init(key, arrays) -> TD3BCState:
        actor_key, critic_key = jax.random.split(key)
        actor = init_params(net, actor_key)
        critic = init_agent_critic(critic_cfg, critic_key)
        return TD3BCState(actor, actor, critic, critic, actor_opt.init(actor), critic_opt.init(critic), jnp.int32(0))

    def update(state: TD3BCState, key, arrays, rows, step=None):
        noise_key = jax.random.split(key)[1]
        batch = normalized_batch(arrays, rows)
        # Critic: clipped double-Q target with target policy smoothing.
        next_actions = smoothed_target_actions(noise_key, net, state.actor_target, batch["next_obs"], config)
        next_q = jnp.min(agent_q(critic_cfg, state.critic_target, batch["next_obs"], next_actions), axis=0)
        targets = jax.lax.stop_gradient(
            batch["reward"][:, None] + config.gamma * batch["not_terminal"][:, None] * next_q)
        c_loss, c_grads = jax.value_and_grad(critic_loss)(state.critic, critic_cfg, batch, targets)
        c_updates, critic_opt_state = critic_opt.update(c_grads, state.critic_opt, state.critic)
        critic = optax.apply_updates(state.critic, c_updates)

        # Actor and targets: every `policy_delay` updates, with the freshly updated critic. The
        # engine's `step` is one scalar for every seed, so under the seed vmap this stays a
        # branch (the skipped updates do no actor work); a per-seed counter would make it a select.
        def delayed(_):
            (a_loss, (q_mean, bc)), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(
                state.actor, net, critic, critic_cfg, batch, config.alpha)
            a_updates, actor_opt_state = actor_opt.update(a_grads, state.actor_opt, state.actor)
            actor = optax.apply_updates(state.actor, a_updates)
            return (actor, actor_opt_state, polyak_update(state.actor_target, actor, config.tau),
                    polyak_update(state.critic_target, critic, config.tau), a_loss, q_mean, bc)

        def skip(_):
            nan = jnp.float32(jnp.nan)
            return state.actor, state.actor_opt, state.actor_target, state.critic_target, nan, nan, nan

        actor, actor_opt_state, actor_target, critic_target, a_loss, q_mean, bc = jax.lax.cond(
            (state.step if step is None else step) % config.policy_delay == 0, delayed, skip, None)
        new_state = TD3BCState(actor, actor_target, critic, critic_target, actor_opt_state, critic_opt_state,
                               state.step + 1)
        metrics = {"critic_loss": c_loss, "actor_loss": a_loss, "q_mean": q_mean, "bc_mse": bc}
        # PJAP's d_τ (T = 1): the target actor's action (before this update) against the data's.
        distance = transition_distance(actor_actions(net, state.actor_target, batch["obs"]), batch["actions"])
        return new_state, metrics, Feedback(rows, distance)

    def policy(state: TD3BCState, arrays) -> NetworkPolicy:
        """The actor on RAW observations (the normalisation folded into its first layer)."""
        return NetworkPolicy(params=fold_normalization(net, state.actor, arrays.get("obs_stats")), config=net,
                             deterministic=True)

    return Learner("td3bc", init, update, policy, prepare=lambda dataset, inputs: prepare_arrays(
        dataset, config.normalize_obs), unit="step", batch_size=config.batch_size, headline="critic_loss",
                   proximity=True, takes_step=True)


def learner(config: TD3BCConfig, dataset) -> Learner:
    """TD3+BC on `dataset` (continuous actions, transitions)."""
    require_continuous(dataset, "TD3+BC", TRANSITION_FIELDS)
    spec = dataset.spec
    return make_learner(config, actor_config(spec, config.actor_hidden), agent_critic_config(config, spec))
