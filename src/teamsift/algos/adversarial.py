"""The adversarial-imitation loop shared by MAGAIL and MILD²: a generator trained online
against a discriminator trained on expert demonstrations (it is not offline RL).

    for iteration u = 1 … U:            (`teamsift.engine.fit`: lax loops inside jit, seeds vmapped)
        τ_G ← generator rollout, L steps × N environments           (generator params θ_u)
        r^k = reward_ω(s, o, a)^k on every step of τ_G, per agent    [L, N, A]   (ω = ω_u)
        θ_{u+1} ← generator.learn(τ_G, r)          (MAPPO: PPO on a team reward, see below)
        for K discriminator steps:
            B_G ⊂ τ_G (B rows, uniform with replacement),  B_E ~ expert transitions (B rows,
            drawn by the run's sampler: `draw`, unit "step")
            ω ← optimiser(∇_ω L_D(ω; B_E, B_G))
        log  L_D; mean / variance of r on τ_G and on an expert batch (both under ω_u);
             a histogram (fixed bins over `reward_range`) of r on τ_G; the generator's
             training-episode environment return (MILD² Figures 3–5)

The two players are pluggable, so MILD² (transformer discriminator, Wasserstein loss, MAT
generator) reuses this loop unchanged:

  * `Discriminator`: init(key) → ω; score(ω, batch) → raw per-agent output [B, A] (a
    logit, a critic value); reward(ω, batch) → per-agent reward r^k [B, A];
    loss(ω, expert, generator, key) → (L_D, stats); an optax optimiser; the reward range
    the histogram bins cover.
  * `Generator`: init(key) → state; rollout(state, key) → (state, traj, batch, stats);
    learn(state, traj, reward [L, N, A], key) → (state, metrics); export(state) → the
    checkpoint params; policy(params, deterministic) → a joint policy for
    `teamsift.evaluate`; optionally warm_start(state, start) → state (e.g. BC params).

A batch is a dict of "obs" [..., A, O], "state" [..., S], "actions" [..., A] (int) or
[..., A, D] and, for discrete actions, "avail" [..., A, nA]: one joint transition per row.
Discriminators here score (s, o, a), not next states. An expert batch also carries
"weight" [B, A] when the run weighs the expert decisions (`fit(..., weights=...)`): the
discriminator's loss then weighs each expert term by it (normalised weighted means).

The reward hook always hands the generator PER-AGENT rewards [L, N, A]; the generator
decides how to use them. `mappo_generator` (our MAPPO from `teamsift.collect.ppo`) uses
`agent_rewards="mean"` by default: the team reward r_t = (1/A) Σ_k r_t^k (mean, not sum:
the scale does not grow with A, and a centralised discriminator's broadcast reward is
recovered exactly); `agent_rewards="individual"` keeps r^k per agent, each agent's
value head then bootstrapping its own reward (Song et al.'s per-agent rewards). The
environment's (and any shaped) reward is discarded; `reward_scale` multiplies r.

Running it: `make_learner(...)` is the engine's `Learner` (unit "step": expert rows;
snapshot: the generator's checkpoint, kept at iteration 0 and every checkpoint interval;
metrics per iteration: see `make_step`); `AdversarialResult.from_fit` wraps the engine's
result for MAGAIL's and MILD²'s `train`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from teamsift.collect import ppo
from teamsift.collect.onpolicy import checkpoint_params, history_logs, seed_view
from teamsift.data import Dataset, gather_transitions, load_dataset, sample_transitions, to_device
from teamsift.engine import FitResult, Learner
from teamsift.envs.base import Env
from teamsift.nets import NetworkPolicy
from teamsift.nets.normalization import unfold_normalization

Array = jax.Array
BATCH_FIELDS = ("obs", "state", "actions", "avail")
AGENT_REWARDS = ("mean", "individual")  # how mappo_generator turns r^k [.., A] into MAPPO's reward


# --- the two players -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Discriminator:
    """A discriminator as pure functions (hashed by identity: build it once per config)."""

    init: Callable[[Array], Any]  # key → params ω
    score: Callable[[Any, dict], Array]  # (ω, batch [B]) → raw output per agent [B, A]
    reward: Callable[[Any, dict], Array]  # (ω, batch [B]) → reward per agent r^k [B, A]
    loss: Callable[[Any, dict, dict, Array], tuple[Array, dict]]  # (ω, expert, generator, key) → (L_D, stats)
    optimizer: optax.GradientTransformation
    reward_range: tuple[float, float]  # the histogram's bins cover this interval


@dataclasses.dataclass(frozen=True, eq=False)
class Generator:
    """An online generator as pure functions (hashed by identity: build it once per config).

    rollout → (state, traj, batch, stats): `traj` is opaque (whatever learn needs), `batch`
    the transitions for the discriminator with leading [L, N], `stats` holds "return_sum"
    and "episodes" (environment return of the training episodes that ended).
    warm_start(state, start) → state puts one seed's `start` (e.g. BC params) into a fresh
    generator state (None: the generator cannot be warm-started)."""

    init: Callable[[Array], Any]
    rollout: Callable[[Any, Array], tuple[Any, Any, dict, dict]]
    learn: Callable[[Any, Any, Array, Array], tuple[Any, dict]]
    export: Callable[[Any], Any]
    policy: Callable[[Any, bool], Any]
    net: Any  # what the checkpoints load into (e.g. an AgentNetConfig)
    steps_per_iteration: int  # env steps per rollout (L · N)
    warm_start: Callable[[Any, Any], Any] | None = None


def team_reward(reward: Array, agent_rewards: str) -> Array:
    """Per-agent rewards [..., A] → what MAPPO learns from: mean over agents [...] or as is."""
    _check_agent_rewards(agent_rewards)
    if agent_rewards == "mean":
        return jnp.mean(reward, axis=-1)  # r_t = (1/A) Σ_k r_t^k
    return reward  # "individual": r_t^k, one GAE per agent (MAPPO's critic has one value per agent)


def _check_agent_rewards(agent_rewards: str) -> None:
    if agent_rewards not in AGENT_REWARDS:
        raise ValueError(f"agent_rewards: expected one of {AGENT_REWARDS}, got {agent_rewards!r}")


@functools.lru_cache(maxsize=None)
def mappo_generator(config: ppo.PPOConfig, env: Env, reward_scale: float = 1.0,
                    agent_rewards: str = "mean") -> Generator:
    """Our MAPPO (`teamsift.collect.ppo`) as a generator: rollout once, learn on the
    discriminator's reward (reward_scale · team_reward(r)); PPOConfig.reward_scale and
    shaped rewards play no part.

    Warm start: `start` = {"actor": params of an agent network of the actor's exact
    architecture, acting on raw observations (e.g. a BC clone)} and, with normalize_obs,
    "obs_stats" / "state_stats" (`RunningStats`) to start the running statistics from; the
    params are then rewritten to act on normalised inputs. A continuous actor keeps its
    learned log-std; the critic starts untrained."""
    _check_agent_rewards(agent_rewards)
    rollout = ppo.make_rollout(config, env)
    learn = ppo.make_learn(config, env)
    net = ppo.actor_config(config, env.spec)

    def do_rollout(ts, key):
        hidden0 = ts.runner.hidden  # GRU state the rollout starts from
        ts, traj = rollout(ts, key)
        batch = {"obs": traj.obs, "state": traj.state, "actions": traj.actions, "avail": traj.avail}
        stats = {"return_sum": jnp.sum(traj.episode_return), "episodes": jnp.sum(traj.done).astype(jnp.float32)}
        return ts, (traj, hidden0), batch, stats

    def do_learn(ts, opaque, reward, key):
        traj, hidden0 = opaque
        learning_reward = reward_scale * team_reward(reward, agent_rewards)
        return learn(ts, traj._replace(reward=learning_reward.astype(jnp.float32)), key, hidden0)

    def warm_start(ts, start):
        params = start["actor"]
        if config.normalize_obs:
            params = unfold_normalization(net, params, start["obs_stats"])
            ts = ts._replace(obs_stats=start["obs_stats"], state_stats=start["state_stats"])
        actor = {**ts.actor, "params": {**ts.actor["params"], **params["params"]}}  # keeps log_std
        if jax.tree.structure(actor) != jax.tree.structure(ts.actor):
            raise ValueError("warm start: the given network does not match the PPO actor's architecture")
        return ts._replace(actor=actor)

    return Generator(
        init=lambda key: ppo.init_state(config, env, key),
        rollout=do_rollout,
        learn=do_learn,
        export=lambda ts: ppo.export_actor(config, env, ts),
        policy=lambda params, deterministic=True: NetworkPolicy(params, net, deterministic=deterministic),
        net=net,
        steps_per_iteration=config.steps_per_update,
        warm_start=warm_start,
    )


# --- expert data -----------------------------------------------------------------------------

def as_dataset(dataset_or_path) -> Dataset:
    if isinstance(dataset_or_path, (str, os.PathLike)):
        return load_dataset(dataset_or_path)
    return dataset_or_path


def check_compatible(dataset: Dataset, env: Env) -> None:
    """The expert data must come from an environment of the same shape as `env`."""
    have, want = dataset.spec, env.spec
    fields = ("env_id", "num_agents", "obs_dim", "state_dim", "discrete", "num_actions")
    for name in fields:
        if getattr(have, name) != getattr(want, name):
            raise ValueError(f"expert dataset {dataset.path}: {name} is {getattr(have, name)!r}, "
                             f"the environment's is {getattr(want, name)!r}")


def expert_arrays(dataset: Dataset, inputs: dict | None = None) -> dict:
    """The expert transitions on the device (obs, state, actions, avail if discrete): the
    learners' `prepare`."""
    fields = ("obs", "state", "actions", "avail") if dataset.discrete else ("obs", "state", "actions")
    return to_device(dataset, fields)


