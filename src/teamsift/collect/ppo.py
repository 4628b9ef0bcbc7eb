"""MAPPO and IPPO (PureJaxRL style): online trainers for the behaviour policies from which
random / medium / expert pools of checkpoints are cut (SIT's recipe).

    for update u = 1 … U:                  (`teamsift.engine.fit`: lax loops inside jit, seeds vmapped)
        roll the N vmapped environments forward L steps with the stochastic actor
            a_i ~ π_θ(· | o_i, id_i)      categorical over masked logits (discrete)
                                          N(tanh μ_θ(o_i, id_i), exp(log σ)) (continuous;
                                          the environment clips to [−1, 1])
            an environment that is done is replaced by a fresh `env.reset` (auto-reset);
            a GRU actor's state is zeroed at every episode start
        r_t   = reward_scale · (team reward (or reward_fn(…)) + c_u · Σ shaped reward)
        V     = V_φ(s, id_i)   (MAPPO: global state + one-hot id; one value per agent)
                V_φ(o_i, id_i) (IPPO: the agent's own observation + one-hot id)
        δ_t   = r_t + γ · (1 − terminated_t) · V(x_{t+1}) − V(x_t)
                where x_{t+1} is the observation the step produced, BEFORE any reset:
                on truncation we bootstrap from the final observation, on termination
                not at all
        Â_t   = δ_t + γλ · (1 − done_t) · Â_{t+1}           (GAE, per agent)
        for epoch 1 … update_epochs, for each of num_minibatches minibatches:
            L = −E[min(ρ Â, clip(ρ, 1 ± ε) Â)]              ρ = π_θ(a|o) / π_old(a|o)
                + vf_coef · ½ E[max((V − R)², (clip(V, V_old ± ε) − R)²)]
                − ent_coef · E[H(π_θ)]
            θ, φ ← Adam (separate optimisers, each clipped to max_grad_norm)

Minibatches: an MLP actor shuffles all L·N joint transitions; a GRU actor splits the N
environments, keeping whole rollouts so the GRU state can be rebuilt (zeroed wherever an
episode starts, exactly as in the rollout).

The actor is our parameter-shared agent network (`teamsift.nets.agent`), so every
checkpoint loads directly into `NetworkPolicy(params, net)` (and a stack of them into
`CheckpointBank`). Continuous actors use `learned_std=True`; the policy head's last
layer starts at 1/100 of its default scale (near-uniform / near-zero-mean start).

Defaults (close to PureJaxRL / JaxMARL's baselines; per-environment settings that were
measured to work are in DEFAULT_CONFIGS, `config_for(env_id)` applies them):
    algo "mappo", 64 envs × 128 steps per update, 1M env steps, lr 5e-4 linearly
    annealed to 0, γ 0.99, λ 0.95, clip ε 0.2, entropy 0.01, value 0.5, grad-norm 0.5,
    4 epochs × 4 minibatches, hidden (64, 64), MLP actor and critic, reward_scale 1,
    advantages normalised per minibatch, no observation normalisation, 11 checkpoints.
Options: `normalize_obs` (running mean/std of actor and critic inputs, folded into the
actor's first layer when a checkpoint is written); `shaped_reward_key` (e.g. Overcooked's
`info["shaped_reward"]`, summed over cooks, added with a coefficient that decays linearly
to 0 over `shaped_reward_anneal` env steps); `reward_scale` (values stay O(1..100)).

Running it: `make_learner(config, env)` is the engine's `Learner` (no data: it draws
nothing; its snapshot is the exported actor, kept at update 0 and every
`updates_per_checkpoint` updates); `train(config, env, key, run=...)` runs it through
`teamsift.engine.fit` for exactly `config.num_updates` updates and wraps the result in a
`PPOResult` (checkpoints, per-log-row logs). The budget stays in the config
(`total_timesteps`): it shapes the learning-rate schedule.

Reuse inside adversarial imitation: `make_rollout` (collect L steps, returning the
`Transition` batch the discriminator trains on), `make_learn` (the PPO update on a
batch whose `reward` may have been replaced) and `make_update` (both; with an optional
`reward_fn(reward_params, obs, state, actions, next_obs, next_state) -> team reward`
computed per environment step, which replaces the environment's team reward for
learning) are pure functions of (TrainState, key[, reward_params]). The environment
runner, `Transition` and `gae` live in `teamsift.collect.onpolicy` (shared with MAT).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from teamsift.checks import require_choice, require_non_negative, require_positive, require_unit_interval
from teamsift.collect.onpolicy import (
    Runner, Transition, advantage_variance, auto_reset, checkpoint_params, gae, history_logs, reset_runner,
    reward_params, run_config, seed_view, vmap_env,
)
from teamsift.devices import gather_batch
from teamsift.engine import FitResult, Learner, RunConfig, fit
from teamsift.envs.base import Env, EnvSpec
from teamsift.nets.agent import MLP, AgentNetConfig, apply_step, init_params, initial_carry, masked_logits
from teamsift.nets.normalization import RunningStats, fold_normalization, normalize
from teamsift.nets.ops import LOG_2PI, gaussian_log_density
from teamsift.nets.policy import NetworkPolicy

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Hyperparameters of MAPPO / IPPO. Every field is static (part of the jit cache key)."""

    algo: str = "mappo"  # "mappo": critic on global state + id | "ippo": critic on own obs + id
    num_envs: int = 64  # environments stepped in parallel (vmapped)
    rollout_length: int = 128  # steps per environment per update
    total_timesteps: int = 1_000_000  # env steps summed over envs (rounded up to whole updates)
    num_checkpoints: int = 11  # evenly spaced, checkpoint 0 = the untrained initial params
    lr: float = 5e-4
    anneal_lr: bool = True  # linear decay of lr to 0 over the whole run
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2  # policy ratio clip, also the value clip
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5  # per network (actor and critic have their own optimiser)
    update_epochs: int = 4
    num_minibatches: int = 4
    hidden: tuple[int, ...] = (64, 64)  # actor; a GRU actor uses hidden[0] as its GRU width
    critic_hidden: tuple[int, ...] | None = None  # None: same as hidden (the critic is an MLP)
    recurrent: bool = False  # GRU actor
    reward_scale: float = 1.0  # multiplies the learning reward (keeps values O(1..100))
    normalize_advantages: bool = True  # per minibatch
    # Normalise actor (and critic) inputs by running mean/std of everything seen so far
    # (updated after each update). Checkpoints fold the normalisation into the actor's
    # first layer, so they still load into NetworkPolicy unchanged. Helps MaBrax.
    normalize_obs: bool = False
    # Optional shaped reward from `info[shaped_reward_key]` (summed over agents if a vector),
    # added to the team reward with coefficient shaped_reward_coef, linearly annealed to 0
    # over shaped_reward_anneal env steps (0: never annealed).
    shaped_reward_key: str | None = None
    shaped_reward_coef: float = 1.0
    shaped_reward_anneal: int = 0

    def __post_init__(self):
        require_choice(self, "algo", ("mappo", "ippo"))
        if self.num_checkpoints < 2:
            raise ValueError("PPOConfig.num_checkpoints: need >= 2 (checkpoint 0 is the initial params)")
        if self.num_envs < 1 or self.rollout_length < 1 or self.update_epochs < 1 or self.num_minibatches < 1:
            raise ValueError("PPOConfig: num_envs, rollout_length, update_epochs, num_minibatches must be >= 1")
        require_positive(self, ("total_timesteps", "lr", "max_grad_norm", "reward_scale"))
        require_non_negative(self, ("clip_eps", "ent_coef", "vf_coef", "shaped_reward_coef", "shaped_reward_anneal"))
        require_unit_interval(self, ("gamma", "gae_lambda"))
        batch = self.num_envs if self.recurrent else self.num_envs * self.rollout_length
        if batch % self.num_minibatches:
            what = "num_envs" if self.recurrent else "num_envs * rollout_length"
            raise ValueError(f"PPOConfig: {what} = {batch} is not divisible by num_minibatches = {self.num_minibatches}")

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.rollout_length

    @property
    def updates_per_checkpoint(self) -> int:
        intervals = self.num_checkpoints - 1
        return max(1, math.ceil(self.total_timesteps / (self.steps_per_update * intervals)))

    @property
    def num_updates(self) -> int:
        """Total updates: total_timesteps rounded up so every checkpoint interval is equal."""
        return self.updates_per_checkpoint * (self.num_checkpoints - 1)


