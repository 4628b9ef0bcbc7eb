"""TD3+BC per agent (Fujimoto & Gu 2021, "A Minimalist Approach to Offline RL").

Every agent i is an independent TD3 learner on its own observation o_i, action a_i and
the team reward r; the actor is one parameter-shared network with a one-hot agent id,
the critics are one twin network per agent.

    normalise observations: o ← (o − μ_D) / σ_D          (dataset statistics per feature)
    for update k = 1 … num_updates:                       (lax.scan inside jit)
        sample a batch B of joint transitions (o, a, r, o', terminated)
        ã_i = clip(μ̄(o'_i) + clip(ε, −c, c), −1, 1),  ε ~ N(0, σ̃²)       target policy smoothing
        y_i = r + γ·(1 − terminated)·min_{k=1,2} Q̄_{i,k}(o'_i, ã_i)        (clipped double Q)
        L(φ) = Σ_i Σ_k E_B[(Q_{i,k}(o_i, a_i) − y_i)²]
        if k mod d = 0:                                    (delayed policy update)
            λ_i = α / E_B|Q_{i,1}(o_i, π(o_i))|            (eq. 5, no gradient through λ)
            L(θ) = (1/N) Σ_i E_B[ −λ_i·Q_{i,1}(o_i, π(o_i)) + mean_d (π(o_i) − a_i)² ]   (eq. 4)
            θ̄ ← (1 − τ)θ̄ + τθ,  φ̄ ← (1 − τ)φ̄ + τφ

Defaults are the paper's: α = 2.5, σ̃ = 0.2, c = 0.5, d = 2, τ = 0.005, γ = 0.99,
Adam lr 3e-4 for actor and critics, batch 256, MLPs 256-256 (ReLU), 1M updates; the
normalisation divides by σ_D + 1e-3, as the paper's code does (the floor matters: a
constant feature, σ_D = 0, would otherwise be scaled by 1e4 when the normalisation is
folded into the actor, and float32 rounding of that fold wrecks the returned policy).
The normalisation is folded into the actor's first layer at the end, so the returned
`NetworkPolicy` acts on raw observations.

This module also holds the input checks and device data the other continuous learners
(`omar`, `maddpg_cql`) share.
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
from teamsift.algos.offline_common import require_positive, require_unit_interval  # noqa: F401 (re-exported)
from teamsift.collect.ppo import RunningStats, fold_normalization
from teamsift.data import sample_transitions, to_device
from teamsift.nets import AgentNetConfig, NetworkPolicy, apply_step, init_params
from teamsift.nets.critic import AgentCriticConfig, agent_q, init_agent_critic, polyak_update

#: Step fields the transition learners read (next_obs comes from final_obs at episode ends).
TRANSITION_FIELDS = ("obs", "actions", "reward", "terminated", "truncated", "final_obs")


# --- shared by the continuous learners ------------------------------------------------------

def require_continuous(dataset, learner: str, fields: tuple[str, ...] = ("obs", "actions", "reward")) -> None:
    """Raise a clear error unless `dataset` has continuous actions and the needed fields."""
    spec = dataset.spec
    if spec.discrete:
        raise ValueError(
            f"dataset.spec.discrete: {learner} learns continuous actions; expected a continuous-action dataset, "
            f"got discrete actions with {spec.num_actions} choices (env {spec.env_id!r})"
        )
    for field in fields:
        if field not in dataset.steps:
            raise ValueError(f"dataset.steps[{field!r}]: {learner} needs it; the dataset has {sorted(dataset.steps)}")


def actor_config(spec, hidden: tuple[int, ...], recurrent: bool = False) -> AgentNetConfig:
    """The parameter-shared deterministic actor: obs (+ agent id) → MLP/GRU → tanh."""
    return AgentNetConfig(num_agents=spec.num_agents, obs_dim=spec.obs_dim, num_actions=spec.num_actions,
                          discrete=False, recurrent=recurrent, hidden=tuple(hidden))


def actor_actions(net: AgentNetConfig, params, obs: jax.Array) -> jax.Array:
    """π(o) for obs [..., N, O] → [..., N, D] (feed-forward actors)."""
    return apply_step(net, params, obs, None)[0]


def sample_batch(key: jax.Array, data: dict, batch_size: int) -> dict:
    """Joint transitions with actions clipped to [−1, 1] and float flags."""
    batch = sample_transitions(key, data, batch_size)
    batch["actions"] = jnp.clip(batch["actions"], -1.0, 1.0)
    batch["not_terminal"] = 1.0 - batch["terminated"].astype(jnp.float32)
    return batch


OBS_STD_FLOOR = 1e-3  # TD3+BC's code: (o − μ) / (σ + 1e-3)


def obs_statistics(dataset) -> RunningStats:
    """Mean of every observation feature over all steps and agents, and a variance chosen so
    that `RunningStats.std()` (√(var + 1e-8)) is σ_D + 1e-3."""
    obs = np.asarray(dataset.steps["obs"], np.float64).reshape(-1, dataset.spec.obs_dim)
    std = obs.std(0) + OBS_STD_FLOOR
    return RunningStats(jnp.asarray(obs.mean(0), jnp.float32), jnp.asarray(std**2 - 1e-8, jnp.float32),
                        jnp.float32(obs.shape[0]))


def stack_metrics(*values) -> jax.Array:
    """One float32 vector per update (`common.run_updates` logs it as [seeds, updates, M])."""
    return jnp.stack([jnp.asarray(v, jnp.float32) for v in values])


def split_metrics(values: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {name: values[..., i] for i, name in enumerate(names)}


def copy_tree(tree):
    """Fresh buffers for every leaf (targets start as copies: donated carries must not alias)."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def unstack_seed(tree, num_seeds: int):
    return tree if num_seeds > 1 else jax.tree.map(lambda x: x[0], tree)


