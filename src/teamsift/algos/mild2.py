"""MILD² ("Big Picture Thinking: Enhance Multi-Agent Imitation Learning through Global
Dependencies", methods.md §3): a transformer discriminator over all agents, trained with
a regularised Wasserstein loss, and an autoregressive Multi-Agent Transformer generator
trained by PPO on the discriminator's individual rewards. Adversarial imitation from
expert demonstrations, online (not offline RL), on the shared loop of `algos.adversarial`.

    expert transitions D_E = {(o^{1:N}, a^{1:N})} from a teamsift dataset
    for iteration u = 1 … U:            (`teamsift.engine.fit`: lax loops inside jit, seeds vmapped)
        roll MAT out: τ_G, L steps × N environments, a^k ~ π_θ(· | o^{1:N}, a^{1:k−1})
        d^k = D_ω(o^{1:N}, a^{1:N})^k     transformer discriminator (MILD²-GD: D_ω(o^k, a^k))
        r^k = −log σ(d^k) = softplus(−d^k) > 0      individual reward of agent k
        θ ← MAT PPO on r^k per agent (each agent's value head bootstraps its own r^k)
        for K steps (B expert rows y, B generator rows x):
            L_D(ω) = (1/N) Σ_k ( E_E[d^k(y)] − E_G[d^k(x)]
                                 + (1/4ε) E_{x,y}[ (d^k(x) − d^k(y) − c(x, y))_+² ] )
            ω ← Adam(∇L_D), then one power-iteration step of every spectral norm

SIGN CONVENTION. The paper's reward r^k = −log σ(d^k) DECREASES in d, so for expert-like
transitions to earn the HIGHER reward our logit d is LOW on expert data: d is the
negative of the Wasserstein critic (Kantorovich potential) f = −d of Xiao et al. 2019,
whose dual objective sup_f E_E[f(y)] − E_G[f(x)] + E[Ω(f, x, y)] we maximise. In terms of
d the loss minimised is E_E[d] − E_G[d] − E[Ω] — i.e. "E_gen[D] − E_expert[D]" for the
critic D = f = −d. After training E_G[d] − E_E[d] > 0 estimates the (regularised) W1
distance ("wasserstein" in the logs), and r_expert > r_generator. The histograms and
`reward_range` are of r = softplus(−d) ∈ (0, ∞).

THE REGULARISER. Ω_{c,ε}(f, x, y) = −(1/4ε)(f(y) − f(x) − c(x, y))_+², the L2-regularised
dual of optimal transport (Seguy et al. 2018) that WAIL (Xiao et al. 2019) adopts; with
f = −d its argument is d(x) − d(y) − c(x, y). We square the POSITIVE PART only: the
conjugate of the L2 penalty ε‖π‖² over NONNEGATIVE transport plans π ≥ 0 is t_+²/(4ε), so
only violations of the 1-Lipschitz constraint f(y) − f(x) ≤ c(x, y) are penalised; without
"+" Ω would also pull every pair's gap up to exactly c(x, y), a different objective. (MILD²'s
Eq. 6 prints the bracket without "+"; we follow the OT derivation. We could only read
WAIL's abstract through our search tools, so this follows the derivation, not their text.)
Ω's expectation runs over the product ρ_G × ρ_E: we use all B × B pairs of the two
batches. c(x, y) is the Euclidean distance between the discriminator's inputs: with
global dependencies (d^k reads the whole joint transition) between the joint inputs
[o^{1:N}, feat(a^{1:N})]; for MILD²-GD (d^k reads agent k's input only) between agent k's
own [o^k, feat(a^k)] (feat: one-hot / clipped raw actions; agent ids, equal in x and y,
contribute nothing). We average over agents k where Eq. 6 sums (scale-free in N).
Lipschitz control is also architectural (L2 attention, spectral norm everywhere, see
`teamsift.nets.transformer_discriminator`).

Our choices where the paper is silent (its appendix is not in our copy): discriminator
n_block 1, n_embd 64, n_head 1 like the generator; Adam lr 5e-4 (the paper's one lr);
K = 5 steps of 512 + 512 rows per iteration (one iteration = one MAT PPO update of
`MATConfig`'s rollout); ε = 0.5; individual rewards r^k per agent (the generator has one
value per agent); the environment's reward plays no part. The number of iterations is the
generator's `num_updates` (its total_timesteps). Expert decisions weighted by a run's
`weights` count by their weight in E_E[d^k] and, as the y side of the pairs, in Ω.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from teamsift.algos import adversarial
from teamsift.checks import require_choice, require_non_negative, require_positive
from teamsift.collect import mat as mat_ppo
from teamsift.collect.onpolicy import run_config
from teamsift.data import Dataset
from teamsift.engine import Learner, RunConfig, fit
from teamsift.envs.base import Env, EnvSpec
from teamsift.nets.mat import MATPolicy
from teamsift.nets.transformer_discriminator import (
    TransformerDiscriminatorConfig, agent_inputs, init_transformer_discriminator, transformer_discriminator_logits,
    with_power_iteration,
)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MILD2Config:
    """MILD²'s hyperparameters; `generator` is the MAT PPO config (paper defaults)."""

    # MAT PPO: n_block 1, n_embd 64, n_head 1, lr 5e-4, 15 epochs, γ 0.99, λ 0.95 (MATConfig's defaults)
    generator: mat_ppo.MATConfig = mat_ppo.MATConfig()
    global_dependencies: bool = True  # False: MILD²-GD (independent per-agent discriminator)
    disc_n_block: int = 1
    disc_n_embd: int = 64
    disc_n_head: int = 1
    disc_agent_ids: bool = True
    disc_layer_norm: bool = True
    disc_l2_value: str = "free"  # L2 attention's value map: "free" (the paper's X W_V) | "kim"
    disc_lr: float = 5e-4
    disc_steps: int = 5  # K per iteration
    disc_batch_size: int = 512
    epsilon: float = 0.5  # ε of Ω
    reward_scale: float = 1.0  # multiplies r^k for PPO
    agent_rewards: str = "individual"  # "individual": r^k per agent | "mean": (1/N) Σ_k r^k for every agent
    histogram_bins: int = 20
    reward_range: tuple[float, float] = (0.0, 6.0)  # the histograms' bins cover this interval of r

    def __post_init__(self):
        require_choice(self, "agent_rewards", adversarial.AGENT_REWARDS)
        require_choice(self, "disc_l2_value", ("free", "kim"))
        require_positive(self, ("epsilon", "disc_lr", "disc_batch_size", "reward_scale", "histogram_bins",
                                "disc_n_block", "disc_n_embd", "disc_n_head"))
        require_non_negative(self, ("disc_steps",))
        if not self.reward_range[0] < self.reward_range[1]:
            raise ValueError(f"MILD2Config.reward_range: expected (low, high) with low < high, "
                             f"got {self.reward_range!r}")

    @property
    def loop(self) -> adversarial.AdversarialConfig:
        return adversarial.AdversarialConfig(self.disc_steps, self.disc_batch_size, self.histogram_bins)