# Settings found to work per environment: overrides of PPOConfig, keyed by registry id
# (used by `teamsift pools train ENV`). Each was run once (seed 0) on a shared 2-core CPU;
# the comment gives the final checkpoint's deterministic mean return (200 episodes; PP
# 1000, MaBrax 100) against the uniform random policy's, and the training wall time.
# Environments not listed fall back to the PPOConfig defaults (untested).
_MPE = dict(lr=1e-3, ent_coef=0.001, reward_scale=0.1)
_MABRAX = dict(total_timesteps=1_000_000, rollout_length=64, num_minibatches=8, lr=3e-4, ent_coef=0.0,
               reward_scale=0.1, normalize_obs=True)
_POLY = dict(num_envs=64, rollout_length=8, total_timesteps=50_000)
DEFAULT_CONFIGS: dict[str, dict[str, Any]] = {
    "commons": dict(num_envs=16, total_timesteps=500_000, reward_scale=0.05),  # 695 vs 371, 8 s
    "mpe_spread": dict(_MPE, total_timesteps=5_000_000),  # −33.2 vs −54.2, 86 s
    "CN_3ls3l": dict(_MPE, total_timesteps=3_000_000),  # −31.1 vs −54.2, 68 s
    "CN_4ls4l": dict(_MPE, total_timesteps=4_000_000),  # −37.9 vs −65.0, 59 s
    # The prey-distance shaping (annealed away over the first half) makes catches findable.
    "PP_3p1p": dict(_MPE, total_timesteps=3_000_000, shaped_reward_key="shaped_reward", shaped_reward_coef=1.0,
                    shaped_reward_anneal=1_500_000),
    # JaxMARL's prey outruns the predators: catches stay rare (best 1.09 vs random 0.48, 1000 episodes);
    # PP_3p1p is the variant with a slower prey that the suites use.
    "mpe_tag": dict(_MPE, total_timesteps=6_000_000, shaped_reward_key="shaped_reward", shaped_reward_coef=1.0),
    "smax_3m": dict(total_timesteps=2_000_000),  # 1.71 (74% won) vs 0.17, 107 s
    "smax_8m": dict(total_timesteps=3_000_000),  # pools: expert 1.70 vs random 0.18, 1001 s on busy cores
    "smax_10m_vs_11m": dict(total_timesteps=3_000_000),
    "smax_2s3z": dict(total_timesteps=3_000_000),  # 1.98 (98% won) vs 0.20, 195 s
    "smax_3s5z": dict(total_timesteps=3_000_000),  # see benchmarks/results/trainer-coverage-cpu.md
    "smax_6h_vs_8z": dict(total_timesteps=3_000_000),
    "smax_5m_vs_6m": dict(total_timesteps=3_000_000),
    "overcooked_cramped_room": dict(shaped_reward_key="shaped_reward", shaped_reward_anneal=1_500_000,
                                    reward_scale=0.1, total_timesteps=2_000_000),  # 240 (12 soups) vs 1.4, 59 s
    # 280 / 200 / 256 / 179 vs ≈0 (asymmetric, ring, forced, counter circuit; trainer-coverage-cpu.md)
    **{f"overcooked_{layout}": dict(shaped_reward_key="shaped_reward", shaped_reward_anneal=2_000_000,
                                    reward_scale=0.1, total_timesteps=4_000_000)
       for layout in ("asymmetric_advantages", "coordination_ring", "forced_coordination", "counter_circuit")},
    "halfcheetah_2x3": dict(_MABRAX),  # 1827 vs −115, 307 s
    # Unreliable: seed 0 reached 451 vs 281 (240 s); seed 1 got stuck at 249 (below random).
    "walker2d_2x3": dict(_MABRAX, total_timesteps=3_000_000),
    "halfcheetah_6x1": dict(_MABRAX),  # 1692 vs −115, 333 s
    "poly_sign": dict(_POLY),  # 1.0 (optimum) vs 0.03, 3 s
    "poly_twin_peaks": dict(_POLY),  # 0.554 (optimum 0.5625) vs −0.95, 5 s
}


