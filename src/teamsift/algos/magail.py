"""MAGAIL (Song et al., "Multi-Agent Generative Adversarial Imitation Learning", NeurIPS
2018), the baseline of MILD² (methods.md §3), on the shared loop of `algos.adversarial`.

    expert transitions D_E = {(s, o^{1:A}, a^{1:A})} from a teamsift dataset
    optional warm start: θ_0 ← BC on D_E (the same parameter-shared actor network)
    for iteration u = 1 … U:                                 (lax.scan inside one jit)
        roll MAPPO's actor π_θ out: τ_G, L steps × N environments
        d^k = D_ω(o_k, a_k, id_k)         decentralised: one logit per agent
            = D_ω(s, a^{1:A})             centralised: one logit, shared by every agent
        r^k = 2σ(d^k) − 1  ∈ (−1, 1)      (sign convention: expert-like ⇒ d ≫ 0 ⇒ r → +1)
        θ ← MAPPO on the team reward r_t = (1/A) Σ_k r_t^k (or per agent: agent_rewards)
        for K steps (B expert and B generator rows each):
            L_D(ω) = ½ E_E[−log σ(d)] + ½ E_G[−log(1 − σ(d))]      BCE, expert label 1
                   = ½ E_E[softplus(−d)] + ½ E_G[softplus(d)]       (log 2 at chance)
            ω ← Adam(∇L_D)

Our choices where the paper leaves room: MAPPO (`teamsift.collect.ppo`, settings from
`ppo.config_for(env_id)`) as the multi-agent actor-critic in place of MACK/ACKTR (as
methods.md says); MLP discriminators 2×128 ReLU; Adam, lr 3e-4, K = 5 steps of 512 + 512
rows per iteration (one iteration = one PPO update); the discriminator's reward replaces
the environment's completely (no shaping; PPOConfig.reward_scale is not used, our own
`reward_scale` is, default 1: rewards are already O(1)).

BC warm start (`bc_warm_start=True`): `teamsift.algos.bc` clones the expert data into an
actor of the PPO actor's exact architecture (hidden sizes, GRU or MLP, agent ids), whose
params then replace the PPO actor's (a continuous actor keeps its learned log-std); with
`normalize_obs` the clone is rewritten to act on normalised inputs, the running
statistics starting from the expert data's. The critic starts untrained.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from teamsift.algos import adversarial, bc
from teamsift.collect import ppo
from teamsift.data import Dataset, load_dataset, to_device
from teamsift.envs.base import Env, EnvSpec
from teamsift.nets.discriminator import DiscriminatorConfig, discriminator_logits, init_discriminator


@dataclasses.dataclass(frozen=True)
class MAGAILConfig:
    """MAGAIL's hyperparameters; `generator` is the MAPPO config (use `config_for`)."""

    generator: ppo.PPOConfig = ppo.PPOConfig()
    centralised: bool = False  # centralised D(s, a^{1:A}) | decentralised D(o_k, a_k, id_k)
    hidden: tuple[int, ...] = (128, 128)
    shared: bool = True  # decentralised: one parameter-shared MLP (+ one-hot id) | one MLP per agent
    use_state: bool = True  # centralised: global state (else all observations concatenated)
    disc_lr: float = 3e-4
    disc_steps: int = 5  # K per iteration
    disc_batch_size: int = 512
    reward_scale: float = 1.0
    agent_rewards: str = "mean"  # "mean": MAPPO's team reward = (1/A) Σ_k r^k | "individual"
    bc_warm_start: bool = False
    bc_updates: int = 2000
    bc_learning_rate: float = 1e-3
    histogram_bins: int = 20

    def __post_init__(self):
        if self.agent_rewards not in adversarial.AGENT_REWARDS:
            raise ValueError(f"MAGAILConfig.agent_rewards: expected one of {adversarial.AGENT_REWARDS}, "
                             f"got {self.agent_rewards!r}")
        if self.generator.algo != "mappo":
            raise ValueError("MAGAILConfig.generator: MAGAIL's generator is MAPPO (algo='mappo')")

    @property
    def loop(self) -> adversarial.AdversarialConfig:
        return adversarial.AdversarialConfig(self.disc_steps, self.disc_batch_size, self.histogram_bins)