def config_for(generator: dict | None = None, **fields) -> MILD2Config:
    """MILD2Config with `MATConfig(**generator)` as its generator."""
    return MILD2Config(generator=mat_ppo.MATConfig(**(generator or {})), **fields)


# --- discriminator ---------------------------------------------------------------------------

def disc_config(config: MILD2Config, spec: EnvSpec) -> TransformerDiscriminatorConfig:
    return TransformerDiscriminatorConfig.for_spec(
        spec, n_block=config.disc_n_block, n_embd=config.disc_n_embd, n_head=config.disc_n_head,
        agent_ids=config.disc_agent_ids, global_dependencies=config.global_dependencies,
        layer_norm=config.disc_layer_norm, l2_value=config.disc_l2_value)


def mild2_reward(logits: Array) -> Array:
    """r = −log σ(d) = softplus(−d) ∈ (0, ∞): decreasing in d, so (d low on expert data)
    expert-like transitions earn the higher reward; log 2 at d = 0."""
    return jax.nn.softplus(-logits)


def pair_distances(net: TransformerDiscriminatorConfig, generator: dict, expert: dict) -> Array:
    """c(x_i, y_j) for every generator row i and expert row j: [N, Bx, By] (one matrix per
    agent k, the distance between the inputs d^k reads; identical across k with global
    dependencies). Euclidean; a constant of the data (no gradient)."""
    def features(batch):
        o, a = agent_inputs(net, batch["obs"], batch["actions"])
        f = jnp.concatenate([o, a], axis=-1)  # [B, N, F]
        if net.global_dependencies:
            f = jnp.broadcast_to(f.reshape(f.shape[0], 1, -1), (f.shape[0], net.num_agents, f.shape[1] * f.shape[2]))
        return jnp.moveaxis(f, 1, 0)  # [N, B, F']

    fx, fy = features(generator), features(expert)
    sq = (jnp.sum(fx**2, -1)[:, :, None] + jnp.sum(fy**2, -1)[:, None, :] - 2.0 * fx @ jnp.swapaxes(fy, -1, -2))
    return jax.lax.stop_gradient(jnp.sqrt(jnp.maximum(sq, 0.0) + 1e-12))


