"""Online PPO for the Multi-Agent Transformer (Wen et al. 2022): MILD²'s generator.

    for update u = 1 … U:                  (`teamsift.engine.fit`: lax loops inside jit, seeds vmapped)
        roll the N vmapped environments forward L steps, acting autoregressively
            a^k ~ π_θ(· | o^{1:A}, a^{1:k−1})    k = 1 … A   (`teamsift.nets.mat.mat_act`)
            a finished environment is replaced by a fresh `env.reset` (auto-reset)
        r^k_t = reward_scale · reward_fn(…)[k]   (per agent; a scalar / the environment's
                                                  team reward is broadcast to every agent)
        V^k   = V_θ(ô^k)                        the encoder's value head, one per agent
        Â^k_t = GAE(γ, λ) per agent; bootstraps from the pre-reset observation on
                truncation, not on termination (`teamsift.collect.ppo.gae`)
        for epoch 1 … update_epochs, for each of num_minibatches minibatches of joint steps:
            one parallel decoder pass on the shifted joint actions (`mat_log_prob`):
            L = −E[min(ρ^k Â^k, clip(ρ^k, 1 ± ε) Â^k)]        ρ^k = π_θ(a^k|…)/π_old(a^k|…)
                + vf_coef · E[max(H(V^k − R^k), H(clip(V^k, V^k_old ± ε) − R^k))]
                − ent_coef · E[entropy]                   H: Huber loss, δ = huber_delta
            θ ← Adam (one optimiser for encoder and decoder, grad-norm clipped)

Defaults (MILD² / MAT, methods.md §3): lr 5e-4, 15 PPO epochs, clip 0.2, entropy 0.01,
clipped Huber value loss, γ 0.99, GAE λ 0.95, n_block 1, n_embd 64, n_head 1. Our
choices where those are silent, from MAT's released SMAC settings: one minibatch,
value coefficient 1, Huber δ 10, grad-norm 10, no learning-rate decay; no value
normalisation (MAT uses ValueNorm; use `reward_scale` to keep returns O(1..100)).

Reuse inside adversarial imitation (MILD²): `make_rollout` (collect L steps; its
`Transition` batch is what the discriminator trains on), `make_learn` (PPO epochs on a
batch whose `reward` may have been replaced) and `make_update` (both, with an optional
`reward_fn(reward_params, obs[A,O], state[S], actions, next_obs, next_state) -> [A] | []`
per environment step, e.g. the discriminator's individual rewards r^k = −log σ(d^k)) are
pure functions of (MATTrainState, key[, reward_params]). Checkpoints load into
`MATPolicy`, which acts in `teamsift.evaluate` like any other joint policy and saves with
`teamsift.nets.save_policy` (kind "mat").

Running it: `make_learner(config, env)` is the engine's `Learner` (no data; snapshot: the
MAT params, kept at update 0 and every `updates_per_checkpoint` updates);
`train(config, env, key, run=...)` runs it through `teamsift.engine.fit` for exactly
`config.num_updates` updates and wraps the result in a `MATResult`.

Shared with MAPPO through `teamsift.collect.onpolicy`: `gae`, `Runner`, `Transition` (its
`reward` is [L, N, A] here), the environment vmapping and auto-reset, the run schedule
and the per-log-row logs.
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

from teamsift.checks import require_non_negative, require_positive, require_unit_interval
from teamsift.collect.onpolicy import (
    Runner, Transition, advantage_variance, auto_reset, checkpoint_params, gae, history_logs, reset_runner,
    reward_params, run_config, seed_view, vmap_env,
)
from teamsift.devices import gather_batch
from teamsift.engine import FitResult, Learner, RunConfig, fit
from teamsift.envs.base import Env
from teamsift.nets.mat import MATNetConfig, MATPolicy, init_mat_params, mat_act, mat_log_prob, mat_values

Array = jax.Array

__all__ = ["MATConfig", "MATTrainState", "MATResult", "MATPolicy", "net_config", "init_state", "make_rollout",
           "make_learn", "make_update", "make_learner", "train", "mat_policy"]


@dataclasses.dataclass(frozen=True)
class MATConfig:
    """Hyperparameters of MAT's PPO. Every field is static (part of the jit cache key)."""

    num_envs: int = 32  # environments stepped in parallel (vmapped)
    rollout_length: int = 128  # steps per environment per update
    total_timesteps: int = 1_000_000  # env steps summed over envs (rounded up to whole updates)
    num_checkpoints: int = 11  # evenly spaced; checkpoint 0 = the untrained initial params
    lr: float = 5e-4
    anneal_lr: bool = False  # linear decay of lr to 0 over the whole run
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2  # policy ratio clip, also the value clip
    ent_coef: float = 0.01
    vf_coef: float = 1.0
    huber_delta: float = 10.0
    max_grad_norm: float = 10.0
    update_epochs: int = 15
    num_minibatches: int = 1
    n_block: int = 1
    n_embd: int = 64
    n_head: int = 1
    agent_ids: bool = True  # append one-hot agent ids to the observations
    reward_scale: float = 1.0  # multiplies the learning reward
    normalize_advantages: bool = True  # per minibatch, over all agents

    def __post_init__(self):
        if self.num_checkpoints < 2:
            raise ValueError("MATConfig.num_checkpoints: need >= 2 (checkpoint 0 is the initial params)")
        if min(self.num_envs, self.rollout_length, self.update_epochs, self.num_minibatches) < 1:
            raise ValueError("MATConfig: num_envs, rollout_length, update_epochs, num_minibatches must be >= 1")
        if self.steps_per_update % self.num_minibatches:
            raise ValueError(f"MATConfig: num_envs * rollout_length = {self.steps_per_update} is not divisible "
                             f"by num_minibatches = {self.num_minibatches}")
        if self.n_embd % self.n_head:
            raise ValueError(f"MATConfig: n_embd = {self.n_embd} is not divisible by n_head = {self.n_head}")
        require_positive(self, ("total_timesteps", "lr", "max_grad_norm", "huber_delta", "reward_scale", "n_block"))
        require_non_negative(self, ("clip_eps", "ent_coef", "vf_coef"))
        require_unit_interval(self, ("gamma", "gae_lambda"))

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.rollout_length

    @property
    def updates_per_checkpoint(self) -> int:
        return max(1, math.ceil(self.total_timesteps / (self.steps_per_update * (self.num_checkpoints - 1))))

    @property
    def num_updates(self) -> int:
        """Total updates: total_timesteps rounded up so every checkpoint interval is equal."""
        return self.updates_per_checkpoint * (self.num_checkpoints - 1)