def config_for(env_id: str, **overrides) -> PPOConfig:
    """PPOConfig with DEFAULT_CONFIGS[env_id] (if any) and then `overrides` applied."""
    return PPOConfig(**{**DEFAULT_CONFIGS.get(env_id, {}), **overrides})


# --- networks ------------------------------------------------------------------------------

def actor_config(config: PPOConfig, spec: EnvSpec) -> AgentNetConfig:
    """The agent-network config of the actor (what checkpoints load into)."""
    return AgentNetConfig(
        num_agents=spec.num_agents,
        obs_dim=spec.obs_dim,
        num_actions=spec.num_actions,
        discrete=spec.discrete,
        recurrent=config.recurrent,
        hidden=tuple(config.hidden),
        agent_ids=True,
        learned_std=not spec.discrete,
    )


def _critic_module(config: PPOConfig) -> MLP:
    return MLP(tuple(config.critic_hidden or config.hidden), 1)


def critic_inputs(config: PPOConfig, obs: Array, state: Array) -> Array:
    """Critic input per agent: [global state, one-hot id] (MAPPO) or [obs, one-hot id] (IPPO).

    obs [..., A, O], state [..., S] → [..., A, S + A] or [..., A, O + A].
    """
    num_agents = obs.shape[-2]
    if config.algo == "mappo":
        x = jnp.broadcast_to(state[..., None, :], obs.shape[:-1] + state.shape[-1:])
    else:
        x = obs
    ids = jnp.broadcast_to(jnp.eye(num_agents, dtype=x.dtype), x.shape[:-1] + (num_agents,))
    return jnp.concatenate([x, ids], axis=-1)