def expert_batch(arrays: dict, rows: Array) -> dict:
    """The expert transitions at step rows [B] (with their "weight" [B, A] when the run has one)."""
    sample = gather_transitions(arrays, rows)
    return {k: sample[k] for k in BATCH_FIELDS + ("weight",) if k in sample}


def dataset_batch(key: Array, arrays: dict, size: int) -> dict:
    """`size` transitions (obs, state, actions, avail) sampled uniformly from device arrays
    (`fit_discriminator`; the loop draws through the run's sampler instead)."""
    sample = sample_transitions(key, arrays, size)
    return {k: sample[k] for k in BATCH_FIELDS if k in sample}


# --- one iteration ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AdversarialConfig:
    """What shapes one iteration of the loop (static under jit)."""

    disc_steps: int = 5  # K discriminator steps per iteration
    disc_batch_size: int = 512  # B rows of expert and B rows of generator data per step
    histogram_bins: int = 20

    def __post_init__(self):
        if self.disc_steps < 0 or self.disc_batch_size < 1 or self.histogram_bins < 1:
            raise ValueError("AdversarialConfig: need disc_steps >= 0, disc_batch_size >= 1, histogram_bins >= 1")


class AdversarialState(NamedTuple):
    generator: Any
    disc_params: Any
    disc_opt: Any
    iteration: Array  # int32: iterations done