def net_config(config: MATConfig, env: Env) -> MATNetConfig:
    """The network config of the generator (what checkpoints load into)."""
    return MATNetConfig.for_spec(env.spec, n_block=config.n_block, n_embd=config.n_embd, n_head=config.n_head,
                                 agent_ids=config.agent_ids)


class MATTrainState(NamedTuple):
    params: Any
    opt_state: Any
    runner: Runner
    update: Array  # int32: updates done so far


def make_optimizer(config: MATConfig):
    steps = config.num_updates * config.update_epochs * config.num_minibatches
    lr = optax.linear_schedule(config.lr, 0.0, steps) if config.anneal_lr else config.lr
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr, eps=1e-5))


def init_state(config: MATConfig, env: Env, key: Array) -> MATTrainState:
    """Fresh MAT params, optimiser state and N freshly reset environments."""
    k_net, k_env = jax.random.split(key)
    params = init_mat_params(net_config(config, env), k_net)
    runner = reset_runner(env, k_env, config.num_envs)
    return MATTrainState(params, make_optimizer(config).init(params), runner, jnp.int32(0))


def per_agent(reward: Array, num_envs: int, num_agents: int) -> Array:
    """Rewards [N] (team) or [N, A] (per agent) → [N, A]."""
    return jnp.broadcast_to(reward.reshape(num_envs, -1), (num_envs, num_agents)).astype(jnp.float32)


# --- rollout -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def make_rollout(config: MATConfig, env: Env, reward_fn: Callable | None = None):
    """rollout(ts, key, reward_params=None) -> (ts, Transition[L, N]) with per-agent
    `reward` [L, N, A] (scaled; from `reward_fn` when given, else the team reward) and
    the environment's unscaled team reward in `env_reward` [L, N].

    `reward_fn(reward_params, obs[A,O], state[S], actions, next_obs, next_state) -> [A] | []`
    is written for one environment and vmapped here."""
    net = net_config(config, env)
    reset_all, step_all = vmap_env(env)
    n, num_agents = config.num_envs, env.spec.num_agents

    def learning_reward(reward_params, runner: Runner, actions, out):
        if reward_fn is None:
            return per_agent(out.reward, n, num_agents)
        r = jax.vmap(reward_fn, in_axes=(None, 0, 0, 0, 0, 0))(
            reward_params, runner.obs, runner.state, actions, out.obs, out.state)
        return per_agent(r, n, num_agents)

    def rollout(ts: MATTrainState, key: Array, reward_params=None):
        def env_step(runner: Runner, step_key):
            k_act, k_step, k_reset = jax.random.split(step_key, 3)
            actions, log_prob, value = mat_act(net, ts.params, runner.obs, runner.avail, k_act)
            out = step_all(jax.random.split(k_step, n), runner.env_state, actions)
            next_value = mat_values(net, ts.params, out.obs)
            reward = config.reward_scale * learning_reward(reward_params, runner, actions, out)
            done = out.done
            ep_return = runner.ep_return + out.reward
            fresh = reset_all(jax.random.split(k_reset, n))
            new_runner = auto_reset(done, fresh, out, None, ep_return)
            transition = Transition(
                obs=runner.obs, state=runner.state, avail=runner.avail, start=runner.start,
                actions=actions, log_prob=log_prob, value=value, next_value=next_value,
                reward=reward, env_reward=out.reward.astype(jnp.float32),
                terminated=out.info["terminated"] & done, done=done,
                episode_return=jnp.where(done, ep_return, 0.0),
            )
            return new_runner, transition

        runner, traj = jax.lax.scan(env_step, ts.runner, jax.random.split(key, config.rollout_length))
        return ts._replace(runner=runner), gather_batch(traj, n)  # see `onpolicy.vmap_env`

    return rollout