def critic_value(config: PPOConfig, params, obs: Array, state: Array) -> Array:
    """V per agent [..., A]."""
    return _critic_module(config).apply(params, critic_inputs(config, obs, state))[..., 0]


def _shrink_head(params, factor: float):
    """Scale the actor's output layer (the last Dense of its head MLP) by `factor`."""
    head = dict(params["params"]["MLP_0"])
    last = max((k for k in head if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
    head[last] = jax.tree.map(lambda x: x * factor, head[last])
    inner = dict(params["params"])
    inner["MLP_0"] = head
    return {**params, "params": inner}


# --- action distributions ------------------------------------------------------------------

def action_mask(spec: EnvSpec) -> np.ndarray:
    """[A, D] float mask of each agent's real action dimensions (continuous; padding = 0)."""
    mask = np.zeros((spec.num_agents, spec.num_actions), np.float32)
    for i, d in enumerate(spec.action_dims):
        mask[i, :d] = 1.0
    return mask


def log_prob_entropy(net: AgentNetConfig, params, outputs: Array, actions: Array, avail, act_mask):
    """log π(a) and entropy per agent [..., A] from the actor's outputs.

    Discrete: categorical over `masked_logits(outputs, avail)` (unavailable actions have
    probability 0 and add nothing to the entropy). Continuous: diagonal Gaussian with mean
    `outputs` (tanh) and the learned std, over the agent's real action dimensions only.
    """
    if net.discrete:
        logp_all = jax.nn.log_softmax(masked_logits(outputs, avail), axis=-1)
        logp = jnp.take_along_axis(logp_all, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]
        probs = jnp.exp(logp_all)
        ent_terms = probs * logp_all
        if avail is not None:
            ent_terms = jnp.where(avail, ent_terms, 0.0)
        return logp, -jnp.sum(ent_terms, axis=-1)
    log_std = params["params"]["log_std"]
    logp = gaussian_log_density(actions, outputs, log_std, mask=act_mask)
    entropy = jnp.sum((log_std + 0.5 * (1.0 + LOG_2PI)) * act_mask, axis=-1)
    entropy = jnp.broadcast_to(entropy, logp.shape)
    return logp, entropy


def sample_actions(key, net: AgentNetConfig, params, outputs: Array, avail):
    """Sample a joint action from the actor's outputs [..., A, nA|D] (no clipping)."""
    if net.discrete:
        return jax.random.categorical(key, masked_logits(outputs, avail), axis=-1).astype(jnp.int32)
    std = jnp.exp(params["params"]["log_std"])
    return outputs + std * jax.random.normal(key, outputs.shape)


def unroll_actor(net: AgentNetConfig, params, obs_seq: Array, starts: Array, carry):
    """Actor outputs over time with resets: obs_seq [T, B, A, O], starts [T, B] (True where
    an episode begins: the GRU state is zeroed before that step), carry [B, A, H] | None."""
    if not net.recurrent:
        return apply_step(net, params, obs_seq, None)[0]

    def step(h, x):
        obs, start = x
        h = jnp.where(start[..., None, None], 0.0, h)
        out, h = apply_step(net, params, obs, h)
        return h, out

    return jax.lax.scan(step, carry, (obs_seq, starts))[1]


# --- state ---------------------------------------------------------------------------------

class TrainState(NamedTuple):
    actor: Any  # actor params (acting on normalised observations when normalize_obs)
    critic: Any
    actor_opt: Any
    critic_opt: Any
    runner: Runner
    update: Array  # int32: updates done so far
    obs_stats: RunningStats | None = None  # normalize_obs only
    state_stats: RunningStats | None = None  # normalize_obs only


def export_actor(config: PPOConfig, env: Env, ts: TrainState):
    """The actor params as a checkpoint: loads into NetworkPolicy(params, actor_config(...))."""
    return fold_normalization(actor_config(config, env.spec), ts.actor, ts.obs_stats)


def make_optimizers(config: PPOConfig):
    steps = config.num_updates * config.update_epochs * config.num_minibatches
    lr = optax.linear_schedule(config.lr, 0.0, steps) if config.anneal_lr else config.lr

    def tx():
        return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr, eps=1e-5))

    return tx(), tx()