def config_for(env_id: str, generator: dict | None = None, **fields) -> MAGAILConfig:
    """MAGAILConfig whose MAPPO generator has `ppo.config_for(env_id, **generator)`."""
    return MAGAILConfig(generator=ppo.config_for(env_id, **(generator or {})), **fields)


# --- discriminator ---------------------------------------------------------------------------

def disc_config(config: MAGAILConfig, spec: EnvSpec) -> DiscriminatorConfig:
    return DiscriminatorConfig(
        num_agents=spec.num_agents, obs_dim=spec.obs_dim, state_dim=spec.state_dim, num_actions=spec.num_actions,
        discrete=spec.discrete, centralised=config.centralised, hidden=tuple(config.hidden), shared=config.shared,
        use_state=config.use_state,
    )


def gail_reward(logits: jax.Array) -> jax.Array:
    """r = 2σ(d) − 1 ∈ (−1, 1): 0 at d = 0, higher for more expert-like transitions."""
    return 2.0 * jax.nn.sigmoid(logits) - 1.0


def bce_loss(expert_logits: jax.Array, generator_logits: jax.Array) -> jax.Array:
    """½ E_E[−log σ(d)] + ½ E_G[−log(1 − σ(d))] (expert label 1), over rows and agents."""
    return 0.5 * jnp.mean(jax.nn.softplus(-expert_logits)) + 0.5 * jnp.mean(jax.nn.softplus(generator_logits))


@functools.lru_cache(maxsize=None)
def make_discriminator(config: MAGAILConfig, spec: EnvSpec) -> adversarial.Discriminator:
    """MAGAIL's discriminator in the loop's protocol (score = logit d, reward = 2σ(d) − 1)."""
    net = disc_config(config, spec)

    def score(params, batch):
        return discriminator_logits(net, params, batch["obs"], batch["state"], batch["actions"])

    def loss(params, expert, generator, key):
        d_expert, d_generator = score(params, expert), score(params, generator)
        stats = {"expert_accuracy": jnp.mean(d_expert > 0), "generator_accuracy": jnp.mean(d_generator < 0)}
        return bce_loss(d_expert, d_generator), stats

    return adversarial.Discriminator(
        init=lambda key: init_discriminator(net, key),
        score=score,
        reward=lambda params, batch: gail_reward(score(params, batch)),
        loss=loss,
        optimizer=optax.adam(config.disc_lr),
        reward_range=(-1.0, 1.0),
    )


def make_generator(config: MAGAILConfig, env: Env) -> adversarial.Generator:
    return adversarial.mappo_generator(config.generator, env, config.reward_scale, config.agent_rewards)


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


def expert_arrays(dataset: Dataset) -> dict:
    """The expert transitions on the device (obs, state, actions, avail if discrete)."""
    fields = ("obs", "state", "actions", "avail") if dataset.discrete else ("obs", "state", "actions")
    return to_device(dataset, fields)


# --- BC warm start ---------------------------------------------------------------------------

