"""Pieces the discrete offline multi-agent learners (ICQ, MABCQ, MACQL) share.

* whole padded episodes on the device, extended by the episode's final observation
  (`episode_data`, `episode_batch` on the episodes the run's sampler drew):
  obs_ext[:, t] is o_t for t < T and the final observation after the last step, so one
  unroll of a recurrent network gives the values of every step and of every next step;
* per-agent value networks unrolled over episodes, with unavailable actions masked;
* λ-returns over padded episodes — one backward recursion covers TD(λ), Tree Backup
  and the one-step target:

      G_t = r_t + γ·κ_t·[ V_{t+1} + c_{t+1}·h_{t+1}·(G_{t+1} − Q_{t+1}) ]          (R)

  κ_t = 1 where step t may bootstrap (a step of the episode that did not terminate),
  h_{t+1} = 1 where step t+1 is a step of the episode (0 after its last step, where
  V_{t+1} is the value of the final observation). TD(λ): V = Q = the value of the
  data's action, c = λ, so G_t = r_t + γ[(1 − λ)Q_{t+1} + λ G_{t+1}]. Tree Backup with
  target policy π: V_{t+1} = Σ_a π(a)Q(a), Q_{t+1} = Q(a_{t+1}), c = λ·π(a_{t+1}).
  One step: c = 0.
* target networks (hard copy every d updates, or Polyak averaging);
* RMSProp with PyMARL's settings and global-norm clipping;
* the batch softmax of ICQ's implicit constraint (`batch_softmax_weights`, SIT's too),
  the weighted means that honour per-decision weights (`batch["weight"]`), the reward
  scale PyMARL gives SMAC, and the divergence check of a logged loss.

(Input checks live in `teamsift.checks`, `masked_mean` in `teamsift.nets.ops`; the
training loop is `teamsift.engine.fit`.)

An episode cut by the time limit (truncated, not terminated) bootstraps from its final
observation, as PyMARL (the code base of ICQ and SIT) does: MPE's observations and
states carry no clock, so values must not depend on the time left.
`bootstrap_truncated=False` ends every episode at its last step instead (ours).
"""

from __future__ import annotations

import dataclasses

import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from teamsift.checks import require_choice
from teamsift.data import gather_episodes, to_device
from teamsift.envs.registry import best_return
from teamsift.nets import AgentNetConfig, apply_sequence
from teamsift.nets.agent import NEG_INF
from teamsift.nets.mixer import MIXER_KINDS, MixerConfig
from teamsift.nets.optim import OPTIMIZERS, clipped

#: Step fields the offline learners read (no next_* views: episodes are whole).
EPISODE_FIELDS = ("obs", "state", "avail", "actions", "reward", "terminated", "truncated",
                  "final_obs", "final_state", "final_avail")


# --- data ---------------------------------------------------------------------------------

def episode_data(dataset) -> dict:
    """The step fields of `EPISODE_FIELDS` and the episode index arrays, on the device."""
    return to_device(dataset, EPISODE_FIELDS)


def episode_batch(arrays: dict, episodes: jax.Array, max_length: int, bootstrap_truncated: bool = True) -> dict:
    """Whole episodes [B] (the ones `draw` returned) from t = 0, padded to `max_length` T.

    Returns the fields of `teamsift.data.gather_episodes` ([B, T, ...], mask [B, T];
    weight [B, T, A] when the run weighs decisions) plus
        obs_ext, state_ext, avail_ext  [B, T + 1, ...]: step t, and at t + 1 after the
            last step the episode's final observation (o_t, …, o_T);
        actions_next [B, T]: a_{t+1} (0 after the last step);
        continues [B, T]: κ_t of eq. (R) — 1 on steps that bootstrap from t + 1;
        has_next [B, T]: h_{t+1} of eq. (R) — 1 where step t + 1 is in the episode.
    """
    batch = gather_episodes(arrays, episodes, max_length)
    batch["actions"] = batch["actions"].astype(jnp.int32)
    for name in ("obs", "state", "avail"):
        batch[name + "_ext"] = jnp.concatenate([batch[name][:, :1], batch["next_" + name]], axis=1)
    stop = batch["terminated"] if bootstrap_truncated else batch["done"]
    batch["continues"] = batch["mask"] & ~stop
    batch["has_next"] = next_step(batch["mask"])
    batch["actions_next"] = next_step(batch["actions"])
    return batch


# --- agent networks -----------------------------------------------------------------------

def agent_net_config(spec, hidden: tuple[int, ...], recurrent: bool, obs_dim: int | None = None) -> AgentNetConfig:
    """A parameter-shared discrete agent network with one output per action."""
    return AgentNetConfig(num_agents=spec.num_agents, obs_dim=spec.obs_dim if obs_dim is None else obs_dim,
                          num_actions=spec.num_actions, discrete=True, recurrent=recurrent, hidden=tuple(hidden))