# --- TD3+BC ---------------------------------------------------------------------------------

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
    num_updates: int = 1_000_000
    log_every: int = 5_000

    def __post_init__(self):
        require_positive(self, ("batch_size", "policy_delay", "actor_lr", "critic_lr", "num_updates", "log_every"))
        require_unit_interval(self, ("tau", "gamma"))
        if self.alpha < 0 or self.policy_noise < 0 or self.noise_clip < 0:
            raise ValueError(f"TD3BCConfig: alpha, policy_noise and noise_clip must be >= 0, got "
                             f"{self.alpha}, {self.policy_noise}, {self.noise_clip}")


METRICS = ("critic_loss", "actor_loss", "q_mean", "bc_mse")


class ActorCriticState(NamedTuple):
    """Training state of the per-agent actor-critic learners (TD3+BC, OMAR)."""

    actor: Any
    actor_target: Any
    critic: Any
    critic_target: Any
    actor_opt: Any
    critic_opt: Any
    step: jax.Array


TD3BCState = ActorCriticState


def critic_config(config, spec) -> AgentCriticConfig:
    """Per-agent critics Q_i(o_i, a_i) from a config's `critic_hidden` and `shared_critic`."""
    return AgentCriticConfig(num_agents=spec.num_agents, obs_dim=spec.obs_dim, action_dim=spec.num_actions,
                             hidden=tuple(config.critic_hidden), shared=config.shared_critic)


def smoothed_target_actions(key, net, actor_target, next_obs, config: TD3BCConfig) -> jax.Array:
    """ã = clip(μ̄(o') + clip(ε, −c, c), −1, 1), ε ~ N(0, σ̃²)."""
    target = actor_actions(net, actor_target, next_obs)
    noise = jnp.clip(config.policy_noise * jax.random.normal(key, target.shape), -config.noise_clip, config.noise_clip)
    return jnp.clip(target + noise, -1.0, 1.0)


def critic_loss(critic, critic_cfg, batch, targets) -> jax.Array:
    """Σ_k E[(Q_{i,k}(o_i, a_i) − y_i)²], averaged over agents."""
    q = agent_q(critic_cfg, critic, batch["obs"], batch["actions"])  # [K, B, N]
    return jnp.sum(jnp.mean((q - targets[None]) ** 2, axis=(1, 2)))


def actor_loss(actor, net, critic, critic_cfg, batch, alpha: float):
    """Eq. 4 with λ_i = α / E|Q_i| (eq. 5). Returns (loss, (q mean, BC mse))."""
    pi = actor_actions(net, actor, batch["obs"])
    q = agent_q(critic_cfg, critic, batch["obs"], pi)[0]  # first head [B, N]
    lam = jax.lax.stop_gradient(alpha / jnp.maximum(jnp.mean(jnp.abs(q), axis=0), 1e-6))  # [N]
    bc = jnp.mean((pi - batch["actions"]) ** 2, axis=(0, 2))  # [N]
    loss = jnp.mean(-lam * jnp.mean(q, axis=0) + bc)
    return loss, (jnp.mean(q), jnp.mean(bc))