# --- learning ------------------------------------------------------------------------------

def _huber(x: Array, delta: float) -> Array:
    return optax.huber_loss(x, delta=delta)


@functools.lru_cache(maxsize=None)
def make_learn(config: MATConfig, env: Env):
    """learn(ts, traj, key) -> (ts, metrics): the PPO epochs on one rollout (`traj` from
    `make_rollout`; its per-agent `reward` [L, N, A] is used as is). Advances `ts.update`."""
    net = net_config(config, env)
    tx = make_optimizer(config)
    m, eps = config.num_minibatches, config.clip_eps

    def loss_fn(params, batch):
        ev = mat_log_prob(net, params, batch["obs"], batch["avail"], batch["actions"])
        adv = batch["adv"]
        if config.normalize_advantages:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        ratio = jnp.exp(ev.log_prob - batch["log_prob"])
        pg = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - eps, 1 + eps) * adv))
        v_clip = batch["value"] + jnp.clip(ev.value - batch["value"], -eps, eps)
        v_loss = jnp.mean(jnp.maximum(_huber(ev.value - batch["target"], config.huber_delta),
                                      _huber(v_clip - batch["target"], config.huber_delta)))
        ent = jnp.mean(ev.entropy)
        stats = {"actor_loss": pg, "value_loss": v_loss, "entropy": ent,
                 "approx_kl": jnp.mean((ratio - 1.0) - jnp.log(ratio)),
                 "clip_frac": jnp.mean(jnp.abs(ratio - 1.0) > eps)}
        return pg + config.vf_coef * v_loss - config.ent_coef * ent, stats

    def minibatches(data, key):
        flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), data)
        perm = jax.random.permutation(key, config.steps_per_update)
        return jax.tree.map(lambda x: jnp.take(x, perm, axis=0).reshape(m, -1, *x.shape[1:]), flat)

    def minibatch_step(carry, batch):
        params, opt_state = carry
        grads, stats = jax.grad(loss_fn, has_aux=True)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), stats

    def learn(ts: MATTrainState, traj: Transition, key: Array):
        adv, target = gae(traj.reward, traj.value, traj.next_value, traj.terminated, traj.done,
                          config.gamma, config.gae_lambda)
        data = {"obs": traj.obs, "avail": traj.avail, "actions": traj.actions, "log_prob": traj.log_prob,
                "value": traj.value, "adv": adv, "target": target}

        def epoch(carry, k):
            return jax.lax.scan(minibatch_step, carry, minibatches(data, k))

        (params, opt_state), stats = jax.lax.scan(epoch, (ts.params, ts.opt_state),
                                                  jax.random.split(key, config.update_epochs))
        ts = ts._replace(params=params, opt_state=opt_state, update=ts.update + 1)
        return ts, {**jax.tree.map(jnp.mean, stats), "advantage_var": advantage_variance(adv)}

    return learn


@functools.lru_cache(maxsize=None)
def make_update(config: MATConfig, env: Env, reward_fn: Callable | None = None):
    """The pure update: update(ts, key, reward_params=None) -> (ts, metrics).

    One rollout, per-agent GAE and update_epochs × num_minibatches PPO steps. `metrics`
    holds scalars: return_sum / episodes (finished training episodes, unscaled team
    return), the mean learning reward, actor_loss, value_loss, entropy, approx_kl, clip_frac,
    advantage_var (Σ_k Var[A^k] of the rollout's GAE advantages, `onpolicy.advantage_variance`).
    """
    rollout = make_rollout(config, env, reward_fn)
    learn = make_learn(config, env)

    def update(ts: MATTrainState, key: Array, reward_params=None):
        k_roll, k_learn = jax.random.split(key)
        ts, traj = rollout(ts, k_roll, reward_params)
        ts, metrics = learn(ts, traj, k_learn)
        return ts, {**metrics,
                    "return_sum": jnp.sum(traj.episode_return),
                    "episodes": jnp.sum(traj.done).astype(jnp.float32),
                    "reward": jnp.mean(traj.reward)}

    return update