def init_state(config: PPOConfig, env: Env, key: Array) -> TrainState:
    """Fresh actor/critic params, optimiser states and N freshly reset environments."""
    spec = env.spec
    net = actor_config(config, spec)
    k_actor, k_critic, k_env = jax.random.split(key, 3)
    actor = _shrink_head(init_params(net, k_actor), 0.01)
    dummy = critic_inputs(config, jnp.zeros((spec.num_agents, spec.obs_dim)), jnp.zeros((spec.state_dim,)))
    critic = _critic_module(config).init(k_critic, dummy)
    actor_tx, critic_tx = make_optimizers(config)
    runner = reset_runner(env, k_env, config.num_envs, initial_carry(net, (config.num_envs,)))
    obs_stats = state_stats = None
    if config.normalize_obs:
        obs_stats, state_stats = RunningStats.create(spec.obs_dim), RunningStats.create(spec.state_dim)
    return TrainState(actor, critic, actor_tx.init(actor), critic_tx.init(critic), runner, jnp.int32(0),
                      obs_stats, state_stats)


def shaped_coef(config: PPOConfig, update: Array) -> Array:
    """Coefficient of the shaped reward at an update (linear anneal over env steps)."""
    if config.shaped_reward_key is None:
        return jnp.float32(0.0)
    if config.shaped_reward_anneal <= 0:
        return jnp.float32(config.shaped_reward_coef)
    steps = update.astype(jnp.float32) * config.steps_per_update
    return config.shaped_reward_coef * jnp.clip(1.0 - steps / config.shaped_reward_anneal, 0.0, 1.0)