def wasserstein_loss(d_expert: Array, d_generator: Array, distances: Array, epsilon: float,
                     expert_weight: Array | None = None) -> tuple[Array, dict]:
    """L_D = (1/N) Σ_k ( E_E[d^k] − E_G[d^k] + (1/4ε) E_{x,y}[(d^k(x) − d^k(y) − c(x,y))_+²] ).

    d_expert [By, N], d_generator [Bx, N], distances [N, Bx, By]. Minimising it drives d
    down on expert rows and up on generator rows (d = −critic, see the module doc), with
    the gap of every (generator, expert) pair held to c(x, y) by the positive-part penalty.
    `expert_weight` [By, N] (optional): E_E and the expert side of E_{x,y} become weighted
    means (Σ w·… / Σ w)."""
    if expert_weight is None:
        gap = jnp.mean(d_expert) - jnp.mean(d_generator)
        excess = d_generator.T[:, :, None] - d_expert.T[:, None, :] - distances  # [N, Bx, By]: f(y) − f(x) − c
        penalty = jnp.mean(jnp.maximum(excess, 0.0) ** 2) / (4.0 * epsilon)
    else:
        weight = jnp.broadcast_to(expert_weight, d_expert.shape)
        total = jnp.maximum(jnp.sum(weight), 1e-8)
        gap = jnp.sum(d_expert * weight) / total - jnp.mean(d_generator)
        excess = d_generator.T[:, :, None] - d_expert.T[:, None, :] - distances
        pair_weight = weight.T[:, None, :]  # [N, 1, By]
        penalty = (jnp.sum(jnp.maximum(excess, 0.0) ** 2 * pair_weight) / (d_generator.shape[0] * total)
                   / (4.0 * epsilon))
    stats = {
        "wasserstein": -gap,  # E_G[d] − E_E[d]: the W1 estimate, > 0 once expert rows score lower
        "lipschitz_penalty": penalty,
        "violation_frac": jnp.mean(excess > 0),
        "pair_accuracy": jnp.mean(d_generator.T[:, :, None] > d_expert.T[:, None, :]),  # batch AUC
    }
    return gap + penalty, stats


@functools.lru_cache(maxsize=None)
def make_discriminator(config: MILD2Config, spec: EnvSpec) -> adversarial.Discriminator:
    """MILD²'s discriminator in the loop's protocol (score = logit d, low on expert data;
    reward = −log σ(d)). Its optimiser also refreshes the spectral-norm vectors."""
    net = disc_config(config, spec)

    def score(variables, batch):
        return transformer_discriminator_logits(net, variables, batch["obs"], batch["actions"])

    def loss(variables, expert, generator, key):
        del key  # deterministic
        return wasserstein_loss(score(variables, expert), score(variables, generator),
                                pair_distances(net, generator, expert), config.epsilon, expert.get("weight"))

    return adversarial.Discriminator(
        init=lambda key: init_transformer_discriminator(net, key),
        score=score,
        reward=lambda variables, batch: mild2_reward(score(variables, batch)),
        loss=loss,
        optimizer=with_power_iteration(optax.adam(config.disc_lr)),
        reward_range=tuple(config.reward_range),
    )