@functools.lru_cache(maxsize=None)
def make_update(net: AgentNetConfig, critic_cfg: AgentCriticConfig, config: TD3BCConfig):
    """The pure update: (TD3BCState, key, data) → (TD3BCState, metrics[4])."""
    actor_opt = optax.adam(config.actor_lr)
    critic_opt = optax.adam(config.critic_lr)

    def update(state: TD3BCState, key, data):
        batch_key, noise_key = jax.random.split(key)
        batch = sample_batch(batch_key, data, config.batch_size)
        # Critic: clipped double-Q target with target policy smoothing.
        next_actions = smoothed_target_actions(noise_key, net, state.actor_target, batch["next_obs"], config)
        next_q = jnp.min(agent_q(critic_cfg, state.critic_target, batch["next_obs"], next_actions), axis=0)
        targets = jax.lax.stop_gradient(
            batch["reward"][:, None] + config.gamma * batch["not_terminal"][:, None] * next_q)
        c_loss, c_grads = jax.value_and_grad(critic_loss)(state.critic, critic_cfg, batch, targets)
        c_updates, critic_opt_state = critic_opt.update(c_grads, state.critic_opt, state.critic)
        critic = optax.apply_updates(state.critic, c_updates)

        # Actor and targets: every `policy_delay` updates, with the freshly updated critic.
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
            state.step % config.policy_delay == 0, delayed, skip, None)
        new_state = TD3BCState(actor, actor_target, critic, critic_target, actor_opt_state, critic_opt_state,
                               state.step + 1)
        return new_state, stack_metrics(c_loss, a_loss, q_mean, bc)

    return update


def init_state(net: AgentNetConfig, critic_cfg: AgentCriticConfig, config: TD3BCConfig, key) -> TD3BCState:
    actor_key, critic_key = jax.random.split(key)
    actor = init_params(net, actor_key)
    critic = init_agent_critic(critic_cfg, critic_key)
    return TD3BCState(actor, actor, critic, critic, optax.adam(config.actor_lr).init(actor),
                      optax.adam(config.critic_lr).init(critic), jnp.int32(0))


def run_actor_critic(init_state_fn, make_update_fn, net, critic_cfg, config, data: dict, key: jax.Array,
                     num_seeds: int, *, progress: bool, label: str):
    """Init `num_seeds` states (targets as fresh copies) and scan `config.num_updates` updates
    of `make_update_fn` over them: the driver TD3+BC and OMAR share. Returns (carry, metrics)."""
    seed_keys = jax.random.split(key, (num_seeds, 2))
    carry = jax.vmap(lambda k: init_state_fn(net, critic_cfg, config, k))(seed_keys[:, 0])
    carry = carry._replace(actor_target=copy_tree(carry.actor_target), critic_target=copy_tree(carry.critic_target))
    update = make_update_fn(net, critic_cfg, dataclasses.replace(config, num_updates=1, log_every=1))
    return common.run_updates(update, carry, seed_keys[:, 1], config.num_updates, config.log_every, data,
                              progress=progress, label=label)


def train(config: TD3BCConfig, dataset, key: jax.Array, *, num_seeds: int = 1,
          progress: bool = True) -> tuple[NetworkPolicy, dict[str, Any]]:
    """TD3+BC on `dataset`. Returns (policy, logs); with num_seeds > 1 the policy's params
    carry a leading seed axis. logs hold per-update metrics [seeds, updates] (NaN on
    updates without an actor step)."""
    require_continuous(dataset, "TD3+BC", TRANSITION_FIELDS)
    spec = dataset.spec
    net = actor_config(spec, config.actor_hidden)
    critic_cfg = critic_config(config, spec)
    data = to_device(dataset, TRANSITION_FIELDS)
    stats = obs_statistics(dataset) if config.normalize_obs else None
    if stats is not None:
        data["obs"] = stats.normalize(data["obs"])
        data["final_obs"] = stats.normalize(data["final_obs"])

    carry, metrics = run_actor_critic(init_state, make_update, net, critic_cfg, config, data, key, num_seeds,
                                      progress=progress, label="TD3+BC")
    actor = jax.vmap(lambda p: fold_normalization(net, p, stats))(carry.actor)
    policy = NetworkPolicy(params=unstack_seed(actor, num_seeds), config=net, deterministic=True)
    logs = {"num_seeds": num_seeds, "config": dataclasses.asdict(config), **split_metrics(metrics, METRICS)}
    logs["loss"] = logs["critic_loss"]
    return policy, logs
