"""The adversarial-imitation loop shared by MAGAIL and MILD²: a generator trained online
against a discriminator trained on expert demonstrations (it is not offline RL).

    for iteration u = 1 … U:                        (lax.scan inside one jit, seeds vmapped)
        τ_G ← generator rollout, L steps × N environments           (generator params θ_u)
        r^k = reward_ω(s, o, a)^k on every step of τ_G, per agent    [L, N, A]   (ω = ω_u)
        θ_{u+1} ← generator.learn(τ_G, r)          (MAPPO: PPO on a team reward, see below)
        for K discriminator steps:
            B_G ⊂ τ_G (B rows, uniform with replacement),  B_E ~ expert transitions (B rows)
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
    `teamsift.evaluate`.

A batch is a dict of "obs" [..., A, O], "state" [..., S], "actions" [..., A] (int) or
[..., A, D] and, for discrete actions, "avail" [..., A, nA]: one joint transition per row.
Discriminators here score (s, o, a), not next states.

The reward hook always hands the generator PER-AGENT rewards [L, N, A]; the generator
decides how to use them. `mappo_generator` (our MAPPO from `teamsift.collect.ppo`) uses
`agent_rewards="mean"` by default: the team reward r_t = (1/A) Σ_k r_t^k (mean, not sum:
the scale does not grow with A, and a centralised discriminator's broadcast reward is
recovered exactly); `agent_rewards="individual"` keeps r^k per agent, each agent's
value head then bootstrapping its own reward (Song et al.'s per-agent rewards). The
environment's (and any shaped) reward is discarded; `reward_scale` multiplies r.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.progress import TextColumn

from teamsift.collect import ppo
from teamsift.data import sample_transitions
from teamsift.envs.base import Env
from teamsift.nets import NetworkPolicy
from teamsift.progress import progress_bar

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
    and "episodes" (environment return of the training episodes that ended)."""

    init: Callable[[Array], Any]
    rollout: Callable[[Any, Array], tuple[Any, Any, dict, dict]]
    learn: Callable[[Any, Any, Array, Array], tuple[Any, dict]]
    export: Callable[[Any], Any]
    policy: Callable[[Any, bool], Any]
    net: Any  # what the checkpoints load into (e.g. an AgentNetConfig)
    steps_per_iteration: int  # env steps per rollout (L · N)


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
    shaped rewards play no part."""
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

    return Generator(
        init=lambda key: ppo.init_state(config, env, key),
        rollout=do_rollout,
        learn=do_learn,
        export=lambda ts: ppo.export_actor(config, env, ts),
        policy=lambda params, deterministic=True: NetworkPolicy(params, net, deterministic=deterministic),
        net=net,
        steps_per_iteration=config.steps_per_update,
    )


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


@functools.partial(jax.jit, static_argnames=("generator", "discriminator"))
def init_states(generator: Generator, discriminator: Discriminator, keys: Array) -> AdversarialState:
    """`init_state` for every key [S] (one compilation per generator/discriminator pair)."""
    return jax.vmap(lambda k: init_state(generator, discriminator, k))(keys)


@functools.partial(jax.jit, static_argnames=("generator",))
def export_checkpoints(generator: Generator, state: AdversarialState):
    """The generator checkpoint of every seed of a batched state."""
    return jax.vmap(lambda s: generator.export(s.generator))(state)


def flatten_batch(batch: dict) -> dict:
    """[L, N, ...] → [L·N, ...], dropping absent (None) fields."""
    return {k: v.reshape((-1,) + v.shape[2:]) for k, v in batch.items() if v is not None}


def dataset_batch(key: Array, arrays: dict, size: int) -> dict:
    """`size` transitions (obs, state, actions, avail) sampled uniformly from device arrays."""
    sample = sample_transitions(key, arrays, size)
    return {k: sample[k] for k in BATCH_FIELDS if k in sample}


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
    """One discriminator step: (ω, opt), key, generator rows [M], expert → (ω, opt), stats."""
    grad_fn = jax.value_and_grad(discriminator.loss, has_aux=True)

    def disc_step(carry, key, generator_rows: dict, expert: dict):
        params, opt = carry
        k_gen, k_exp, k_loss = jax.random.split(key, 3)
        num_rows = generator_rows["obs"].shape[0]
        gen_batch = take_rows(generator_rows, jax.random.randint(k_gen, (batch_size,), 0, num_rows))
        (loss, stats), grads = grad_fn(params, dataset_batch(k_exp, expert, batch_size), gen_batch, k_loss)
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
    """The pure iteration: step(state, key, expert) -> (state, logs) (see the module doc)."""
    disc_step = make_disc_step(discriminator, config.disc_batch_size)

    def step(st: AdversarialState, key: Array, expert: dict):
        k_roll, k_learn, k_disc, k_probe = jax.random.split(key, 4)
        gen_state, traj, batch, stats = generator.rollout(st.generator, k_roll)
        rows = flatten_batch(batch)
        reward = discriminator.reward(st.disc_params, rows)  # [L·N, A] under ω_u
        lead = batch["obs"].shape[:2]
        gen_state, gen_metrics = generator.learn(gen_state, traj, reward.reshape(lead + reward.shape[1:]), k_learn)
        probe = dataset_batch(k_probe, expert, config.disc_batch_size)
        diagnostics = reward_diagnostics(discriminator, st.disc_params, rows, reward, probe, config.histogram_bins)
        (params, opt), disc_stats = jax.lax.scan(
            lambda c, k: disc_step(c, k, rows, expert), (st.disc_params, st.disc_opt),
            jax.random.split(k_disc, config.disc_steps))
        logs = {
            **jax.tree.map(jnp.mean, disc_stats), **diagnostics, **stats,
            **{f"gen_{k}": v for k, v in gen_metrics.items()},
        }
        return AdversarialState(gen_state, params, opt, st.iteration + 1), logs

    return step


# --- driver ----------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("step", "num_iterations"), donate_argnums=(1,))
def _run_chunk(step, state, seed_keys, expert, num_iterations: int):
    """`num_iterations` scanned iterations for every seed (vmapped over the seed axis)."""

    def one_seed(seed_state, seed_key):
        def body(s, _):
            return step(s, jax.random.fold_in(seed_key, s.iteration), expert)

        return jax.lax.scan(body, seed_state, None, length=num_iterations)

    return jax.vmap(one_seed)(state, seed_keys)


@dataclasses.dataclass(frozen=True)
class AdversarialResult:
    """What `train_loop` returns.

    checkpoints: generator params with a leading [C] axis ([S, C] with num_seeds > 1);
    checkpoint 0 is the generator before any iteration. checkpoint_iterations /
    checkpoint_steps [C]: iterations and env steps at each.
    logs: per-iteration arrays [U] ([S, U] with seeds): "disc_loss" and the
    discriminator's own stats, "generator_reward_mean/var", "expert_reward_mean/var",
    "generator_score_mean", "expert_score_mean", "reward_histogram" [U, bins] (bins:
    `histogram_edges`), "return" (mean env return of the training episodes that ended,
    NaN if none), "episodes", "return_sum", "env_steps", and the generator's metrics
    prefixed "gen_". disc_params: the final discriminator.
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

    @property
    def net(self):
        return self.generator.net

    def params(self, index: int = -1, seed: int | None = None):
        return ppo.checkpoint_params(self.checkpoints, self.num_seeds, index, seed)

    def policy(self, index: int = -1, seed: int | None = None, deterministic: bool = True):
        """Checkpoint `index` (default: the last) as a policy for `teamsift.evaluate`."""
        return self.generator.policy(self.params(index, seed), deterministic)

    def reward_histograms(self, fractions=(0.1, 0.5, 1.0), seed: int | None = None) -> dict[int, np.ndarray]:
        """Generator-reward histograms at a few points of training: {iteration: counts [bins]}."""
        hist = self.logs["reward_histogram"]
        if self.num_seeds > 1:
            hist = hist[0 if seed is None else seed]
        total = hist.shape[0]
        picks = sorted({min(total, max(1, int(round(f * total)))) for f in fractions})
        return {it: hist[it - 1] for it in picks}