# --- rollout -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def make_rollout(config: PPOConfig, env: Env, reward_fn: Callable | None = None):
    """rollout(ts, key, reward_params=None) -> (ts, Transition[L, N]).

    `reward_fn(reward_params, obs[A,O], state[S], actions, next_obs, next_state) -> []`
    (one environment, vmapped here) replaces the environment's team reward for learning.
    """
    spec = env.spec
    net = actor_config(config, spec)
    reset_all, step_all = vmap_env(env)
    n = config.num_envs

    def rollout(ts: TrainState, key: Array, reward_params=None):
        coef = shaped_coef(config, ts.update)

        def env_step(runner: Runner, step_key):
            k_act, k_step, k_reset = jax.random.split(step_key, 3)
            hidden = runner.hidden
            if net.recurrent:
                hidden = jnp.where(runner.start[:, None, None], 0.0, hidden)
            obs_in = normalize(ts.obs_stats, runner.obs)
            outputs, hidden = apply_step(net, ts.actor, obs_in, hidden)
            actions = sample_actions(k_act, net, ts.actor, outputs, runner.avail)
            act_mask = None if net.discrete else jnp.asarray(action_mask(spec))
            log_prob, _ = log_prob_entropy(net, ts.actor, outputs, actions, runner.avail, act_mask)
            value = critic_value(config, ts.critic, obs_in, normalize(ts.state_stats, runner.state))
            out = step_all(jax.random.split(k_step, n), runner.env_state, actions)
            next_value = critic_value(config, ts.critic, normalize(ts.obs_stats, out.obs),
                                      normalize(ts.state_stats, out.state))
            base = out.reward
            if reward_fn is not None:
                base = jax.vmap(reward_fn, in_axes=(None, 0, 0, 0, 0, 0))(
                    reward_params, runner.obs, runner.state, actions, out.obs, out.state)
            reward = base
            if config.shaped_reward_key is not None:
                shaped = out.info[config.shaped_reward_key]
                shaped = shaped.reshape(n, -1).sum(axis=1)
                reward = reward + coef * shaped
            reward = config.reward_scale * reward
            done = out.done
            terminated = out.info["terminated"] & done
            ep_return = runner.ep_return + out.reward
            fresh = reset_all(jax.random.split(k_reset, n))
            new_runner = auto_reset(done, fresh, out, hidden, ep_return)
            transition = Transition(
                obs=runner.obs, state=runner.state, avail=runner.avail, start=runner.start,
                actions=actions, log_prob=log_prob, value=value, next_value=next_value,
                reward=reward.astype(jnp.float32), env_reward=out.reward.astype(jnp.float32),
                terminated=terminated, done=done, episode_return=jnp.where(done, ep_return, 0.0),
            )
            return new_runner, transition

        runner, traj = jax.lax.scan(env_step, ts.runner, jax.random.split(key, config.rollout_length))
        return ts._replace(runner=runner), gather_batch(traj, n)  # see `onpolicy.vmap_env`

    return rollout