def init_state(generator: Generator, discriminator: Discriminator, key: Array) -> AdversarialState:
    k_gen, k_disc = jax.random.split(key)
    params = discriminator.init(k_disc)
    return AdversarialState(generator.init(k_gen), params, discriminator.optimizer.init(params), jnp.int32(0))


def flatten_batch(batch: dict) -> dict:
    """[L, N, ...] → [L·N, ...], dropping absent (None) fields."""
    return {k: v.reshape((-1,) + v.shape[2:]) for k, v in batch.items() if v is not None}


def take_rows(batch: dict, rows: Array) -> dict:
    return {k: v[rows] for k, v in batch.items()}


def mean_var(x: Array) -> tuple[Array, Array]:
    return jnp.mean(x), jnp.var(x)


def histogram_edges(discriminator: Discriminator, bins: int) -> np.ndarray:
    low, high = discriminator.reward_range
    return np.linspace(low, high, bins + 1)


def reward_histogram(reward: Array, discriminator: Discriminator, bins: int) -> Array:
    """Counts [bins] over fixed bins on reward_range; values outside fall in the edge bins."""
    low, high = discriminator.reward_range
    counts, _ = jnp.histogram(jnp.clip(reward, low, high), bins=bins, range=(low, high))
    return counts.astype(jnp.int32)


def make_disc_step(discriminator: Discriminator, batch_size: int):
    """One discriminator step: (ω, opt), key, generator rows [M], an expert batch of
    `batch_size` rows (`expert_batch`) → (ω, opt), stats."""
    grad_fn = jax.value_and_grad(discriminator.loss, has_aux=True)

    def disc_step(carry, key, generator_rows: dict, expert: dict):
        params, opt = carry
        k_gen, _, k_loss = jax.random.split(key, 3)
        num_rows = generator_rows["obs"].shape[0]
        gen_batch = take_rows(generator_rows, jax.random.randint(k_gen, (batch_size,), 0, num_rows))
        (loss, stats), grads = grad_fn(params, expert, gen_batch, k_loss)
        updates, opt = discriminator.optimizer.update(grads, opt, params)
        return (optax.apply_updates(params, updates), opt), {"disc_loss": loss, **stats}

    return disc_step