def _chunk_size(per_interval: int, target: int) -> int:
    """The largest divisor of per_interval that is <= target (at least 1)."""
    return max(d for d in range(1, per_interval + 1) if per_interval % d == 0 and d <= max(1, target))


def _recent(logs: list[dict], window: int = 5) -> tuple[float, float]:
    recent = logs[-window:]
    sums = sum(float(np.sum(m["return_sum"])) for m in recent)
    count = sum(float(np.sum(m["episodes"])) for m in recent)
    loss = float(np.mean(recent[-1]["disc_loss"][:, -1]))
    return (sums / count if count > 0 else float("nan")), loss


def _merge_logs(logs: list[dict], steps_per_iteration: int, num_seeds: int) -> dict[str, np.ndarray]:
    merged = {k: np.concatenate([m[k] for m in logs], axis=1) for k in logs[0]}
    with np.errstate(invalid="ignore", divide="ignore"):
        merged["return"] = np.where(merged["episodes"] > 0, merged["return_sum"] / merged["episodes"], np.nan)
    total = merged["return"].shape[1]
    merged["env_steps"] = np.array(np.broadcast_to((np.arange(total) + 1) * steps_per_iteration,
                                                   merged["return"].shape))
    if num_seeds == 1:
        merged = {k: v[0] for k, v in merged.items()}
    return merged