def bc_config(config: MAGAILConfig) -> bc.BCConfig:
    """BC onto the PPO actor's architecture, trained with Adam."""
    gen = config.generator
    return bc.BCConfig(hidden=tuple(gen.hidden), recurrent=gen.recurrent, learning_rate=config.bc_learning_rate,
                       optimizer="adam", num_updates=config.bc_updates, log_every=max(1, config.bc_updates // 10),
                       sample_actions=True)


def _unfold_normalization(net, params, stats: ppo.RunningStats):
    """Inverse of `ppo.fold_normalization`: params acting on raw x → on (x − μ)/σ
    (first layer W ← σ·W, b ← b + μ·W on the first obs_dim inputs)."""
    inner = dict(params["params"])
    owner = inner if net.recurrent else dict(inner["MLP_0"])
    dense = owner["Dense_0"]
    kernel = dense["kernel"]
    obs_rows = kernel[: net.obs_dim]
    owner["Dense_0"] = {**dense, "kernel": kernel.at[: net.obs_dim].set(obs_rows * stats.std()[:, None]),
                        "bias": dense["bias"] + stats.mean @ obs_rows}
    if not net.recurrent:
        inner["MLP_0"] = owner
    return {**params, "params": inner}


def _stats_of(x: np.ndarray, count: float) -> ppo.RunningStats:
    flat = np.asarray(x, np.float32).reshape(-1, x.shape[-1])
    return ppo.RunningStats(jnp.asarray(flat.mean(0)), jnp.asarray(flat.var(0)), jnp.float32(count))


def warm_start(config: MAGAILConfig, env: Env, state: adversarial.AdversarialState, bc_params, dataset: Dataset):
    """Put BC params (leading seed axis) into the generator's actor (see the module doc)."""
    gen = config.generator
    net = ppo.actor_config(gen, env.spec)
    ts = state.generator
    if gen.normalize_obs:
        weight = float(gen.steps_per_update * env.spec.num_agents)  # the stats count one rollout's rows
        obs_stats = _stats_of(dataset.steps["obs"], weight)
        state_stats = _stats_of(dataset.steps["state"], float(gen.steps_per_update))
        bc_params = jax.vmap(lambda p: _unfold_normalization(net, p, obs_stats))(bc_params)
        seeds = jax.tree.leaves(ts.actor)[0].shape[0]
        stack = lambda s: jax.tree.map(lambda x: jnp.broadcast_to(x, (seeds,) + x.shape), s)
        ts = ts._replace(obs_stats=stack(obs_stats), state_stats=stack(state_stats))
    actor = {**ts.actor, "params": {**ts.actor["params"], **bc_params["params"]}}  # keeps log_std
    if jax.tree.structure(actor) != jax.tree.structure(ts.actor):
        raise ValueError("BC warm start: the BC network does not match the PPO actor's architecture")
    return state._replace(generator=ts._replace(actor=actor))


def clone_expert(config: MAGAILConfig, dataset: Dataset, key: jax.Array, num_seeds: int, progress: bool):
    """BC params with a leading seed axis."""
    policy, _ = bc.train(bc_config(config), dataset, key, num_seeds=num_seeds, progress=progress)
    params = policy.params
    return params if num_seeds > 1 else jax.tree.map(lambda x: x[None], params)


# --- training --------------------------------------------------------------------------------

def train(config: MAGAILConfig, dataset_or_path, env: Env, key: jax.Array, progress: bool = True,
          num_seeds: int = 1) -> adversarial.AdversarialResult:
    """Imitate the expert dataset with MAGAIL; `num_seeds` seeds train as one vmapped program.

    Iterations: config.generator.num_updates (its total_timesteps), with
    config.generator.num_checkpoints evenly spaced generator checkpoints (0 = the start,
    the BC clone when warm-started). Returns an `AdversarialResult`: `.policy(i)` acts
    in `teamsift.evaluate`; `.logs` holds the diagnostics.
    """
    dataset = as_dataset(dataset_or_path)
    check_compatible(dataset, env)
    generator = make_generator(config, env)
    discriminator = make_discriminator(config, env.spec)
    k_loop, k_init, k_bc = jax.random.split(key, 3)
    state = adversarial.init_states(generator, discriminator, jax.random.split(k_init, num_seeds))
    if config.bc_warm_start:
        state = warm_start(config, env, state, clone_expert(config, dataset, k_bc, num_seeds, progress), dataset)
    kind = "centralised" if config.centralised else "decentralised"
    return adversarial.train_loop(
        generator, discriminator, config.loop, expert_arrays(dataset), k_loop,
        num_iterations=config.generator.num_updates, iterations_per_checkpoint=config.generator.updates_per_checkpoint,
        num_seeds=num_seeds, initial_state=state, progress=progress, label=f"MAGAIL ({kind}) {env.spec.env_id}",
    )