def decomposition_mixer(config, spec) -> MixerConfig:
    """The value-decomposition mixer of MABCQ and MACQL ("follows Yang et al. (2021)", SIT
    appendix B): Q(τ, a) = Σ_i k_i(s) Q_i(τ_i, a_i) + b(s), with k(s) normalised to sum to 1
    over the agents as in ICQ's reference mixer (`config.normalise_mixer`), from
    `config.mixer` and `config.mixer_embed`. Unnormalised, k(s) can grow without bound and
    with it the max-target's overestimation: the critic diverges (docs/benchmarks.md)."""
    return MixerConfig(num_agents=spec.num_agents, state_dim=spec.state_dim, embed_dim=config.mixer_embed,
                       kind=config.mixer, normalise_weights=config.normalise_mixer)


def require_decomposition_mixer(config) -> None:
    """`config.mixer` is a mixer kind, and `normalise_mixer` is set only for the linear one."""
    name = type(config).__name__
    if config.mixer not in MIXER_KINDS:
        raise ValueError(f"{name}.mixer: expected one of {MIXER_KINDS}, got {config.mixer!r}")
    if config.normalise_mixer and config.mixer != "linear":
        raise ValueError(f"{name}.normalise_mixer: only the 'linear' mixer normalises its weights; set "
                         f"normalise_mixer=False with mixer={config.mixer!r}")


def unroll(net: AgentNetConfig, params, obs: jax.Array) -> jax.Array:
    """Outputs [B, T, A, nA] of the agent network over whole episodes obs [B, T, A, O]
    (a GRU starts from zeros at t = 0 and is scanned over T)."""
    return jnp.swapaxes(apply_sequence(net, params, jnp.swapaxes(obs, 0, 1)), 0, 1)


def masked_values(values: jax.Array, avail: jax.Array | None) -> jax.Array:
    """Unavailable actions get −1e9, so max/argmax never pick them."""
    return values if avail is None else jnp.where(avail, values, NEG_INF)


def greedy_actions(values: jax.Array, avail: jax.Array | None) -> jax.Array:
    """argmax over available actions [..., nA] → int32 [...]."""
    return jnp.argmax(masked_values(values, avail), axis=-1).astype(jnp.int32)


def taken(values: jax.Array, actions: jax.Array) -> jax.Array:
    """values [..., nA] at actions [...] → [...]."""
    return jnp.take_along_axis(values, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


def with_state(obs: jax.Array, state: jax.Array) -> jax.Array:
    """Concatenate the global state to every agent's observation: [..., A, S + O]."""
    tiled = jnp.broadcast_to(state[..., None, :], obs.shape[:-1] + state.shape[-1:])
    return jnp.concatenate([tiled, obs], axis=-1)


# --- batch softmax and weighted means ------------------------------------------------------

def batch_softmax_weights(x: jax.Array, mask: jax.Array, temperature: float) -> jax.Array:
    """|B_t|·softmax over the batch axis (0) of x/temperature, among entries where `mask`
    holds; 0 elsewhere. `x` and `mask` are [B, ...]; |B_t| counts the valid entries of
    each slice, so the weights of a slice average to 1 (ICQ's eq. 14 exp(Q/β)/Z on a batch)."""
    mask = jnp.broadcast_to(mask, x.shape)
    logits = jnp.where(mask, x / temperature, -jnp.inf)
    shift = jax.lax.stop_gradient(jnp.max(jnp.where(mask, logits, -1e30), axis=0, keepdims=True))
    unnormalised = jnp.where(mask, jnp.exp(logits - shift), 0.0)
    count = jnp.sum(mask, axis=0, keepdims=True).astype(x.dtype)
    return count * unnormalised / jnp.maximum(jnp.sum(unnormalised, axis=0, keepdims=True), 1e-30)


# --- returns over padded episodes (eq. R above) ---------------------------------------------

def next_step(x: jax.Array) -> jax.Array:
    """x[:, t + 1] at position t, zero (False) past the end ([B, T, ...])."""
    return jnp.concatenate([x[:, 1:], jnp.zeros_like(x[:, :1])], axis=1)


def off_policy_returns(rewards: jax.Array, next_values: jax.Array, continues: jax.Array, has_next: jax.Array,
                       gamma: float, traces: jax.Array | float = 0.0,
                       next_taken: jax.Array | None = None) -> jax.Array:
    """G [B, T] of eq. (R) over padded episodes; every input is aligned with step t.

    Args:
        rewards: r_t [B, T] (zero on padding).
        next_values: V_{t+1} [B, T], the target policy's value after step t (at the final
            observation after the last step).
        continues: κ_t [B, T] — bootstrap from t + 1 (False on terminal steps and padding).
        has_next: h_{t+1} [B, T] — step t + 1 is in the episode, so G_{t+1} exists.
        gamma: discount γ.
        traces: c_{t+1} [B, T] or a scalar (λ for TD(λ), λ·π(a_{t+1}) for Tree Backup).
        next_taken: Q_{t+1}(a_{t+1}) [B, T]; default `next_values` (on-policy TD(λ)).
    Returns G_t on the episode's steps (r_t alone where κ_t = 0), 0 on padding.
    """
    next_taken = next_values if next_taken is None else next_taken
    traces = jnp.broadcast_to(jnp.asarray(traces, next_values.dtype), next_values.shape)
    trace_on = traces * has_next.astype(next_values.dtype)
    inputs = (rewards, continues.astype(next_values.dtype), next_values, next_taken, trace_on)
    time_major = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), inputs)

    def backward(g_next, step):
        r, kappa, v_next, q_next, c_next = step
        g = r + gamma * kappa * (v_next + c_next * (g_next - q_next))
        return g, g

    _, g = jax.lax.scan(backward, jnp.zeros_like(next_values[:, 0]), time_major, reverse=True)
    return jnp.swapaxes(g, 0, 1)