# --- learning ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def make_learn(config: PPOConfig, env: Env):
    """learn(ts, traj, key, hidden0=None) -> (ts, metrics): the PPO epochs on one rollout.

    `traj` comes from `make_rollout` (its `reward` may be replaced, e.g. by a learned
    reward; it is used as is, so scale it yourself). `hidden0` [N, A, H] is the GRU state
    the rollout started from (recurrent actors: `ts.runner.hidden` before the rollout).
    Also advances `ts.update` and, with normalize_obs, the observation statistics."""
    spec = env.spec
    net = actor_config(config, spec)
    actor_tx, critic_tx = make_optimizers(config)
    act_mask = None if net.discrete else jnp.asarray(action_mask(spec))
    m = config.num_minibatches

    def loss_fn(params, batch):
        actor, critic = params
        outputs = unroll_actor(net, actor, batch["obs"], batch["start"], batch["hidden0"])
        logp, entropy = log_prob_entropy(net, actor, outputs, batch["actions"], batch["avail"], act_mask)
        adv = batch["adv"]
        if config.normalize_advantages:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        ratio = jnp.exp(logp - batch["log_prob"])
        pg = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * adv))
        value = critic_value(config, critic, batch["obs"], batch["state"])
        v_clip = batch["value"] + jnp.clip(value - batch["value"], -config.clip_eps, config.clip_eps)
        v_loss = 0.5 * jnp.mean(jnp.maximum((value - batch["target"]) ** 2, (v_clip - batch["target"]) ** 2))
        ent = jnp.mean(entropy)
        total = pg + config.vf_coef * v_loss - config.ent_coef * ent
        stats = {
            "actor_loss": pg, "value_loss": v_loss, "entropy": ent,
            "approx_kl": jnp.mean((ratio - 1.0) - jnp.log(ratio)),
            "clip_frac": jnp.mean(jnp.abs(ratio - 1.0) > config.clip_eps),
        }
        return total, stats

    def learn(ts: TrainState, traj: Transition, key: Array, hidden0=None):
        adv, target = gae(traj.reward, traj.value, traj.next_value, traj.terminated, traj.done,
                          config.gamma, config.gae_lambda)
        data = {
            "obs": normalize(ts.obs_stats, traj.obs), "state": normalize(ts.state_stats, traj.state),
            "avail": traj.avail, "start": traj.start,
            "actions": traj.actions, "log_prob": traj.log_prob, "value": traj.value,
            "adv": adv, "target": target,
        }

        def minibatches(k):
            if net.recurrent:  # split environments; keep whole [L] sequences
                perm = jax.random.permutation(k, config.num_envs)
                seq = jax.tree.map(lambda x: jnp.take(x, perm, axis=1), data)
                seq = jax.tree.map(lambda x: jnp.swapaxes(x.reshape(x.shape[0], m, -1, *x.shape[2:]), 0, 1), seq)
                seq["hidden0"] = jnp.take(hidden0, perm, axis=0).reshape(m, -1, *hidden0.shape[1:])
                return seq
            flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), data)
            perm = jax.random.permutation(k, config.steps_per_update)
            flat = jax.tree.map(lambda x: jnp.take(x, perm, axis=0).reshape(m, -1, *x.shape[1:]), flat)
            flat["hidden0"] = None  # MLP actors carry no state
            return flat

        def minibatch_step(carry, batch):
            actor, critic, actor_opt, critic_opt = carry
            grads, stats = jax.grad(loss_fn, has_aux=True)((actor, critic), batch)
            a_up, actor_opt = actor_tx.update(grads[0], actor_opt, actor)
            c_up, critic_opt = critic_tx.update(grads[1], critic_opt, critic)
            return (optax.apply_updates(actor, a_up), optax.apply_updates(critic, c_up), actor_opt, critic_opt), stats

        def epoch(carry, k):
            return jax.lax.scan(minibatch_step, carry, minibatches(k))

        carry = (ts.actor, ts.critic, ts.actor_opt, ts.critic_opt)
        carry, stats = jax.lax.scan(epoch, carry, jax.random.split(key, config.update_epochs))
        actor, critic, actor_opt, critic_opt = carry
        metrics = {**jax.tree.map(jnp.mean, stats), "advantage_var": advantage_variance(adv)}
        ts = ts._replace(actor=actor, critic=critic, actor_opt=actor_opt, critic_opt=critic_opt, update=ts.update + 1)
        if config.normalize_obs:  # the statistics move only between updates
            ts = ts._replace(obs_stats=ts.obs_stats.update(traj.obs), state_stats=ts.state_stats.update(traj.state))
        return ts, metrics

    return learn


@functools.lru_cache(maxsize=None)
def make_update(config: PPOConfig, env: Env, reward_fn: Callable | None = None):
    """The pure update: update(ts, key, reward_params=None) -> (ts, metrics).

    One rollout of config.rollout_length steps in config.num_envs environments, GAE, and
    config.update_epochs × config.num_minibatches PPO steps. `metrics` holds scalars:
    return_sum / episodes (finished training episodes, unscaled team return), the mean
    learning reward, actor_loss, value_loss, entropy, approx_kl, clip_frac, shaped_coef, and
    advantage_var (Σ_k Var[A^k] of the rollout's GAE advantages, `onpolicy.advantage_variance`).
    """
    rollout = make_rollout(config, env, reward_fn)
    learn = make_learn(config, env)

    def update(ts: TrainState, key: Array, reward_params=None):
        k_roll, k_learn = jax.random.split(key)
        hidden0 = ts.runner.hidden
        coef = shaped_coef(config, ts.update)
        ts, traj = rollout(ts, k_roll, reward_params)
        ts, metrics = learn(ts, traj, k_learn, hidden0)
        metrics = {
            **metrics,
            "return_sum": jnp.sum(traj.episode_return),
            "episodes": jnp.sum(traj.done).astype(jnp.float32),
            "reward": jnp.mean(traj.reward),
            "shaped_coef": coef,
        }
        return ts, metrics

    return update


