"""What the online (on-policy) trainers share: MAPPO / IPPO (`teamsift.collect.ppo`), MAT
(`teamsift.collect.mat`) and the adversarial-imitation generators built on them.

  * the environments between updates (`Runner`), their vmapped reset / step, auto-reset;
  * one rollout, time-major (`Transition`), generalised advantage estimation (`gae`) and the
    joint advantage variance Σ_k Var[A^k] the trainers log (`advantage_variance`);
  * a run through `teamsift.engine.fit`: the schedule an online config implies
    (`run_config`: updates and checkpoint interval from total_timesteps) and the per-log-row
    logs of its result (`history_logs`: "return" = return_sum / episodes, "env_steps").
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from teamsift.devices import constrain_batch
from teamsift.engine import RunConfig
from teamsift.envs.base import Env

Array = jax.Array


# --- environments --------------------------------------------------------------------------

class Runner(NamedTuple):
    """The environments between updates (leading axis [N])."""

    env_state: Any
    obs: Array  # [N, A, O]
    state: Array  # [N, S]
    avail: Any  # [N, A, nA] | None
    start: Array  # [N] bool: `obs` is the first observation of an episode
    hidden: Any  # [N, A, H] | None (GRU state before the start-reset)
    ep_return: Array  # [N] running (unscaled) team return of the current episode


class Transition(NamedTuple):
    """One rollout, time-major [L, N, ...]."""

    obs: Array  # [L, N, A, O]
    state: Array  # [L, N, S]
    avail: Any  # [L, N, A, nA] | None
    start: Array  # [L, N]
    actions: Array  # [L, N, A] | [L, N, A, D] (unclipped Gaussian samples)
    log_prob: Array  # [L, N, A]
    value: Array  # [L, N, A]
    next_value: Array  # [L, N, A]: V of the step's resulting observation (pre-reset)
    reward: Array  # [L, N] (MAPPO's team reward) | [L, N, A] (MAT's per-agent reward): scaled learning reward
    env_reward: Array  # [L, N] the environment's team reward (unscaled)
    terminated: Array  # [L, N]
    done: Array  # [L, N]
    episode_return: Array  # [L, N] unscaled return of the episode ending here (0 elsewhere)


def vmap_env(env: Env):
    """(reset_all, step_all): the environment's reset and step vmapped over a leading [N] axis.

    With several devices dividing N, the N environments are split over them
    (`teamsift.devices.constrain_batch`): the runner between updates, the environment steps
    and what the actor and critic compute per environment during a rollout stay on their
    device. The trainers' rollouts then gather their `Transition` batch whole on every
    device (`teamsift.devices.gather_batch`, one all-gather per update), so the PPO epochs,
    which shuffle transitions across environments, run on the whole batch on every device."""
    def reset_all(keys):
        return constrain_batch(jax.vmap(env.reset)(constrain_batch(keys, keys.shape[0])), keys.shape[0])

    def step_all(keys, env_state, actions):
        n = keys.shape[0]
        keys, env_state, actions = constrain_batch((keys, env_state, actions), n)
        return constrain_batch(jax.vmap(env.step)(keys, env_state, actions), n)

    return reset_all, step_all


def where_env(cond: Array, a, b):
    """Per environment [N]: pytree `a` where cond, else `b` (cond broadcast over trailing axes)."""
    def pick(x, y):
        c = cond.reshape(cond.shape + (1,) * (x.ndim - cond.ndim))
        return jnp.where(c, x, y)

    return jax.tree.map(pick, a, b)


def reset_runner(env: Env, key: Array, num_envs: int, hidden=None) -> Runner:
    """N freshly reset environments (every one at an episode start)."""
    reset_all, _ = vmap_env(env)
    first = reset_all(jax.random.split(key, num_envs))
    return Runner(env_state=first.env_state, obs=first.obs, state=first.state, avail=first.avail,
                  start=jnp.ones((num_envs,), bool), hidden=hidden, ep_return=jnp.zeros((num_envs,), jnp.float32))


def auto_reset(done: Array, fresh, out, hidden, ep_return: Array) -> Runner:
    """The runner after a step: environments that are `done` replaced by `fresh` resets,
    the others continuing from `out` (the step's output); `ep_return` includes the step."""
    return Runner(
        env_state=where_env(done, fresh.env_state, out.env_state),
        obs=where_env(done, fresh.obs, out.obs),
        state=where_env(done, fresh.state, out.state),
        avail=where_env(done, fresh.avail, out.avail),
        start=done,
        hidden=hidden,
        ep_return=jnp.where(done, 0.0, ep_return),
    )


# --- GAE -----------------------------------------------------------------------------------

def _expand(x: Array, like: Array) -> Array:
    return x.reshape(x.shape + (1,) * (like.ndim - x.ndim)).astype(like.dtype)


def gae(reward, value, next_value, terminated, done, gamma: float, lam: float):
    """Generalised advantage estimates and value targets, time-major.

    reward [T, ...] (team; broadcast over trailing agent axes), value [T, ..., A]: V of
    the observation the step started from, next_value [T, ..., A]: V of the observation
    the step produced (before any auto-reset), terminated/done [T, ...] bool.
    On termination nothing is bootstrapped; on truncation (done, not terminated) the
    final observation's value is; `done` cuts the λ-trace either way.
    Returns (advantages, targets) shaped like `value`.
    """
    reward, terminated, done = (_expand(x, value) for x in (reward, terminated, done))
    delta = reward + gamma * (1.0 - terminated) * next_value - value

    def body(next_adv, x):
        d, dn = x
        adv = d + gamma * lam * (1.0 - dn) * next_adv
        return adv, adv

    _, adv = jax.lax.scan(body, jnp.zeros_like(delta[0]), (delta, done), reverse=True)
    return adv, adv + value


def advantage_variance(adv: Array) -> Array:
    """The joint advantage variance Σ_k Var[A^k] of MILD²'s Theorem 1: for each agent k
    (the last axis of `adv` [T, ..., A], as `gae` returns it) the variance of its advantage
    estimates over the rollout's steps and environments, summed over the agents. Taken
    before any per-minibatch normalisation, so it is in the learning reward's units."""
    return jnp.sum(jnp.var(adv.reshape(-1, adv.shape[-1]), axis=0))


# --- runs through the engine ---------------------------------------------------------------

def default_log_every(updates: int) -> int:
    """About 50 log rows per run (what the trainers' chunking used to give the progress bar)."""
    return max(1, updates // 50)


def run_config(updates: int, updates_per_checkpoint: int, run: RunConfig | None = None, *, seeds: int = 1,
               progress: bool = True, label: str | None = None, what: str = "the config") -> RunConfig:
    """The schedule of an online run: `updates` (the config's num_updates, from its
    total_timesteps, which also shapes its learning-rate schedule) with a checkpoint
    (the learner's snapshot) every `updates_per_checkpoint` updates and at update 0.

    Without `run`: log every `default_log_every(updates)` updates, `seeds` seeds. With a
    `run` (for run_dir, checkpoint_every, resume, evaluations ...): its updates must be
    `updates`; its snapshot_every is set to the checkpoint interval."""
    if run is None:
        return RunConfig(updates=updates, seeds=seeds, log_every=default_log_every(updates),
                         snapshot_every=updates_per_checkpoint, progress=progress, label=label)
    if run.updates != updates:
        raise ValueError(f"RunConfig.updates = {run.updates}: {what} trains for exactly {updates} updates "
                         f"(total_timesteps rounded up to whole checkpoint intervals, which also shape the "
                         f"learning-rate schedule); change total_timesteps, not the run's updates")
    if run.snapshot_every not in (0, updates_per_checkpoint):
        raise ValueError(f"RunConfig.snapshot_every = {run.snapshot_every}: {what} keeps a checkpoint every "
                         f"{updates_per_checkpoint} updates (num_checkpoints); leave snapshot_every at 0")
    if seeds not in (1, run.seeds):
        raise ValueError(f"num_seeds = {seeds} disagrees with RunConfig.seeds = {run.seeds}; give the seeds in "
                         f"one place")
    return dataclasses.replace(run, snapshot_every=updates_per_checkpoint, label=run.label or label)


def seed_view(tree, num_seeds: int):
    """A pytree with a leading seed axis as is, or without it when there is one seed."""
    return tree if num_seeds > 1 else jax.tree.map(lambda x: x[0], tree)


def history_logs(history: dict, steps_per_update: int, num_seeds: int) -> dict[str, np.ndarray]:
    """An online run's logs, one entry per log row ([S, L], or [L] with one seed; vectors
    [S, L, ...]): every logged metric (its mean over the row's interval), "update" (updates
    done at the row), "env_steps" (env steps done at the row) and "return": the mean
    unscaled team return of the training episodes that ended in the interval
    (Σ return_sum / Σ episodes; NaN if none ended)."""
    logs = {name: np.asarray(value) for name, value in history.items() if name not in ("update", "elapsed")}
    updates = np.asarray(history["update"], np.int64)
    if "return_sum" in logs:
        with np.errstate(invalid="ignore", divide="ignore"):
            logs["return"] = np.where(logs["episodes"] > 0, logs["return_sum"] / logs["episodes"], np.nan)
    shape = (num_seeds, updates.shape[0])
    logs["update"] = np.array(np.broadcast_to(updates, shape))
    logs["env_steps"] = np.array(np.broadcast_to(updates * steps_per_update, shape))
    return logs if num_seeds > 1 else {name: value[0] for name, value in logs.items()}


def checkpoint_params(checkpoints, num_seeds: int, index: int = -1, seed: int | None = None):
    """Checkpoint `index` of stacked params ([C, ...], or [S, C, ...] when num_seeds > 1; seed 0
    unless `seed` is given)."""
    if num_seeds > 1:
        return jax.tree.map(lambda x: x[0 if seed is None else seed, index], checkpoints)
    return jax.tree.map(lambda x: x[index], checkpoints)


def reward_params(dataset, inputs: dict) -> dict:
    """The `prepare` of an online learner with a `reward_fn`: its parameters come in
    `fit(..., inputs={"reward_params": p})` (arrays do not belong in the learner's cache key)."""
    if "reward_params" not in inputs:
        raise ValueError("an online learner with a reward_fn reads its parameters from fit(..., "
                         "inputs={'reward_params': ...})")
    return {"reward_params": inputs["reward_params"]}