def td_lambda_returns(rewards: jax.Array, next_values: jax.Array, continues: jax.Array, has_next: jax.Array,
                      gamma: float, lam: float) -> jax.Array:
    """TD(λ) returns: G_t = r_t + γ[(1 − λ)Q_{t+1} + λ G_{t+1}] (eq. R with c = λ)."""
    return off_policy_returns(rewards, next_values, continues, has_next, gamma, lam)


def batch_returns(batch: dict, next_values: jax.Array, gamma: float, traces: jax.Array | float = 0.0,
                  next_taken: jax.Array | None = None) -> jax.Array:
    """`off_policy_returns` with r, κ and h taken from an `episode_batch`."""
    return off_policy_returns(batch["reward"], next_values, batch["continues"], batch["has_next"], gamma, traces,
                              next_taken)


# --- targets and optimisers ---------------------------------------------------------------

def hard_update(target, online, old_step: jax.Array, new_step: jax.Array, period: int):
    """Copy `online` into `target` when the step counter passes a multiple of `period`
    on its way from `old_step` to `new_step` (counts of gradient steps)."""
    copy = (new_step // period) > (old_step // period)
    return jax.tree.map(lambda t, o: jnp.where(copy, o, t), target, online)


def soft_update(target, online, tau: float):
    """Polyak averaging: target ← τ·online + (1 − τ)·target."""
    return jax.tree.map(lambda t, o: tau * o + (1.0 - tau) * t, target, online)


#: The discrete offline MARL learners' default optimiser (ICQ, SIT, MABCQ, MACQL): RMSProp with
#: PyMARL's decay 0.99 and ε = 1e-5, but ε under the root, not added to it as PyMARL does
#: ("rmsprop_pymarl"); see `teamsift.nets.optim`. The default until their tables are rerun.
OPTIMIZER = "rmsprop_eps_in_root"


def optimizer(config, learning_rate: float) -> optax.GradientTransformation:
    """`config.optimizer` (a `teamsift.nets.optim.OPTIMIZERS` name) at `learning_rate`, after
    clipping the gradients' global norm to `config.max_grad_norm`."""
    return clipped(config.optimizer, learning_rate, config.max_grad_norm)


def require_optimizer(config) -> None:
    require_choice(config, "optimizer", tuple(OPTIMIZERS))


def apply_gradients(optimizer: optax.GradientTransformation, params, opt_state, grads):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def critic_gradient_steps(loss_fn: Callable, params, opt_state, optimizer: optax.GradientTransformation,
                          fields: tuple, per_time_step: bool):
    """Critic gradient steps on one batch of `fields` ([B, T, ...] arrays, the last one the
    mask [B, T]) for `loss_fn(params, *fields)`: one step on the whole batch, or — as ICQ's
    reference (PyMARL's offline learners) does — one step per time step t, in order, on
    `fields[:, t]`, skipping time steps past every episode's end.
    Returns (params, opt_state, number of gradient steps taken, mean loss over them)."""
    if not per_time_step:
        loss, grads = jax.value_and_grad(loss_fn)(params, *fields)
        params, opt_state = apply_gradients(optimizer, params, opt_state, grads)
        return params, opt_state, jnp.int32(1), loss

    def one_time_step(carry, step_fields):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, *step_fields)
        new_params, new_opt_state = apply_gradients(optimizer, params, opt_state, grads)
        active = jnp.any(step_fields[-1])
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(active, n, o), new, old)  # noqa: E731
        return (keep(new_params, params), keep(new_opt_state, opt_state)), (loss, active)

    time_major = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), fields)
    (params, opt_state), (losses, active) = jax.lax.scan(one_time_step, (params, opt_state), time_major)
    steps = jnp.sum(active).astype(jnp.int32)
    return params, opt_state, steps, jnp.sum(losses * active) / jnp.maximum(steps, 1)