# --- the engine's learner --------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def make_learner(config: PPOConfig, env: Env, reward_fn: Callable | None = None) -> Learner:
    """MAPPO / IPPO as the engine's learner: `make_update` per update, no data drawn.

    With a `reward_fn`, its parameters come in `fit(..., inputs={"reward_params": p})`.
    Snapshot: the exported actor (a NetworkPolicy checkpoint); policy: the current actor,
    acting deterministically. Metrics per update: see `make_update`."""
    net = actor_config(config, env.spec)
    update = make_update(config, env, reward_fn)

    def init(key, arrays) -> TrainState:
        return init_state(config, env, key)

    def learner_update(ts: TrainState, key, arrays, items):
        return update(ts, key, arrays.get("reward_params"))

    def policy(ts: TrainState, arrays) -> NetworkPolicy:
        return NetworkPolicy(export_actor(config, env, ts), net, deterministic=True)

    return Learner(config.algo, init, learner_update, policy, prepare=None if reward_fn is None else reward_params,
                   unit=None, headline="actor_loss", snapshot=lambda ts: export_actor(config, env, ts))


@dataclasses.dataclass(frozen=True)
class PPOResult:
    """What `train` returns (built from the engine's `FitResult`, kept in `fit`).

    checkpoints: actor params with a leading [C] axis ([S, C] when num_seeds > 1);
    checkpoint 0 is the untrained initialisation. checkpoint_steps [C]: env steps at each.
    logs: per log row [L] ([S, L] with seeds; see `onpolicy.history_logs`): "return" (mean
    unscaled team return of the training episodes that finished in the row's interval, NaN
    if none), "return_sum", "episodes", "update", "env_steps", and the interval means of
    "actor_loss", "value_loss", "entropy", "approx_kl", "clip_frac", "reward", "shaped_coef",
    "advantage_var".
    """

    net: AgentNetConfig
    config: PPOConfig
    checkpoints: Any
    checkpoint_steps: np.ndarray
    logs: dict[str, np.ndarray]
    num_seeds: int = 1
    wall_time: float = 0.0
    final_state: Any = dataclasses.field(default=None, repr=False)
    fit: FitResult | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_fit(cls, result: FitResult, config: PPOConfig, env: Env) -> "PPOResult":
        return cls(net=actor_config(config, env.spec), config=config,
                   checkpoints=seed_view(result.snapshots, result.seeds),
                   checkpoint_steps=np.asarray(result.snapshot_updates, np.int64) * config.steps_per_update,
                   logs=history_logs(result.history, config.steps_per_update, result.seeds),
                   num_seeds=result.seeds, wall_time=result.seconds, final_state=result.state, fit=result)

    def params(self, index: int = -1, seed: int | None = None):
        return checkpoint_params(self.checkpoints, self.num_seeds, index, seed)

    def policy(self, index: int = -1, seed: int | None = None, deterministic: bool = True) -> NetworkPolicy:
        """Checkpoint `index` (default: the last) as a NetworkPolicy."""
        return NetworkPolicy(self.params(index, seed), self.net, deterministic=deterministic)


def train(
    config: PPOConfig,
    env: Env,
    key: Array,
    progress: bool = True,
    *,
    num_seeds: int = 1,
    reward_fn: Callable | None = None,
    reward_params=None,
    label: str | None = None,
    run: RunConfig | None = None,
) -> PPOResult:
    """Train a MAPPO / IPPO actor on `env` through `teamsift.engine.fit`; returns
    `config.num_checkpoints` checkpoints evenly spaced over training.

    `run` (optional) gives the engine's schedule (seeds, log_every, run_dir,
    checkpoint_every, resume, evaluations); its updates must be `config.num_updates`.
    Without it: `num_seeds` seeds, about 50 log rows, a progress bar when `progress`."""
    run = run_config(config.num_updates, config.updates_per_checkpoint, run, seeds=num_seeds, progress=progress,
                     label=label or f"{config.algo.upper()} {env.spec.env_id}", what="PPOConfig")
    inputs = None if reward_fn is None else {"reward_params": reward_params}
    result = fit(make_learner(config, env, reward_fn), None, key, run, inputs=inputs, env=env,
                 record={"hyperparameters": config, "env": env.spec.env_id})
    return PPOResult.from_fit(result, config, env)
