"""SIT: Shared Individual Trajectories (Tian et al., "Learning from Good Trajectories in
Offline Multi-Agent RL", AAAI 2023; Algorithm 1, eqs. 8–10, Tables 10–11; methods.md §4).

    Stage I   ARDNEM (`teamsift.value.ardnem`, eqs. 1–6): r̂_i^{t,k}, û_i^{t,k}, p̂_i^k
    Stage II  DPER (`teamsift.data.dper`, eq. 7; the run's sampler `teamsift.data.DPER`): one
              sum-tree buffer B_J of individual trajectories (k, j) per agent type J,
              P_J(k, j) ∝ exp(p̃_j^k / α)
    Stage III for update l = 1 … L_AC:                          (the engine: lax loops inside jit)
        for every agent i (type J): draw B individual trajectories (k, j) ~ P_J(B_J)
            — agent j's data of episode k, used to train agent i: the (·)_{i(j)} of eqs. 9–10
        critic (eq. 8): e_local = f_local(τ_j^t, a),  τ_j^t = (o_j^t, a_j^{t−1})
                        e_global = GAT(o_1^t … o_N^t)_j  (node j of the fully connected
                                   graph over episode k's observations, `nets.gat`)
                        Q_i(τ_j, a, o_{−j}) = f_agg([e_local; e_global])
        critic loss (eq. 9):
            y = r̂_j^t + γ Q'_i(τ_j^{t+1}, a_j^{t+1}, o_{−j}^{t+1})            target network Q'
            for t = 0 … T−1:  L_Q = E_B[ η/û_j^t · (y_t − Q_i(τ_j^t, a_j^t, o_{−j}^t))² ]
                              φ ← RMSProp(∇L_Q, lr 1e-4), gradients clipped to norm 10
        actor loss (eq. 10, CRR's filter):
            A = Q_i(τ_j, a_j) − Σ_a π_i(a|τ_j) Q_i(τ_j, a)            (with the updated critic)
            L_π = −E[ η/û_j^t · f(A) · log π_i(a_j^t | τ_j^t) ],  f(A) = min(|B|·exp(A/β)/Z, 20)
                  Z = Σ_b exp(A_b/β) over agent i's B trajectories at the same step
            θ ← RMSProp(∇L_π, lr 5e-4), gradients clipped to norm 10
        if l mod d = 0:  Q' ← Q                                        d = 100
    act: a_i = argmax_{a ∈ avail} π_i(a|τ_i)

    continuous actions (SIT's MAMuJoCo runs; `learner` dispatches on dataset.spec.discrete):
        critic:  Q_i(τ_j, a, o_{−j}) = f_agg([f_local([τ_j; a]); e_global]),  a ∈ [−1, 1]^D an input
        actor:   π_i(·|τ_j) = N(μ_i(τ_j), diag σ_i²),  μ_i = tanh(agent network),  log σ_i learned
        eq. 9:   y = r̂_j^t + γ Q'_i(τ_j^{t+1}, a_j^{t+1}, o_{−j}^{t+1})      (μ_i(τ_j^T) past a time-limit end)
        eq. 10:  A = Q_i(τ_j, a_j) − (1/m) Σ_{k=1}^m Q_i(τ_j, a_k),  a_k = clip(μ_i + σ_i ε_k, −1, 1)
                 L_π = −E[ η/û_j^t · f(A) · log N(a_j^t; μ_i(τ_j^t), σ_i²) ]     (f as above)
        act:     a_i = μ_i(τ_i)

The three stages as a pipeline runs them (Stage I's ensemble and the DPER buffers are
shared by all seeds of Stage III):

    stage1 = ardnem.result(ARDNEMConfig(), fit(ardnem.learner(ARDNEMConfig(), ds), ds, key_1,
                                               RunConfig(updates=20_000)), ds)
    result = fit(sit.learner(config, ds), ds, key_3, RunConfig(updates=15_000, seeds=5),
                 sampler=DPER(DPERConfig(), priorities=stage1.priority),
                 inputs=sit.stage_inputs(config, ds, stage1))

Defaults are SIT's Table 11 (agent learning; here and in `DPERConfig`) and Table 10
(ARDNEM, `ARDNEMConfig`): actor (agent network) lr 5e-4, critic lr 1e-4, RMSProp,
γ = 0.99, 15 000 updates (Stage I: 20 000; the registry's budgets), target
("parameters") update interval d = 100, gradient clipping 10, critic hidden 32, RNN
hidden 64, ReLU, batch 32, α = 0.2, β = 0.1, η = 1, priorities rescaled to [0, 20].

Ablations (SIT Figure 4(a)):
  * decomposition=False ("w/o decomp"): the critic of every agent learns from the team
    reward r_tot, Stage I is skipped, every sample weighs η (no û) and the type-wise
    buffers are sampled uniformly (the `Uniform` sampler: the trajectories of a type are
    still shared);
  * use_gat=False ("w/o GAT"): e_global is a linear embedding of the concatenated
    observations o_1 … o_N (slot order) instead of the GAT aggregation;
  * Stage I with ARDNEMConfig(attention=False) ("w/o attention", λ ≡ 1) or
    ARDNEMConfig(ensemble_size=1) ("w/o ensemble": û ≡ 0, so every sample weighs η);
  * the DPER sampler's DPERConfig(...) for α, the rescaling, and per-slot buffers (no
    sharing; `Uniform(group_by="slot")` w/o decomposition).

Choices the paper leaves open, and where they come from:
  * eq. 10 as printed multiplies the filter by Q_i|_{a=a_j}; CRR (which the text says
    is plugged in) and Algorithm 1's "actor networks π_i" make it log π_i(a_j|τ_j): we
    use log π. Its filter e^{Q_i/β}/Z is CRR's, so (ours, as CRR and ICQ's reference)
    Q_i enters as the advantage A = Q_i − Σ_a π_i Q_i (`advantage_baseline=False`: Q_i
    itself). Z normalises within the mini-batch: over the B trajectories of agent i at
    each time step, as ICQ's batch softmax does (`offline_common.batch_softmax_weights`),
    so the weights average to 1 there; the weight is then clipped at 20 as in CRR (ours
    for the softmax form). `filter="exp"` is CRR's min(exp(A/β), 20), `filter="binary"`
    CRR's 1[A > 0];
  * û → 0 makes η/û explode (and û ≡ 0 without an ensemble): û is floored at
    `uncertainty_floor` × the dataset's mean û (ours, 0.1: no sample weighs more than
    10× one whose û is the mean); when every û is 0 the weights are η;
  * the networks are parameter-shared across agents with a one-hot id of the trained
    agent i appended (pymarl's convention; ours) — training "agent i" on agent j's data
    feeds j's observations with i's id. The actor is the GRU-64 agent network of the
    other learners (Table 11 "RNN hidden dimension"), unrolled over the individual
    trajectory; f_local and f_agg are two-layer MLPs of width 32, the GAT has one head
    of width 32 and LeakyReLU slope 0.2 (GAT's);
  * "batch size 32": 32 individual trajectories (whole episodes) per agent per update;
  * (ours) Stage III's rewards (r̂, or the team reward w/o decomp) are multiplied by
    `reward_scale`; by default (None) `oc.smac_reward_scale` of the data, which brings
    returns towards the scale PyMARL gives SMAC (best return 20), the scale β = 0.1 was
    tuned at: the filter's weights e^{A/β} are one-hot when advantages are 10× larger and
    all alike when they are 10× smaller. `reward_scale_rule` says how: "smac" (the
    default) brings the environment's best return to 20 where it is known (SMAX: × 10,
    as PyMARL does SMAC's), else as "largest", which brings the data's largest return
    down to 20 where it exceeds 20 (PP) and leaves smaller returns alone (CN: 1);
  * the critic target uses the data's next action a_j^{t+1} (Algorithm 1, line 19);
    after the last step of an episode cut by the time limit there is none, so the next
    value is Σ_a π_i(a|τ_j^T) Q'_i(τ_j^T, a) under the current actor (as our ICQ);
    terminal steps do not bootstrap (`bootstrap_truncated=False`: no time-limit step does);
  * the critic takes one gradient step per time step of the batch, in order, all towards
    targets computed once before them (`critic_step_per_time_step=True`) — the loop of
    ICQ's reference learner, the PyMARL code base SIT's Table 11 shares with ICQ (the paper
    also reports Stage III costing about what ICQ costs). One step on the whole batch
    (False) learned almost nothing about actions in 1,500 updates on CN_3ls3l: its greedy
    action agreed with "move towards the nearest landmark" no more often than chance;
  * the actor step uses the critic after its steps of the same update (as ICQ);
  * Stages I–II run once and are shared by all seeds; only Stage III is vmapped;
  * (ours) per-decision weights of a valuation (`fit(..., weights=...)`) multiply η/û
    (`arrays["weight"]`), so eqs. 9–10 weigh agent j's decisions by both.

Continuous actions (SIT's MAMuJoCo runs; the paper gives eqs. 8–10 only in the discrete
notation, so every choice below is ours unless it names its source):
  * the critic takes the action as an input of f_local, e_local = f_local([τ_j; a]) with
    τ_j = (o_j, a_j^{t−1}, id_i) and a^{t−1} the raw action vector (zeros at t = 0); one
    scalar Q per (state, action) pair, scored for several candidate actions at once
    (`GATCritic(..., actions [..., K, D])`); e_global and f_agg are the discrete critic's;
  * the actor is the same GRU-64 (or MLP) agent network with a tanh mean head μ_i ∈
    [−1, 1]^D and a learned, state-independent log σ (`AgentNetConfig(learned_std=True)`,
    initial log σ = −0.5): the Gaussian that `NetworkPolicy` acts with (mean when
    deterministic, clip(μ + σε, −1, 1) when not), so evaluation is unchanged. log π is the
    Gaussian density at the data's action over the agent's real action dimensions (MaBrax
    pads narrower agents with zeros; `nets.ops.gaussian_log_density`), ignoring the
    clipping's mass at the bounds; log σ is kept in [log_std_min, log_std_max] = [−5, 2]
    by clipping after every actor step;
  * eq. 10's baseline Σ_a π Q becomes CRR's sample estimate (1/m) Σ_k Q(τ_j, a_k) with
    m = `action_samples` = 4 actions a_k = clip(μ + σε_k, −1, 1) of the current actor (no
    gradient through them); the filter (softmax / exp / binary), its clip and η/û are the
    discrete path's;
  * the critic target uses the data's next action a_j^{t+1}; after the last step of an
    episode cut by the time limit, the current actor's mean μ_i(τ_j^T) (as TD3+BC's
    deterministic target, without its smoothing noise);
  * the data's actions are clipped to [−1, 1] (the actor's range, as our TD3+BC does);
  * acting uses the policy mean (`sample_actions=True`: the learned Gaussian).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from teamsift.algos import offline_common as oc
from teamsift.checks import require_choice, require_non_negative, require_positive, require_unit_interval
from teamsift.data import to_device
from teamsift.data.views import gather_steps
from teamsift.engine import Learner
from teamsift.nets import MLP, AgentNetConfig, NetworkPolicy, init_params, masked_logits, with_agent_ids
from teamsift.nets.gat import GATLayer
from teamsift.nets.ops import gaussian_log_density, masked_mean

FILTERS = ("softmax", "exp", "binary")

#: Step fields Stage III reads (the state is not one: SIT's critic sees the observations).
STAGE3_FIELDS = ("obs", "avail", "actions", "terminated", "truncated", "final_obs", "final_avail")
#: ... for continuous actions (no avail masks).
STAGE3_CONTINUOUS_FIELDS = ("obs", "actions", "terminated", "truncated", "final_obs")


@dataclasses.dataclass(frozen=True)
class SITConfig:
    # Actor: the agent network (Table 11: RNN hidden 64, agent network lr 5e-4).
    hidden: tuple[int, ...] = (64,)  # GRU 64 → linear head
    recurrent: bool = True
    agent_ids: bool = True  # (ours) one-hot id of the trained agent, in actor and critic
    actor_learning_rate: float = 5e-4  # Table 11
    # Critic (eq. 8; Table 11: critic hidden 32, critic lr 1e-4).
    critic_hidden: int = 32  # width of f_local, f_agg and the GAT (Table 11 "Mixer/Critic hidden")
    use_gat: bool = True  # False: "w/o GAT" ablation (concatenated observations)
    gat_heads: int = 1  # (ours) eq. 8 has one W_1, W_2
    gat_negative_slope: float = 0.2  # (ours) LeakyReLU slope of GAT (Veličković et al.)
    critic_last_action: bool = True  # τ_i = (o_i, a_i^{t−1}) (SIT after Peng et al. 2021)
    critic_learning_rate: float = 1e-4  # Table 11
    critic_step_per_time_step: bool = True  # ICQ's reference loop: one critic step per time step (False: one)
    # Losses (eqs. 9–10).
    beta: float = 0.1  # β, CRR temperature (Table 11)
    eta: float = 1.0  # η, uncertainty weight (Table 11)
    gamma: float = 0.99  # Table 11
    filter: str = "softmax"  # eq. 10's exp(·/β)/Z; "exp" / "binary": CRR's other filters
    advantage_baseline: bool = True  # (ours, CRR) A = Q − Σ_a π Q; False: Q as printed in eq. 10
    weight_clip: float = 20.0  # CRR's clip of the filter weight
    uncertainty_floor: float = 0.1  # (ours) û ≥ this × mean û before η/û
    reward_scale: float | None = None  # (ours) multiplies Stage III's rewards; None: `oc.smac_reward_scale`
    reward_scale_rule: str = "smac"  # (ours) how None is read: `oc.REWARD_SCALE_RULES`
    # Optimisation (Table 11).
    optimizer: str = oc.OPTIMIZER  # RMSProp (`nets.optim.OPTIMIZERS`; PyMARL's: "rmsprop_pymarl")
    max_grad_norm: float = 10.0
    batch_size: int = 32  # individual trajectories per agent per update
    target_update_interval: int = 100  # d ("Parameters update interval")
    bootstrap_truncated: bool = True  # (PyMARL) time-limit ends bootstrap from the final observation
    sample_actions: bool = False  # True: act by sampling π instead of its argmax (continuous: its mean)
    # Continuous actions only (Gaussian actor, CRR's sampled advantage).
    action_samples: int = 4  # m: a_k ~ π(·|τ_j), k = 1 … m, in A = Q(a_j) − (1/m) Σ_k Q(a_k) (CRR)
    log_std_min: float = -5.0  # (ours) the learned log σ is kept in [log_std_min, log_std_max]
    log_std_max: float = 2.0
    # Ablation (Stage I's ARDNEMConfig and the DPER sampler's DPERConfig are the pipeline's).
    decomposition: bool = True  # False: "w/o decomp" (team reward, uniform sampling, no Stage I)

    def __post_init__(self):
        require_positive(self, ("critic_hidden", "gat_heads", "beta", "eta", "gamma", "actor_learning_rate",
                                "critic_learning_rate", "max_grad_norm", "batch_size", "target_update_interval",
                                "weight_clip", "action_samples"))
        if not self.log_std_min < self.log_std_max:
            raise ValueError(f"SITConfig.log_std_min: expected less than log_std_max={self.log_std_max!r}, got "
                             f"{self.log_std_min!r}")
        require_unit_interval(self, ("gamma",))
        require_choice(self, "filter", FILTERS)
        require_choice(self, "reward_scale_rule", oc.REWARD_SCALE_RULES)
        oc.require_optimizer(self)
        if self.reward_scale is not None:
            require_positive(self, ("reward_scale",))
        require_non_negative(self, ("uncertainty_floor",))


# --- the critic of eq. 8 --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CriticConfig:
    num_agents: int
    obs_dim: int
    num_actions: int
    hidden: int = 32
    use_gat: bool = True
    gat_heads: int = 1
    negative_slope: float = 0.2
    last_action: bool = True
    agent_ids: bool = True
    discrete: bool = True  # False: num_actions is the action width D, and a is a vector input

    @property
    def local_dim(self) -> int:
        """Width of the local input (o_j, a_j^{t−1}, id_i) before the action is appended
        (a^{t−1} is a one-hot of nA or a vector of D: the same width)."""
        return self.obs_dim + (self.num_actions if self.last_action else 0) + (self.num_agents if self.agent_ids
                                                                                else 0)


def critic_config(config: SITConfig, spec) -> CriticConfig:
    return CriticConfig(num_agents=spec.num_agents, obs_dim=spec.obs_dim, num_actions=spec.num_actions,
                        hidden=config.critic_hidden, use_gat=config.use_gat, gat_heads=config.gat_heads,
                        negative_slope=config.gat_negative_slope, last_action=config.critic_last_action,
                        agent_ids=config.agent_ids, discrete=bool(spec.discrete))


class GATCritic(nn.Module):
    """Q_i(τ_j, a, o_{−j}) for K candidate actions: (local [..., L], nodes [..., N, O],
    self index [...], actions [..., K, D]) → [..., K].

    e_global = GAT(nodes)[self index] (eq. 8; only the self node's attention row is
    computed) or, w/o GAT, a linear embedding of the concatenated nodes;
    e_local = f_local([local; a]) for each candidate a; Q = f_agg([e_local; e_global]).
    Discrete actions are one-hots (D = nA): `actions` [..., 1, nA] scores one action;
    without `actions` the candidates are every action (K = nA): one output per action."""

    config: CriticConfig

    @nn.compact
    def __call__(self, local, nodes, self_index, actions=None):
        c = self.config
        if c.use_gat:
            e_global, _ = GATLayer(c.hidden, c.gat_heads, c.negative_slope, name="gat")(
                nodes, query=self_index.astype(jnp.int32))
        else:
            e_global = nn.Dense(c.hidden, name="joint")(nodes.reshape(nodes.shape[:-2] + (-1,)))
        if actions is None:
            if not c.discrete:
                raise ValueError("GATCritic: continuous critics need the actions to score")
            n_a = c.num_actions
            actions = jnp.broadcast_to(jnp.eye(n_a, dtype=local.dtype), local.shape[:-1] + (n_a, n_a))
        lead = actions.shape[:-1]
        x = jnp.concatenate([jnp.broadcast_to(local[..., None, :], lead + local.shape[-1:]),
                             actions.astype(local.dtype)], axis=-1)
        e_local = MLP((c.hidden,), c.hidden, activate_final=True, name="f_local")(x)
        e = jnp.concatenate([e_local, jnp.broadcast_to(e_global[..., None, :], lead + e_global.shape[-1:])], axis=-1)
        return MLP((c.hidden,), 1, name="f_agg")(e)[..., 0]


def init_critic(critic: CriticConfig, key: jax.Array):
    a = critic.num_agents
    actions = None if critic.discrete else jnp.zeros((a, 1, critic.num_actions), jnp.float32)
    return GATCritic(critic).init(key, jnp.zeros((a, critic.local_dim), jnp.float32),
                                  jnp.zeros((a, a, critic.obs_dim), jnp.float32), jnp.zeros((a,), jnp.int32), actions)


def critic_inputs(critic: CriticConfig, obs: jax.Array, last_actions: jax.Array, has_last: jax.Array) -> jax.Array:
    """The local input [..., A, L]: own observation, a^{t−1} (one-hot if discrete; zeros at
    t = 0), id."""
    parts = [obs]
    if critic.last_action:
        last = (jax.nn.one_hot(last_actions, critic.num_actions, dtype=obs.dtype) if critic.discrete
                else last_actions.astype(obs.dtype))
        parts.append(last * has_last[..., None])
    local = jnp.concatenate(parts, axis=-1)
    return with_agent_ids(local, critic.num_agents) if critic.agent_ids else local


def critic_values(critic: CriticConfig, params, batch: dict, steps: slice = slice(None),
                  actions: jax.Array | None = None) -> jax.Array:
    """Q_i(τ_j^t, a, o^t) over the batch's steps t in `steps` (of T + 1): [B, T', A, nA] for
    every discrete action, or [B, T', A, K] for the K candidate actions [B, T', A, K, D]."""
    local = critic_inputs(critic, batch["obs_ext"][:, steps], batch["last_actions_ext"][:, steps],
                          batch["has_last_ext"][:, steps])
    return GATCritic(critic).apply(params, local, batch["nodes_ext"][:, steps], batch["self_index_ext"][:, steps],
                                   actions)


def taken_values(critic: CriticConfig, params, local, nodes, self_index, actions) -> jax.Array:
    """Q_i(τ_j, a_j, o_{−j}) of one action per entry (the data's): discrete actions [...]
    are scored as their one-hot alone, continuous ones [..., D] as themselves → [...]."""
    if critic.discrete:
        actions = jax.nn.one_hot(actions, critic.num_actions, dtype=local.dtype)
    return GATCritic(critic).apply(params, local, nodes, self_index, actions[..., None, :])[..., 0]


def at_steps(x: jax.Array, steps: jax.Array) -> jax.Array:
    """x [B, T', A, ...] at step steps[b, i] of each trajectory → [B, A, ...]."""
    index = steps.reshape(steps.shape[:1] + (1,) + steps.shape[1:] + (1,) * (x.ndim - 3))
    return jnp.take_along_axis(x, index.astype(jnp.int32), axis=1)[:, 0]


def final_step_values(critic: CriticConfig, params, batch: dict) -> jax.Array:
    """Q_i(τ_j^L, a, o^L) [B, A, nA] for every discrete action at each trajectory's final
    observation (ext index L = its length)."""
    final = jnp.sum(batch["mask"], axis=1)  # [B, A]
    local = critic_inputs(critic, at_steps(batch["obs_ext"], final), at_steps(batch["last_actions_ext"], final),
                          at_steps(batch["has_last_ext"], final))
    return GATCritic(critic).apply(params, local, at_steps(batch["nodes_ext"], final),
                                   at_steps(batch["self_index_ext"], final))


# --- the two losses (pure, on values) -------------------------------------------------------

def uncertainty_weights(uncertainty, eta: float, floor: float) -> np.ndarray:
    """η / max(û, floor · mean û) (eqs. 9–10), float32; η everywhere when every û is 0."""
    u = np.asarray(uncertainty, np.float64)
    scale = float(u.mean()) if u.size else 0.0
    if not scale > 0:
        return np.full(u.shape, eta, np.float32)
    return (eta / np.maximum(u, max(floor * scale, 1e-12))).astype(np.float32)


def td_targets(reward: jax.Array, next_value: jax.Array, continues: jax.Array, gamma: float) -> jax.Array:
    """y = r̂ + γ·κ·Q'(next) (eq. 9); κ = 0 where the step does not bootstrap."""
    return reward + gamma * continues.astype(reward.dtype) * next_value


def weighted_td_loss(q_taken: jax.Array, targets: jax.Array, weights: jax.Array, mask: jax.Array) -> jax.Array:
    """Eq. 9 on values: Σ mask·w·(y − Q)² / Σ mask, w = η/û."""
    return masked_mean(weights * (targets - q_taken) ** 2, mask)


def crr_filter(advantage: jax.Array, mask: jax.Array, kind: str, beta: float, clip: float) -> jax.Array:
    """f(A) of eq. 10 on [B, ...] values (0 where mask is False):
    softmax: |B|·softmax over the batch axis (0) of A/β at every other index (exp(A/β)/Z);
    exp: exp(A/β) (CRR); binary: 1[A > 0] (CRR). Every form is clipped at `clip`."""
    mask = jnp.broadcast_to(mask, advantage.shape)
    if kind == "softmax":
        weights = oc.batch_softmax_weights(advantage, mask, beta)
    elif kind == "exp":
        weights = jnp.exp(jnp.minimum(advantage / beta, jnp.log(clip)))
    elif kind == "binary":
        weights = (advantage > 0).astype(advantage.dtype)
    else:
        raise ValueError(f"filter: expected one of {FILTERS}, got {kind!r}")
    return jnp.where(mask, jnp.minimum(weights, clip), 0.0)


def filtered_bc_loss(log_pi_taken: jax.Array, filter_weights: jax.Array, weights: jax.Array,
                     mask: jax.Array) -> jax.Array:
    """Eq. 10 on values: −Σ mask·w·f(A)·log π(a|τ) / Σ mask, w = η/û."""
    return -masked_mean(weights * filter_weights * log_pi_taken, mask)


# --- batches of individual trajectories (drawn by the run's sampler) -------------------------

def gather_individual(data: dict, episode: jax.Array, source: jax.Array, max_length: int,
                      bootstrap_truncated: bool = True) -> dict:
    """Padded individual trajectories: for each (b, i), agent source[b, i]'s steps of
    episode[b, i], with every agent's observations of that episode as the GAT's nodes.

    Returns [B, T, A, ...] fields (T = max_length, A = the trained agents i):
        obs_ext, avail_ext [B, T+1, A, ·]  o_j^t for t < L, the final observation at L
                                          (no avail_ext for continuous actions)
        nodes_ext [B, T+1, A, N, O]       all N observations of the episode (same steps)
        self_index_ext [B, T+1, A]        j, the node of the trajectory's own agent
        last_actions_ext, has_last_ext [B, T+1, A]   a_j^{t−1} and t > 0
        actions, actions_next, reward (r̂_j), weight (η/û_j), mask, continues, has_next [B, T, A]
    Discrete actions are int32 [..., A]; continuous ones float32 [..., A, D], clipped to
    [−1, 1] (the actor's range).
    """
    b, a = episode.shape
    ep, src = episode.reshape(-1), source.reshape(-1)
    start, length = data["episode_start"][ep], data["episode_length"][ep]
    offs = jnp.arange(max_length, dtype=jnp.int32)
    mask = offs[None, :] < length[:, None]
    last = start + length - 1
    rows = jnp.minimum(start[:, None] + offs[None, :], last[:, None])
    steps = gather_steps(jnp, data, rows, jnp.broadcast_to(ep[:, None], rows.shape),
                         jnp.broadcast_to(last[:, None], rows.shape), mask)
    own = jax.vmap(lambda x, j: x[:, j])  # [M, T, A, ...] at slot j → [M, T, ...]
    nodes_ext = jnp.concatenate([steps["obs"][:, :1], steps["next_obs"]], axis=1)
    discrete = jnp.issubdtype(steps["actions"].dtype, jnp.integer)
    actions = own(steps["actions"], src)
    actions = actions.astype(jnp.int32) if discrete else jnp.clip(actions.astype(jnp.float32), -1.0, 1.0)
    stop = steps["terminated"] if bootstrap_truncated else steps["done"]
    fields = {
        "obs_ext": own(nodes_ext, src),
        "nodes_ext": nodes_ext,
        "self_index_ext": jnp.broadcast_to(src[:, None], (src.shape[0], max_length + 1)),
        "last_actions_ext": jnp.concatenate([jnp.zeros_like(actions[:, :1]), actions], axis=1),
        "has_last_ext": jnp.broadcast_to(jnp.arange(max_length + 1) > 0, (src.shape[0], max_length + 1)),
        "actions": actions,
        "actions_next": oc.next_step(actions),
        "reward": own(steps["reward"], src),
        "weight": own(steps["weight"], src),
        "mask": mask,
        "continues": mask & ~stop,
        "has_next": oc.next_step(mask),
    }
    if "avail" in steps:
        fields["avail_ext"] = own(jnp.concatenate([steps["avail"][:, :1], steps["next_avail"]], axis=1), src)
    # [B·A, T, ...] → [B, T, A, ...]: the trained agent i sits on the agent axis.
    return {k: jnp.swapaxes(v.reshape((b, a) + v.shape[1:]), 1, 2) for k, v in fields.items()}


def trajectory_batch(data: dict, episode: jax.Array, source: jax.Array, max_length: int,
                     bootstrap_truncated: bool = True) -> dict:
    """One Stage III batch from the drawn (episode [B, A], source slot [B, A]) of the
    sampler's `draw` (DPER: Algorithm 1, line 18), gathered (`gather_individual`)."""
    batch = gather_individual(data, episode, source, max_length, bootstrap_truncated)
    batch["episode"] = data["page_episode"][episode] if "page_episode" in data else episode  # (streamed pages)
    batch["source"] = source
    if "action_mask" in data:  # continuous: [A, D] real action dimensions of the trained agent i
        batch["action_mask"] = data["action_mask"]
    return batch


# --- Stage III update -------------------------------------------------------------------------

def policy_logits(actor: AgentNetConfig, params, obs: jax.Array, avail: jax.Array) -> jax.Array:
    """Masked logits [B, T, A, nA] of the actor unrolled over individual trajectories."""
    return masked_logits(oc.unroll(actor, params, obs), avail)


def critic_targets(actor, critic, actor_params, target_params, batch, config: SITConfig) -> jax.Array:
    """y of eq. 9 from the target critic at the data's next action a_j^{t+1}; after the
    last step of a truncated episode, Σ_a π_i(a|τ_j^T) Q'_i(τ_j^T, a) (ours)."""
    logits = policy_logits(actor, actor_params, batch["obs_ext"], batch["avail_ext"])
    return targets_from_logits(critic, logits, target_params, batch, config)


def targets_from_logits(critic: CriticConfig, logits_ext: jax.Array, target_params, batch, config: SITConfig):
    """`critic_targets` given the actor's masked logits [B, T + 1, A, nA]. Eq. 9 reads
    Q'(τ^{t+1}, a^{t+1}) alone, so only the data's next action is scored; every action
    (for Σ_a π Q') only at the final observation, the one step that uses it."""
    local, nodes, self_index = critic_fields(critic, batch, steps=slice(1, None))
    q_next = taken_values(critic, target_params, local, nodes, self_index, batch["actions_next"])
    final = jnp.sum(batch["mask"], axis=1)  # [B, A]: the final observation's ext index L
    pi_final = jax.nn.softmax(at_steps(logits_ext, final), axis=-1)
    q_final = final_step_values(critic, target_params, batch)
    expected = jnp.sum(pi_final * jnp.where(at_steps(batch["avail_ext"], final), q_final, 0.0), axis=-1)
    # `expected` is read where no next step exists: after the last step (t = L − 1, where it
    # is the final value) and on padding (where κ_t = 0 drops it).
    next_value = jnp.where(batch["has_next"], q_next, expected[:, None, :])
    return td_targets(batch["reward"], next_value, batch["continues"], config.gamma)


def critic_fields(critic: CriticConfig, batch: dict, steps: slice | None = None) -> tuple:
    """The critic's inputs at `steps` of the T + 1 (default 0 … T−1), each [B, T, A, ...]:
    (local input of τ_j, nodes o_1 … o_N, self index j)."""
    steps = slice(0, batch["actions"].shape[1]) if steps is None else steps
    local = critic_inputs(critic, batch["obs_ext"][:, steps], batch["last_actions_ext"][:, steps],
                          batch["has_last_ext"][:, steps])
    return local, batch["nodes_ext"][:, steps], batch["self_index_ext"][:, steps]


def fields_td_loss(critic_params, local, nodes, self_index, actions, targets, weights, mask,
                   critic: CriticConfig) -> jax.Array:
    """Eq. 9 on the critic's inputs (whole batch or one time step of it): it reads
    Q_i(τ_j^t, a_j^t) alone, so only the data's action is scored."""
    return weighted_td_loss(taken_values(critic, critic_params, local, nodes, self_index, actions), targets, weights,
                            mask)


def critic_loss(critic_params, batch, targets, critic: CriticConfig) -> jax.Array:
    """Eq. 9 on a whole batch, discrete or continuous actions."""
    return fields_td_loss(critic_params, *critic_fields(critic, batch), batch["actions"], targets, batch["weight"],
                          batch["mask"], critic)


def train_critic(critic_params, opt_state, batch, targets, critic: CriticConfig, optimizer, config: SITConfig):
    """Critic steps on one batch (one, or one per time step: `critic_step_per_time_step`).
    Returns (params, opt_state, mean loss)."""
    loss_fn = functools.partial(fields_td_loss, critic=critic)
    fields = critic_fields(critic, batch) + (batch["actions"], targets, batch["weight"], batch["mask"])
    critic_params, opt_state, _, loss = oc.critic_gradient_steps(loss_fn, critic_params, opt_state, optimizer, fields,
                                                                 config.critic_step_per_time_step)
    return critic_params, opt_state, loss


def actor_loss(actor_params, critic_params, batch, actor: AgentNetConfig, critic: CriticConfig,
               config: SITConfig) -> jax.Array:
    """Eq. 10 for the discrete actor (`logits_actor_loss` on its logits)."""
    max_length = batch["actions"].shape[1]
    logits = policy_logits(actor, actor_params, batch["obs_ext"][:, :max_length], batch["avail_ext"][:, :max_length])
    return logits_actor_loss(logits, critic_params, batch, critic, config)


def logits_actor_loss(logits, critic_params, batch, critic: CriticConfig, config: SITConfig) -> jax.Array:
    """Eq. 10 on the actor's masked logits [B, T (or T + 1: the last is unused), A, nA].
    The baseline Σ_a π Q needs every action's value; without it only a_j is scored."""
    max_length = batch["actions"].shape[1]
    log_pi = jax.nn.log_softmax(logits[:, :max_length], axis=-1)
    advantage = discrete_advantages(logits, critic_params, batch, critic, config)
    filter_weights = crr_filter(advantage, batch["mask"], config.filter, config.beta, config.weight_clip)
    return filtered_bc_loss(oc.taken(log_pi, batch["actions"]), filter_weights, batch["weight"], batch["mask"])


def discrete_advantages(logits, critic_params, batch, critic: CriticConfig, config: SITConfig) -> jax.Array:
    """What eq. 10's filter reads, [B, T, A] (no gradient): A = Q_i(τ_j, a_j) − Σ_a π_i(a|τ_j)
    Q_i(τ_j, a) from the actor's masked logits [B, T (or T + 1), A, nA], or Q_i(τ_j, a_j)
    itself with `advantage_baseline=False` (eq. 10 as printed)."""
    max_length = batch["actions"].shape[1]
    fields = critic_fields(critic, batch)
    if not config.advantage_baseline:
        return jax.lax.stop_gradient(taken_values(critic, critic_params, *fields, batch["actions"]))
    q = jax.lax.stop_gradient(GATCritic(critic).apply(critic_params, *fields))
    pi = jax.lax.stop_gradient(jax.nn.softmax(logits[:, :max_length], axis=-1))
    return oc.taken(q, batch["actions"]) - jnp.sum(pi * jnp.where(batch["avail_ext"][:, :max_length], q, 0.0),
                                                   axis=-1)


def effective_sample_fraction(weights: jax.Array, mask: jax.Array) -> jax.Array:
    """Kish's effective sample size of non-negative weights over the batch axis (0), as a
    fraction of the valid entries n of each slice: (Σ w)² / (n · Σ w²), in [1/n, 1] (1: all
    equal, 1/n: one entry holds all the weight); NaN where a slice has no valid entry or no
    weight. For eq. 10's filter f(A) over agent i's B trajectories at one step (diagnostics)."""
    mask = jnp.broadcast_to(mask, weights.shape)
    w = jnp.where(mask, weights, 0.0)
    n = jnp.sum(mask, axis=0).astype(w.dtype)
    total, squares = jnp.sum(w, axis=0), jnp.sum(w * w, axis=0)
    return jnp.where((n > 0) & (squares > 0), total ** 2 / jnp.maximum(n * squares, 1e-30), jnp.nan)


# --- Stage III for continuous actions (Gaussian actor, CRR's sampled advantage) ------------

def action_mask(spec) -> np.ndarray:
    """[A, D] float mask of each agent's real action dimensions (padding = 0)."""
    mask = np.zeros((spec.num_agents, spec.num_actions), np.float32)
    for i, d in enumerate(spec.action_dims):
        mask[i, :d] = 1.0
    return mask


def policy_samples(noise: jax.Array, mean: jax.Array, log_std: jax.Array, mask: jax.Array) -> jax.Array:
    """a_k = clip(μ + σ·ε_k, −1, 1) for noise ε [..., m, D] around mean [..., D] (as
    `NetworkPolicy` acts stochastically); padded dimensions are 0, like the data's."""
    return jnp.clip(mean[..., None, :] + jnp.exp(log_std) * noise, -1.0, 1.0) * mask[..., None, :]


def batch_action_mask(batch: dict) -> jax.Array:
    """[A, D] (or broadcastable) mask of the trained agents' real action dimensions."""
    return batch["action_mask"] if "action_mask" in batch else jnp.ones(batch["actions"].shape[-2:], jnp.float32)


def continuous_critic_targets(actor, critic, actor_params, target_params, batch, config: SITConfig) -> jax.Array:
    """y of eq. 9 from the target critic at the data's next action a_j^{t+1}; after the
    last step of a truncated episode, at the current actor's mean action μ_i(τ_j^T) (ours)."""
    return targets_from_means(critic, oc.unroll(actor, actor_params, batch["obs_ext"]), target_params, batch, config)


def targets_from_means(critic: CriticConfig, means_ext: jax.Array, target_params, batch,
                       config: SITConfig) -> jax.Array:
    """`continuous_critic_targets` from the actor's means μ_i(τ_j^0 … τ_j^T) [B, T + 1, A, D]."""
    mean_next = means_ext[:, 1:] * batch_action_mask(batch)
    next_actions = jnp.where(batch["has_next"][..., None], batch["actions_next"], mean_next)
    q_next = critic_values(critic, target_params, batch, slice(1, None), next_actions[..., None, :])[..., 0]
    return td_targets(batch["reward"], q_next, batch["continues"], config.gamma)


def continuous_actor_loss(actor_params, critic_params, batch, noise, actor: AgentNetConfig, critic: CriticConfig,
                          config: SITConfig) -> jax.Array:
    """Eq. 10 for a Gaussian actor: A = Q_i(τ_j, a_j) − (1/m) Σ_k Q_i(τ_j, a_k) with
    a_k = clip(μ + σ·ε_k, −1, 1) from `noise` ε [B, T, A, m, D] (no gradient through them),
    L_π = −E[ η/û · f(A) · log N(a_j; μ_i(τ_j), σ_i²) ]."""
    max_length = batch["actions"].shape[1]
    mean = oc.unroll(actor, actor_params, batch["obs_ext"][:, :max_length])
    return means_actor_loss(mean, actor_params["params"]["log_std"], critic_params, batch, noise, critic, config)


def means_actor_loss(mean: jax.Array, log_std: jax.Array, critic_params, batch, noise, critic: CriticConfig,
                     config: SITConfig) -> jax.Array:
    """`continuous_actor_loss` from the actor's means μ_i(τ_j) [B, T, A, D] and its log σ [D]."""
    mask_d = batch_action_mask(batch)
    log_pi = gaussian_log_density(batch["actions"], mean, log_std, mask=mask_d)
    candidates = batch["actions"][..., None, :]  # a_j, then the m samples a_k
    if config.advantage_baseline:
        sampled = policy_samples(noise, jax.lax.stop_gradient(mean), jax.lax.stop_gradient(log_std), mask_d)
        candidates = jnp.concatenate([candidates, sampled], axis=-2)
    q = jax.lax.stop_gradient(critic_values(critic, critic_params, batch, slice(0, mean.shape[1]), candidates))
    advantage = q[..., 0] - jnp.mean(q[..., 1:], axis=-1) if config.advantage_baseline else q[..., 0]
    filter_weights = crr_filter(advantage, batch["mask"], config.filter, config.beta, config.weight_clip)
    return filtered_bc_loss(log_pi, filter_weights, batch["weight"], batch["mask"])


def clip_log_std(params, low: float, high: float):
    """Keep the actor's learned log σ in [low, high] (after each actor step)."""
    inner = dict(params["params"])
    inner["log_std"] = jnp.clip(inner["log_std"], low, high)
    return {**params, "params": inner}


# --- the learner ------------------------------------------------------------------------------

class SITState(NamedTuple):
    """One seed's Stage III state."""

    actor: dict  # π_i's parameters (the agent network)
    critic: dict  # Q_i's parameters (eq. 8)
    target: dict  # Q'_i: the target copy of `critic`
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    updates: jax.Array  # int32: updates so far (the target period d counts them)


def actor_config(config: SITConfig, spec) -> AgentNetConfig:
    """Discrete: logits over nA. Continuous: a tanh mean in [−1, 1]^D and a learned,
    state-independent log σ (`learned_std`), the Gaussian `NetworkPolicy` acts with."""
    return AgentNetConfig(num_agents=spec.num_agents, obs_dim=spec.obs_dim, num_actions=spec.num_actions,
                          discrete=bool(spec.discrete), recurrent=config.recurrent, hidden=tuple(config.hidden),
                          agent_ids=config.agent_ids, learned_std=not spec.discrete)


def check_dataset(dataset) -> None:
    spec = dataset.spec
    needed = ("obs", "avail", "actions", "reward") if spec.discrete else ("obs", "actions", "reward")
    for field in needed:
        if field not in dataset.steps:
            raise ValueError(f"{dataset.path}: dataset.steps[{field!r}]: SIT needs it; the dataset has "
                             f"{sorted(dataset.steps)}")


def check_stage1(stage1, dataset) -> None:
    n, e, a = dataset.num_steps, dataset.num_episodes, dataset.num_agents
    for name, shape in (("reward", (n, a)), ("uncertainty", (n, a)), ("priority", (e, a))):
        value = np.shape(getattr(stage1, name, None))
        if value != shape:
            raise ValueError(f"stage1.{name}: expected shape {list(shape)} for this dataset, got {list(value)}")


def resolve_config(config: SITConfig, dataset) -> SITConfig:
    """`config` with `reward_scale=None` resolved from the data (`oc.smac_reward_scale`)."""
    return oc.resolve_reward_scale(config, dataset)


def divergence_hint(config: SITConfig) -> str:
    """What to do when the critic loss diverges (for `oc.warn_if_diverged(history["critic_loss"],
    "SIT's critic", divergence_hint(resolved config))`)."""
    return f"lower SITConfig.reward_scale (now {config.reward_scale:g})"


def stage_inputs(config: SITConfig, dataset, stage1=None) -> dict[str, np.ndarray]:
    """Stage III's host inputs from Stage I (`fit(..., inputs=...)`): the rewards its critic
    learns from, "reward" [N, A] (r̂, unscaled), and the weights of eqs. 9–10, "weight"
    [N, A] (η/û). Without decomposition Stage I is skipped (`stage1` is ignored): every agent
    learns from the team reward and every sample weighs η."""
    check_dataset(dataset)
    if config.decomposition:
        if stage1 is None:
            raise ValueError("sit.stage_inputs: SITConfig.decomposition needs Stage I's result (an ARDNEMResult: "
                             "`ardnem.result(config, fit(ardnem.learner(config, dataset), ...), dataset)`)")
        check_stage1(stage1, dataset)
        reward = np.asarray(stage1.reward, np.float32)
        weight = uncertainty_weights(stage1.uncertainty, config.eta, config.uncertainty_floor)
    else:  # w/o decomp: the team reward for every agent, weight η
        team = np.asarray(dataset.steps["reward"], np.float32)
        reward = np.broadcast_to(team[:, None], (dataset.num_steps, dataset.num_agents)).copy()
        weight = np.full(reward.shape, config.eta, np.float32)
    return {"reward": reward, "weight": weight}


def prepare(config: SITConfig, dataset, inputs: dict) -> dict:
    """The step fields Stage III reads, with `stage_inputs`' r̂ (times `reward_scale`) and
    η/û as "reward" and "weight" [N, A]; continuous actions add "action_mask" [A, D]."""
    missing = [name for name in ("reward", "weight") if name not in inputs]
    if missing:
        raise ValueError(f"SIT: fit(..., inputs=...) lacks {missing}; pass inputs=sit.stage_inputs(config, "
                         f"dataset, stage1)")
    spec = dataset.spec
    expected = (dataset.num_steps, dataset.num_agents)
    for name in ("reward", "weight"):
        if np.shape(inputs[name]) != expected:
            raise ValueError(f"SIT inputs[{name!r}]: expected shape {list(expected)} for this dataset, got "
                             f"{list(np.shape(inputs[name]))}")
    config = resolve_config(config, dataset)
    data = to_device(dataset, STAGE3_FIELDS if spec.discrete else STAGE3_CONTINUOUS_FIELDS)
    data["reward"] = jnp.asarray(config.reward_scale * np.asarray(inputs["reward"], np.float32))
    data["weight"] = jnp.asarray(np.asarray(inputs["weight"], np.float32))
    if not spec.discrete:
        data["action_mask"] = jnp.asarray(action_mask(spec))
    return data


@functools.lru_cache(maxsize=None)
def make_learner(config: SITConfig, actor: AgentNetConfig, critic: CriticConfig, max_length: int) -> Learner:
    """Stage III for a resolved `config` (`reward_scale` set) on episodes of at most
    `max_length` steps; batches are individual trajectories (unit "trajectory")."""
    if config.reward_scale is None:
        raise ValueError("SITConfig.reward_scale: make_learner needs it resolved; use `sit.learner(config, dataset)` "
                         "(or `resolve_config`)")
    critic_optimizer = oc.optimizer(config, config.critic_learning_rate)
    actor_optimizer = oc.optimizer(config, config.actor_learning_rate)

    def init(key, arrays) -> SITState:
        actor_key, critic_key = jax.random.split(key)
        actor_params = init_params(actor, actor_key)
        critic_params = init_critic(critic, critic_key)
        return SITState(actor_params, critic_params, critic_params, actor_optimizer.init(actor_params),
                        critic_optimizer.init(critic_params), jnp.int32(0))

    def update(state: SITState, key, arrays, items):
        actor_params, critic_opt = state.actor, state.critic_opt_state
        if critic.discrete:
            batch = trajectory_batch(arrays, *items, max_length, config.bootstrap_truncated)
            # One unroll of the actor over τ^0 … τ^T serves the targets (π at the final
            # observation) and, through its vjp, eq. 10's gradient (steps 0 … T−1).
            logits, logits_vjp = jax.vjp(
                lambda params: policy_logits(actor, params, batch["obs_ext"], batch["avail_ext"]), actor_params)
            targets = jax.lax.stop_gradient(targets_from_logits(critic, logits, state.target, batch, config))
            critic_params, critic_opt, loss_q = train_critic(state.critic, critic_opt, batch, targets, critic,
                                                             critic_optimizer, config)
            loss_pi, logits_grad = jax.value_and_grad(logits_actor_loss)(logits, critic_params, batch, critic,
                                                                         config)
            grads = logits_vjp(logits_grad)[0]
            actor_params, actor_opt = oc.apply_gradients(actor_optimizer, actor_params, state.actor_opt_state, grads)
        else:
            noise_key = jax.random.split(key)[1]
            batch = trajectory_batch(arrays, *items, max_length, config.bootstrap_truncated)
            noise = jax.random.normal(noise_key, batch["mask"].shape + (config.action_samples, actor.num_actions))
            # One unroll of the actor over τ^0 … τ^T serves the targets (μ at the final
            # observation) and, through its vjp, eq. 10's gradient (steps 0 … T−1); log σ
            # enters eq. 10 directly, not through the means.
            means, means_vjp = jax.vjp(lambda params: oc.unroll(actor, params, batch["obs_ext"]), actor_params)
            targets = jax.lax.stop_gradient(targets_from_means(critic, means, state.target, batch, config))
            critic_params, critic_opt, loss_q = train_critic(state.critic, critic_opt, batch, targets, critic,
                                                             critic_optimizer, config)
            steps = batch["actions"].shape[1]
            loss_pi, (means_grad, log_std_grad) = jax.value_and_grad(
                lambda means, log_std: means_actor_loss(means[:, :steps], log_std, critic_params, batch, noise,
                                                        critic, config), argnums=(0, 1))(
                means, actor_params["params"]["log_std"])
            grads = means_vjp(means_grad)[0]
            grads = {**grads, "params": {**grads["params"], "log_std": grads["params"]["log_std"] + log_std_grad}}
            actor_params, actor_opt = oc.apply_gradients(actor_optimizer, actor_params, state.actor_opt_state, grads)
            actor_params = clip_log_std(actor_params, config.log_std_min, config.log_std_max)
        step = state.updates
        target = oc.hard_update(state.target, critic_params, step, step + 1, config.target_update_interval)
        state = SITState(actor_params, critic_params, target, actor_opt, critic_opt, step + 1)
        return state, {"critic_loss": loss_q, "actor_loss": loss_pi}

    def policy(state: SITState, arrays) -> NetworkPolicy:
        return NetworkPolicy(params=state.actor, config=actor, deterministic=not config.sample_actions)

    return Learner("sit", init, update, policy, prepare=functools.partial(prepare, config), unit="trajectory",
                   batch_size=config.batch_size, headline="critic_loss", config=config)


def learner(config: SITConfig, dataset) -> Learner:
    """SIT's Stage III on `dataset` (discrete or continuous actions); `reward_scale=None` is
    resolved from the data here. Run it with the DPER sampler over Stage I's priorities
    (or `Uniform` w/o decomposition) and `inputs=stage_inputs(config, dataset, stage1)`."""
    check_dataset(dataset)
    config = resolve_config(config, dataset)
    spec = dataset.spec
    return make_learner(config, actor_config(config, spec), critic_config(config, spec), int(dataset.lengths.max()))