def reward_diagnostics(discriminator: Discriminator, params, generator_rows, generator_reward, probe, bins: int):
    """Mean / variance of rewards and scores on generator data and an expert probe (MILD² Fig. 3–4)."""
    expert_reward = discriminator.reward(params, probe)
    gen_mean, gen_var = mean_var(generator_reward)
    exp_mean, exp_var = mean_var(expert_reward)
    return {
        "generator_reward_mean": gen_mean, "generator_reward_var": gen_var,
        "expert_reward_mean": exp_mean, "expert_reward_var": exp_var,
        "generator_score_mean": jnp.mean(discriminator.score(params, generator_rows)),
        "expert_score_mean": jnp.mean(discriminator.score(params, probe)),
        "reward_histogram": reward_histogram(generator_reward, discriminator, bins),
    }


@functools.lru_cache(maxsize=None)
def make_step(generator: Generator, discriminator: Discriminator, config: AdversarialConfig):
    """The pure iteration: step(state, key, expert, items) -> (state, metrics) (see the
    module doc); `expert(items[j])` gives the j-th of the 1 + K expert batches of
    config.disc_batch_size rows that the run's sampler drew (items [1 + K, B]): the first
    probes the rewards, one for each of the K discriminator steps.

    Metrics: "disc_loss" and the discriminator's own stats (means over the K steps),
    "generator_reward_mean/var", "expert_reward_mean/var", "generator_score_mean",
    "expert_score_mean", "reward_histogram" [bins] (`histogram_edges`), "return_sum" and
    "episodes" of the generator's training episodes, and the generator's metrics
    prefixed "gen_"."""
    disc_step = make_disc_step(discriminator, config.disc_batch_size)

    def step(st: AdversarialState, key: Array, expert: Callable[[Array], dict], items: Array):
        k_roll, k_learn, k_disc, _ = jax.random.split(key, 4)
        gen_state, traj, batch, stats = generator.rollout(st.generator, k_roll)
        rows = flatten_batch(batch)
        reward = discriminator.reward(st.disc_params, rows)  # [L·N, A] under ω_u
        lead = batch["obs"].shape[:2]
        gen_state, gen_metrics = generator.learn(gen_state, traj, reward.reshape(lead + reward.shape[1:]), k_learn)
        probe = expert(items[0])
        diagnostics = reward_diagnostics(discriminator, st.disc_params, rows, reward, probe, config.histogram_bins)
        (params, opt), disc_stats = jax.lax.scan(
            lambda c, xs: disc_step(c, xs[0], rows, expert(xs[1])), (st.disc_params, st.disc_opt),
            (jax.random.split(k_disc, config.disc_steps), items[1:]))
        logs = {
            **jax.tree.map(jnp.mean, disc_stats), **diagnostics, **stats,
            **{f"gen_{k}": v for k, v in gen_metrics.items()},
        }
        return AdversarialState(gen_state, params, opt, st.iteration + 1), logs

    return step


# --- the engine's learner --------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def make_learner(name: str, generator: Generator, discriminator: Discriminator, config: AdversarialConfig,
                 prepare: Callable = expert_arrays, warm_start: bool = False) -> Learner:
    """The loop as the engine's learner. Each iteration draws 1 + K batches of
    config.disc_batch_size expert rows (unit "step"); `prepare(dataset, inputs)` puts the
    expert transitions on the device. With `warm_start`, init takes one seed's `start`
    (`fit(..., start=...)`) for `generator.warm_start`. Snapshot: the generator's
    checkpoint; policy: the generator's current policy, stochastic as it trained."""
    if warm_start and generator.warm_start is None:
        raise ValueError(f"{name}: this generator cannot be warm-started")
    step = make_step(generator, discriminator, config)

    def init(key, arrays, start=None) -> AdversarialState:
        state = init_state(generator, discriminator, key)
        if warm_start:
            state = state._replace(generator=generator.warm_start(state.generator, start))
        return state

    def update(state: AdversarialState, key, arrays, items):
        return step(state, key, lambda rows: expert_batch(arrays, rows), items)

    def policy(state: AdversarialState, arrays):  # stochastic, as the generator trained
        return generator.policy(generator.export(state.generator), False)

    return Learner(name, init, update, policy, prepare=prepare, unit="step", batch_size=config.disc_batch_size,
                   draws=1 + config.disc_steps, headline="disc_loss",
                   snapshot=lambda state: generator.export(state.generator), needs_start=warm_start)


