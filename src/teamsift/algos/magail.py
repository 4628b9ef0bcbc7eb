"""MAGAIL (Song et al., "Multi-Agent Generative Adversarial Imitation Learning", NeurIPS
2018), the baseline of MILD² (methods.md §3), on the shared loop of `algos.adversarial`.

    expert transitions D_E = {(s, o^{1:A}, a^{1:A})} from a teamsift dataset
    optional warm start: θ_0 ← BC on D_E (the same parameter-shared actor network)
    for iteration u = 1 … U:            (`teamsift.engine.fit`: lax loops inside jit, seeds vmapped)
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
`reward_scale` is, default 1: rewards are already O(1)). The number of iterations is the
generator's `num_updates` (its total_timesteps); expert decisions weighted by a run's
`weights` count in E_E by their weight (normalised weighted mean).

BC warm start (`bc_warm_start=True`): a BC stage (`teamsift.algos.bc`, `bc_updates`
updates, its own fit) clones the expert data into an actor of the PPO actor's exact
architecture (hidden sizes, GRU or MLP, agent ids), whose params then replace the PPO
actor's (a continuous actor keeps its learned log-std); with `normalize_obs` the clone is
rewritten to act on normalised inputs, the running statistics starting from the expert
data's. The critic starts untrained.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from teamsift.algos import adversarial, bc
from teamsift.checks import require_choice, require_non_negative, require_positive
from teamsift.collect import ppo
from teamsift.collect.onpolicy import run_config
from teamsift.data import Dataset
from teamsift.engine import Learner, RunConfig, fit
from teamsift.envs.base import Env, EnvSpec
from teamsift.nets.discriminator import DiscriminatorConfig, discriminator_logits, init_discriminator
from teamsift.nets.normalization import RunningStats

BC_STAGE_KEY = 1  # the BC warm start trains with fold_in(key, BC_STAGE_KEY); the loop with key


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
    bc_updates: int = 2000  # the BC stage's updates (warm start only)
    bc_learning_rate: float = 1e-3
    histogram_bins: int = 20

    def __post_init__(self):
        require_choice(self, "agent_rewards", adversarial.AGENT_REWARDS)
        if self.generator.algo != "mappo":
            raise ValueError("MAGAILConfig.generator: MAGAIL's generator is MAPPO (algo='mappo')")
        require_positive(self, ("disc_lr", "disc_batch_size", "reward_scale", "bc_updates", "bc_learning_rate",
                                "histogram_bins"))
        require_non_negative(self, ("disc_steps",))
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"MAGAILConfig.hidden: expected positive layer widths, got {self.hidden!r}")

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


def bce_loss(expert_logits: jax.Array, generator_logits: jax.Array, expert_weight: jax.Array | None = None):
    """½ E_E[−log σ(d)] + ½ E_G[−log(1 − σ(d))] (expert label 1), over rows and agents;
    with `expert_weight` [B, A] the expert term is the weighted mean Σ w·ℓ / Σ w."""
    expert_term = jax.nn.softplus(-expert_logits)
    if expert_weight is None:
        expert_mean = jnp.mean(expert_term)
    else:
        weight = jnp.broadcast_to(expert_weight, expert_term.shape)
        expert_mean = jnp.sum(expert_term * weight) / jnp.maximum(jnp.sum(weight), 1e-8)
    return 0.5 * expert_mean + 0.5 * jnp.mean(jax.nn.softplus(generator_logits))


@functools.lru_cache(maxsize=None)
def make_discriminator(config: MAGAILConfig, spec: EnvSpec) -> adversarial.Discriminator:
    """MAGAIL's discriminator in the loop's protocol (score = logit d, reward = 2σ(d) − 1)."""
    net = disc_config(config, spec)

    def score(params, batch):
        return discriminator_logits(net, params, batch["obs"], batch["state"], batch["actions"])

    def loss(params, expert, generator, key):
        d_expert, d_generator = score(params, expert), score(params, generator)
        stats = {"expert_accuracy": jnp.mean(d_expert > 0), "generator_accuracy": jnp.mean(d_generator < 0)}
        return bce_loss(d_expert, d_generator, expert.get("weight")), stats

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


# --- the learner -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def make_learner(config: MAGAILConfig, env: Env) -> Learner:
    """MAGAIL as the engine's learner (`adversarial.make_learner`); with bc_warm_start its
    init takes `start` (`bc_start`)."""
    return adversarial.make_learner("magail", make_generator(config, env), make_discriminator(config, env.spec),
                                    config.loop, adversarial.expert_arrays, config.bc_warm_start)


def learner(config: MAGAILConfig, dataset: Dataset, env: Env) -> Learner:
    """MAGAIL imitating `dataset` in `env` (the dataset must come from an environment of env's shape)."""
    adversarial.check_compatible(dataset, env)
    return make_learner(config, env)


# --- BC warm start ---------------------------------------------------------------------------

def bc_config(config: MAGAILConfig) -> bc.BCConfig:
    """BC onto the PPO actor's architecture, trained with Adam."""
    gen = config.generator
    return bc.BCConfig(hidden=tuple(gen.hidden), recurrent=gen.recurrent, learning_rate=config.bc_learning_rate,
                       optimizer="adam", sample_actions=True)


def clone_expert(config: MAGAILConfig, dataset: Dataset, key: jax.Array, run: RunConfig):
    """The BC stage: `run.updates` BC updates (`config.bc_updates` in `train`) for `run.seeds`
    seeds. Returns the clones' params with a leading seed axis."""
    result = fit(bc.learner(bc_config(config), dataset), dataset, key, run,
                 record={"hyperparameters": bc_config(config), "stage": "bc"})
    return result.state.params


def bc_start(config: MAGAILConfig, env: Env, dataset: Dataset, bc_params) -> dict:
    """The `start` of a warm-started MAGAIL fit (leading seed axis): the BC clones' params
    and, with normalize_obs, the expert data's statistics (counted as one rollout's rows)."""
    gen = config.generator
    start = {"actor": bc_params}
    if gen.normalize_obs:
        seeds = jax.tree.leaves(bc_params)[0].shape[0]
        stack = lambda s: jax.tree.map(lambda x: jnp.broadcast_to(x, (seeds,) + x.shape), s)
        weight = float(gen.steps_per_update * env.spec.num_agents)  # the stats count one rollout's rows
        start["obs_stats"] = stack(RunningStats.of(dataset.steps["obs"], weight))
        start["state_stats"] = stack(RunningStats.of(dataset.steps["state"], float(gen.steps_per_update)))
    return start


# --- training --------------------------------------------------------------------------------

def train(config: MAGAILConfig, dataset_or_path, env: Env, key: jax.Array, progress: bool = True,
          num_seeds: int = 1, run: RunConfig | None = None) -> adversarial.AdversarialResult:
    """Imitate the expert dataset with MAGAIL through `teamsift.engine.fit` (after the BC
    stage, DIR/stages/bc with a run_dir, when bc_warm_start); seeds train as one vmapped program.

    Iterations: config.generator.num_updates (its total_timesteps), with
    config.generator.num_checkpoints evenly spaced generator checkpoints (0 = the start,
    the BC clone when warm-started). `run` (optional) gives the engine's schedule; its
    updates must be config.generator.num_updates. Returns an `AdversarialResult`:
    `.policy(i)` acts in `teamsift.evaluate`; `.logs` holds the diagnostics per log row.
    """
    dataset = adversarial.as_dataset(dataset_or_path)
    magail = learner(config, dataset, env)
    gen = config.generator
    kind = "centralised" if config.centralised else "decentralised"
    run = run_config(gen.num_updates, gen.updates_per_checkpoint, run, seeds=num_seeds, progress=progress,
                     label=f"MAGAIL ({kind}) {env.spec.env_id}", what="MAGAILConfig.generator")
    start = None
    if config.bc_warm_start:
        bc_run = run.stage("bc", config.bc_updates, label=f"MAGAIL BC warm start {env.spec.env_id}",
                           log_every=max(1, config.bc_updates // 10))
        params = clone_expert(config, dataset, jax.random.fold_in(key, BC_STAGE_KEY), bc_run)
        start = bc_start(config, env, dataset, params)
    result = fit(magail, dataset, key, run, start=start, env=env, record={"hyperparameters": config})
    return adversarial.AdversarialResult.from_fit(result, make_generator(config, env),
                                                  make_discriminator(config, env.spec), config.loop)