# --- rewards and divergence ---------------------------------------------------------------

SMAC_MAX_RETURN = 20.0  # PyMARL scales SMAC's rewards so that the best episode return is 20
#: How `reward_scale=None` is read from the data (`smac_reward_scale`):
#:   "smac":    PyMARL's convention, the environment's best return (`envs.best_return`;
#:              SMAX: 2) becomes 20; where that is unknown, as "largest" (the default);
#:   "largest": the data's largest episode return becomes 20 where it is above 20; smaller
#:              and negative returns stay (what a run recorded before the rule existed
#:              resumes with: `engine.run.ADDED_SETTINGS`).
REWARD_SCALE_RULES = ("smac", "largest")


def resolve_reward_scale(config, dataset):
    """`config` with `reward_scale=None` resolved from the data by `config.reward_scale_rule`
    (`smac_reward_scale`): the resolved config is what a learner is built from (and cached by)."""
    if config.reward_scale is None:
        config = dataclasses.replace(config, reward_scale=smac_reward_scale(dataset, config.reward_scale_rule))
    return config


def smac_reward_scale(dataset, rule: str = "smac", max_return: float = SMAC_MAX_RETURN) -> float:
    """The factor that brings returns to SMAC's scale (for learners whose temperatures were
    tuned there) by `rule` (`REWARD_SCALE_RULES`): the environment's best return to
    `max_return` ("smac", where `envs.best_return` knows it), else the dataset's largest
    episode return down to `max_return` (1 where none is larger)."""
    if rule not in REWARD_SCALE_RULES:
        raise ValueError(f"reward_scale_rule: expected one of {REWARD_SCALE_RULES}, got {rule!r}")
    best = best_return(dataset.spec.env_id) if rule == "smac" else None
    if best is not None:
        return max_return / best
    largest = float(np.max(np.asarray(dataset.episodes["return"]))) if dataset.num_episodes else 0.0
    return max_return / largest if largest > max_return else 1.0


DIVERGENCE_RATIO = 1e3  # last-tenth loss / lowest tenth-of-training loss that counts as divergence
DIVERGENCE_FLOOR = 1e-2  # losses that grow only from below this to below RATIO × this are not divergence


def _tenth_means(losses: np.ndarray) -> np.ndarray:
    """Mean loss [n, tenths] of each tenth of training (fewer parts when there are fewer rows)."""
    losses = np.asarray(losses, np.float64)
    parts = np.array_split(losses, min(10, losses.shape[1]), axis=1) if losses.shape[1] else []
    return np.stack([np.mean(p, axis=1) for p in parts], axis=1) if parts else np.zeros((losses.shape[0], 0))


def diverged_seeds(losses: np.ndarray) -> np.ndarray:
    """Seeds [n] whose loss [n, rows] diverged: the mean of the last tenth of training is
    non-finite or over `DIVERGENCE_RATIO` times the lowest mean of any earlier tenth (or
    of `DIVERGENCE_FLOOR`, if that is larger). Rows are per-update losses or the means of
    log intervals (`engine.FitResult.history[metric]`), in training order."""
    means = _tenth_means(losses)
    if means.shape[1] < 2:
        return np.zeros(means.shape[0], bool)
    last, lowest = means[:, -1], np.min(np.abs(means[:, :-1]), axis=1)
    return ~np.isfinite(last) | (np.abs(last) > DIVERGENCE_RATIO * np.maximum(lowest, DIVERGENCE_FLOOR))


def warn_if_diverged(losses: np.ndarray, what: str, hint: str) -> np.ndarray:
    """Warn (naming the seeds) when `diverged_seeds(losses)`; returns that mask."""
    diverged = diverged_seeds(losses)
    if diverged.any():
        last = _tenth_means(losses)[diverged, -1]
        warnings.warn(f"{what} diverged on seed(s) {np.flatnonzero(diverged).tolist()} "
                      f"(loss over the last tenth of training: {', '.join(f'{v:.3g}' for v in last)}); "
                      f"{hint}", RuntimeWarning, stacklevel=3)
    return diverged