# --- the result ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AdversarialResult:
    """What MAGAIL's and MILD²'s `train` return (built from the engine's `FitResult`, kept in `fit`).

    checkpoints: generator params with a leading [C] axis ([S, C] with num_seeds > 1);
    checkpoint 0 is the generator before any iteration (the warm start, if any).
    checkpoint_iterations / checkpoint_steps [C]: iterations and env steps at each.
    logs: per log row [L] ([S, L] with seeds; vectors [.., L, bins]): the interval means of
    "disc_loss" and the discriminator's own stats, "generator_reward_mean/var",
    "expert_reward_mean/var", "generator_score_mean", "expert_score_mean",
    "reward_histogram" [bins] (bins: `histogram_edges`), the generator's metrics prefixed
    "gen_", "return_sum", "episodes"; and "return" (mean env return of the training
    episodes that ended in the interval, NaN if none), "update" (iterations done at the
    row), "env_steps". disc_params: the final discriminator ([S, ...] with seeds).
    """

    generator: Generator = dataclasses.field(repr=False)
    checkpoints: Any = dataclasses.field(repr=False)
    checkpoint_iterations: np.ndarray
    checkpoint_steps: np.ndarray
    logs: dict[str, np.ndarray] = dataclasses.field(repr=False)
    histogram_edges: np.ndarray
    disc_params: Any = dataclasses.field(repr=False)
    num_seeds: int = 1
    wall_time: float = 0.0
    final_state: Any = dataclasses.field(default=None, repr=False)
    fit: FitResult | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_fit(cls, result: FitResult, generator: Generator, discriminator: Discriminator,
                 config: AdversarialConfig) -> "AdversarialResult":
        iterations = np.asarray(result.snapshot_updates, np.int64)
        return cls(generator=generator, checkpoints=seed_view(result.snapshots, result.seeds),
                   checkpoint_iterations=iterations, checkpoint_steps=iterations * generator.steps_per_iteration,
                   logs=history_logs(result.history, generator.steps_per_iteration, result.seeds),
                   histogram_edges=histogram_edges(discriminator, config.histogram_bins),
                   disc_params=seed_view(result.state.disc_params, result.seeds), num_seeds=result.seeds,
                   wall_time=result.seconds, final_state=result.state, fit=result)

    @property
    def net(self):
        return self.generator.net

    def params(self, index: int = -1, seed: int | None = None):
        return checkpoint_params(self.checkpoints, self.num_seeds, index, seed)

    def policy(self, index: int = -1, seed: int | None = None, deterministic: bool = True):
        """Checkpoint `index` (default: the last) as a policy for `teamsift.evaluate`."""
        return self.generator.policy(self.params(index, seed), deterministic)

    def reward_histograms(self, fractions=(0.1, 0.5, 1.0), seed: int | None = None) -> dict[int, np.ndarray]:
        """Generator-reward histograms at a few points of training: {iteration: counts [bins]}
        (the mean counts of the first log row at or after each fraction of the iterations,
        keyed by that row's iteration)."""
        hist, updates = self.logs["reward_histogram"], self.logs["update"]
        if self.num_seeds > 1:
            pick = 0 if seed is None else seed
            hist, updates = hist[pick], updates[pick]
        total = int(updates[-1])
        out = {}
        for f in fractions:
            target = min(total, max(1, int(round(f * total))))
            row = int(np.searchsorted(updates, target))
            out[int(updates[row])] = hist[row]
        return dict(sorted(out.items()))


# --- a discriminator alone -------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("discriminator", "steps", "batch_size"))
def fit_discriminator(discriminator: Discriminator, expert: dict, other: dict, key: Array, steps: int,
                      batch_size: int = 512):
    """Train a fresh discriminator for `steps` steps on expert vs `other` transitions (both
    device dicts from `to_device`), without a generator: for tests and diagnostics.
    Returns (params, losses [steps])."""
    k_init, k_steps = jax.random.split(key)
    params = discriminator.init(k_init)
    grad_fn = jax.value_and_grad(discriminator.loss, has_aux=True)

    def one(carry, k):
        params, opt = carry
        k_exp, k_other, k_loss = jax.random.split(k, 3)
        (loss, _), grads = grad_fn(params, dataset_batch(k_exp, expert, batch_size),
                                   dataset_batch(k_other, other, batch_size), k_loss)
        updates, opt = discriminator.optimizer.update(grads, opt, params)
        return (optax.apply_updates(params, updates), opt), loss

    (params, _), losses = jax.lax.scan(one, (params, discriminator.optimizer.init(params)),
                                       jax.random.split(k_steps, steps))
    return params, losses