# --- generator -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def mat_generator(config: mat_ppo.MATConfig, env: Env, reward_scale: float = 1.0,
                  agent_rewards: str = "individual") -> adversarial.Generator:
    """The Multi-Agent Transformer (`teamsift.collect.mat`) as the loop's generator: rollout
    once (the environment's reward is discarded), learn by PPO on the discriminator's
    per-agent rewards r^k [L, N, A] (×reward_scale; "mean": their agent mean for all)."""
    rollout = mat_ppo.make_rollout(config, env)
    learn = mat_ppo.make_learn(config, env)
    net = mat_ppo.net_config(config, env)
    num_agents = env.spec.num_agents

    def do_rollout(ts, key):
        ts, traj = rollout(ts, key)
        batch = {"obs": traj.obs, "state": traj.state, "actions": traj.actions, "avail": traj.avail}
        stats = {"return_sum": jnp.sum(traj.episode_return), "episodes": jnp.sum(traj.done).astype(jnp.float32)}
        return ts, traj, batch, stats

    def do_learn(ts, traj, reward, key):
        if agent_rewards == "mean":
            reward = jnp.broadcast_to(adversarial.team_reward(reward, "mean")[..., None], reward.shape)
        reward = (reward_scale * reward).astype(jnp.float32).reshape(traj.value.shape[:2] + (num_agents,))
        return learn(ts, traj._replace(reward=reward), key)

    return adversarial.Generator(
        init=lambda key: mat_ppo.init_state(config, env, key),
        rollout=do_rollout,
        learn=do_learn,
        export=lambda ts: ts.params,
        policy=lambda params, deterministic=False: MATPolicy(params, net, deterministic=deterministic),
        net=net,
        steps_per_iteration=config.steps_per_update,
    )


def make_generator(config: MILD2Config, env: Env) -> adversarial.Generator:
    return mat_generator(config.generator, env, config.reward_scale, config.agent_rewards)


# --- the learner -----------------------------------------------------------------------------

def learner_name(config: MILD2Config) -> str:
    return "mild2" if config.global_dependencies else "mild2_gd"


@functools.lru_cache(maxsize=None)
def make_learner(config: MILD2Config, env: Env) -> Learner:
    """MILD² (MILD²-GD without global dependencies) as the engine's learner (`adversarial.make_learner`)."""
    return adversarial.make_learner(learner_name(config), make_generator(config, env),
                                    make_discriminator(config, env.spec), config.loop, adversarial.expert_arrays)


def learner(config: MILD2Config, dataset: Dataset, env: Env) -> Learner:
    """MILD² imitating `dataset` in `env` (the dataset must come from an environment of env's shape)."""
    adversarial.check_compatible(dataset, env)
    return make_learner(config, env)


# --- training --------------------------------------------------------------------------------

def train(config: MILD2Config, dataset_or_path, env: Env, key: Array, progress: bool = True,
          num_seeds: int = 1, run: RunConfig | None = None) -> adversarial.AdversarialResult:
    """Imitate the expert dataset with MILD² (MILD²-GD with global_dependencies=False)
    through `teamsift.engine.fit`; seeds train as one vmapped program.

    Iterations: config.generator.num_updates (its total_timesteps), with
    config.generator.num_checkpoints evenly spaced generator checkpoints (0 = untrained).
    `run` (optional) gives the engine's schedule; its updates must be
    config.generator.num_updates. Returns an `AdversarialResult`: `.policy(i, deterministic=…)`
    is a `MATPolicy` for `teamsift.evaluate` (the result's default is deterministic; the
    PPO generator trained stochastic, `deterministic=False` evaluates what it trained);
    `.logs` holds the diagnostics per log row (disc_loss, wasserstein, lipschitz_penalty,
    pair_accuracy, generator/expert reward mean and variance, reward_histogram [L, bins]
    over `histogram_edges`, return, …), `.reward_histograms()` picks a few points of training.
    """
    dataset = adversarial.as_dataset(dataset_or_path)
    mild2 = learner(config, dataset, env)
    gen = config.generator
    kind = "MILD²" if config.global_dependencies else "MILD²-GD"
    run = run_config(gen.num_updates, gen.updates_per_checkpoint, run, seeds=num_seeds, progress=progress,
                     label=f"{kind} {env.spec.env_id}", what="MILD2Config.generator")
    result = fit(mild2, dataset, key, run, env=env, record={"hyperparameters": config})
    return adversarial.AdversarialResult.from_fit(result, make_generator(config, env),
                                                  make_discriminator(config, env.spec), config.loop)