def train_loop(generator: Generator, discriminator: Discriminator, config: AdversarialConfig, expert: dict,
               key: Array, *, num_iterations: int, iterations_per_checkpoint: int, num_seeds: int = 1,
               initial_state: AdversarialState | None = None, progress: bool = True,
               label: str = "adversarial imitation") -> AdversarialResult:
    """Run `num_iterations` iterations (a multiple of iterations_per_checkpoint) for
    `num_seeds` seeds at once; `expert` is the device dict of `teamsift.data.to_device`.

    `initial_state` (leading seed axis) replaces the fresh `init_state` per seed, e.g. a
    generator warm-started by BC. Every random choice flows from `key`."""
    if num_iterations % iterations_per_checkpoint:
        raise ValueError(f"num_iterations = {num_iterations} is not a multiple of "
                         f"iterations_per_checkpoint = {iterations_per_checkpoint}")
    init_keys, loop_keys = jnp.moveaxis(jax.random.split(key, (num_seeds, 2)), 1, 0)
    state = initial_state
    if state is None:
        state = init_states(generator, discriminator, init_keys)
    step = make_step(generator, discriminator, config)
    export = functools.partial(export_checkpoints, generator)
    checkpoints = [jax.tree.map(np.asarray, export(state))]
    chunk = _chunk_size(iterations_per_checkpoint, max(1, num_iterations // 50))
    logs: list[dict] = []
    started = time.perf_counter()
    columns = (TextColumn("return {task.fields[ret]}"), TextColumn("D loss {task.fields[loss]}"))
    with progress_bar(progress, *columns) as bar:
        task = bar.add_task(label, total=num_iterations, ret="…", loss="…")
        done = 0
        while done < num_iterations:
            state, chunk_logs = _run_chunk(step, state, loop_keys, expert, chunk)
            logs.append(jax.tree.map(np.asarray, chunk_logs))
            done += chunk
            if done % iterations_per_checkpoint == 0:
                checkpoints.append(jax.tree.map(np.asarray, export(state)))
            ret, loss = _recent(logs)
            bar.update(task, completed=done, ret="…" if np.isnan(ret) else f"{ret:.3f}", loss=f"{loss:.4f}")
    wall = time.perf_counter() - started
    stacked = jax.tree.map(lambda *xs: np.stack(xs, axis=1), *checkpoints)  # [S, C, ...]
    disc_params = state.disc_params
    if num_seeds == 1:
        stacked = jax.tree.map(lambda x: x[0], stacked)
        disc_params = jax.tree.map(lambda x: x[0], disc_params)
    iterations = np.arange(len(checkpoints)) * iterations_per_checkpoint
    return AdversarialResult(
        generator=generator, checkpoints=stacked, checkpoint_iterations=iterations,
        checkpoint_steps=iterations * generator.steps_per_iteration,
        logs=_merge_logs(logs, generator.steps_per_iteration, num_seeds),
        histogram_edges=histogram_edges(discriminator, config.histogram_bins), disc_params=disc_params,
        num_seeds=num_seeds, wall_time=wall, final_state=state,
    )


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