# --- the engine's learner --------------------------------------------------------------------

def mat_policy(net: MATNetConfig, params, deterministic: bool = False) -> MATPolicy:
    """A MAT checkpoint as a joint policy for `teamsift.evaluate` (acts autoregressively)."""
    return MATPolicy(params, net, deterministic=deterministic)


@functools.lru_cache(maxsize=None)
def make_learner(config: MATConfig, env: Env, reward_fn: Callable | None = None) -> Learner:
    """MAT's PPO as the engine's learner: `make_update` per update, no data drawn.

    With a `reward_fn`, its parameters come in `fit(..., inputs={"reward_params": p})`.
    Snapshot: the MAT params; policy: a stochastic `MATPolicy` (what PPO trained)."""
    net = net_config(config, env)
    update = make_update(config, env, reward_fn)

    def init(key, arrays) -> MATTrainState:
        return init_state(config, env, key)

    def learner_update(ts: MATTrainState, key, arrays, items):
        return update(ts, key, arrays.get("reward_params"))

    def policy(ts: MATTrainState, arrays) -> MATPolicy:
        return mat_policy(net, ts.params, deterministic=False)

    return Learner("mat", init, learner_update, policy, prepare=None if reward_fn is None else reward_params,
                   unit=None, headline="actor_loss", snapshot=lambda ts: ts.params)


@dataclasses.dataclass(frozen=True)
class MATResult:
    """What `train` returns (built from the engine's `FitResult`, kept in `fit`).

    checkpoints: MAT params with a leading [C] axis ([S, C] when num_seeds > 1);
    checkpoint 0 is the untrained initialisation. checkpoint_steps [C]: env steps at each.
    logs: per log row [L] ([S, L] with seeds; see `onpolicy.history_logs`): "return" (mean
    unscaled team return of the training episodes that finished in the row's interval, NaN
    if none), "return_sum", "episodes", "update", "env_steps", and the interval means of
    "actor_loss", "value_loss", "entropy", "approx_kl", "clip_frac", "reward", "advantage_var".
    """

    net: MATNetConfig
    config: MATConfig
    checkpoints: Any
    checkpoint_steps: np.ndarray
    logs: dict[str, np.ndarray]
    num_seeds: int = 1
    wall_time: float = 0.0
    final_state: Any = dataclasses.field(default=None, repr=False)
    fit: FitResult | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_fit(cls, result: FitResult, config: MATConfig, env: Env) -> "MATResult":
        return cls(net=net_config(config, env), config=config, checkpoints=seed_view(result.snapshots, result.seeds),
                   checkpoint_steps=np.asarray(result.snapshot_updates, np.int64) * config.steps_per_update,
                   logs=history_logs(result.history, config.steps_per_update, result.seeds),
                   num_seeds=result.seeds, wall_time=result.seconds, final_state=result.state, fit=result)

    def params(self, index: int = -1, seed: int | None = None):
        return checkpoint_params(self.checkpoints, self.num_seeds, index, seed)

    def policy(self, index: int = -1, seed: int | None = None, deterministic: bool = False) -> MATPolicy:
        """Checkpoint `index` (default: the last) as a MATPolicy (stochastic by default)."""
        return mat_policy(self.net, self.params(index, seed), deterministic)


def train(
    config: MATConfig,
    env: Env,
    key: Array,
    progress: bool = True,
    *,
    num_seeds: int = 1,
    reward_fn: Callable | None = None,
    reward_params=None,
    label: str | None = None,
    run: RunConfig | None = None,
) -> MATResult:
    """Train MAT on `env` (optionally on a learned per-agent reward) through
    `teamsift.engine.fit`; `config.num_checkpoints` checkpoints evenly spaced over training.

    `run` (optional) gives the engine's schedule (seeds, log_every, run_dir,
    checkpoint_every, resume, evaluations); its updates must be `config.num_updates`.
    Without it: `num_seeds` seeds, about 50 log rows, a progress bar when `progress`."""
    run = run_config(config.num_updates, config.updates_per_checkpoint, run, seeds=num_seeds, progress=progress,
                     label=label or f"MAT {env.spec.env_id}", what="MATConfig")
    inputs = None if reward_fn is None else {"reward_params": reward_params}
    result = fit(make_learner(config, env, reward_fn), None, key, run, inputs=inputs, env=env,
                 record={"hyperparameters": config, "env": env.spec.env_id})
    return MATResult.from_fit(result, config, env)
