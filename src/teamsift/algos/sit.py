"""SIT: Shared Individual Trajectories (Tian et al., "Learning from Good Trajectories in
Offline Multi-Agent RL", AAAI 2023; Algorithm 1, eqs. 8–10, Tables 10–11; methods.md §4).

    Stage I   ARDNEM (`teamsift.value.ardnem`, eqs. 1–6): r̂_i^{t,k}, û_i^{t,k}, p̂_i^k
    Stage II  DPER (`teamsift.value.dper`, eq. 7): one sum-tree buffer B_J of individual
              trajectories (k, j) per agent type J, P_J(k, j) ∝ exp(p̃_j^k / α)
    Stage III for update l = 1 … L_AC:                          (lax.scan inside jit)
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

    continuous actions (SIT's MAMuJoCo runs; `train` dispatches on dataset.spec.discrete):
        critic:  Q_i(τ_j, a, o_{−j}) = f_agg([f_local([τ_j; a]); e_global]),  a ∈ [−1, 1]^D an input
        actor:   π_i(·|τ_j) = N(μ_i(τ_j), diag σ_i²),  μ_i = tanh(agent network),  log σ_i learned
        eq. 9:   y = r̂_j^t + γ Q'_i(τ_j^{t+1}, a_j^{t+1}, o_{−j}^{t+1})      (μ_i(τ_j^T) past a time-limit end)
        eq. 10:  A = Q_i(τ_j, a_j) − (1/m) Σ_{k=1}^m Q_i(τ_j, a_k),  a_k = clip(μ_i + σ_i ε_k, −1, 1)
                 L_π = −E[ η/û_j^t · f(A) · log N(a_j^t; μ_i(τ_j^t), σ_i²) ]     (f as above)
        act:     a_i = μ_i(τ_i)

Defaults are SIT's Table 11 (agent learning) and Table 10 (ARDNEM, via `ardnem`):
actor (agent network) lr 5e-4, critic lr 1e-4, RMSProp, γ = 0.99, 15 000 updates,
target ("parameters") update interval d = 100, gradient clipping 10, critic hidden 32,
RNN hidden 64, ReLU, batch 32, α = 0.2, β = 0.1, η = 1, priorities rescaled to [0, 20].

Ablations (SIT Figure 4(a)):
  * decomposition=False ("w/o decomp"): the critic of every agent learns from the team
    reward r_tot, Stage I is skipped, every sample weighs η (no û) and the type-wise
    buffers are sampled uniformly (the trajectories of a type are still shared);
  * use_gat=False ("w/o GAT"): e_global is a linear embedding of the concatenated
    observations o_1 … o_N (slot order) instead of the GAT aggregation;
  * ardnem=ARDNEMConfig(attention=False) ("w/o attention", λ ≡ 1) and
    ardnem=ARDNEMConfig(ensemble_size=1) ("w/o ensemble": û ≡ 0, so every sample weighs η);
  * dper=DPERConfig(...) for α, the rescaling, and per-slot buffers (no sharing).

Choices the paper leaves open, and where they come from:
  * eq. 10 as printed multiplies the filter by Q_i|_{a=a_j}; CRR (which the text says
    is plugged in) and Algorithm 1's "actor networks π_i" make it log π_i(a_j|τ_j): we
    use log π. Its filter e^{Q_i/β}/Z is CRR's, so (ours, as CRR and ICQ's reference)
    Q_i enters as the advantage A = Q_i − Σ_a π_i Q_i (`advantage_baseline=False`: Q_i
    itself). Z normalises within the mini-batch: over the B trajectories of agent i at
    each time step, as ICQ's batch softmax does (`icq.batch_softmax_weights`), so the
    weights average to 1 there; the weight is then clipped at 20 as in CRR (ours for
    the softmax form). `filter="exp"` is CRR's min(exp(A/β), 20), `filter="binary"`
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
    `reward_scale`; by default (None) `oc.smac_reward_scale` of the data, which brings the
    best episode return down to 20 as PyMARL does SMAC's: β = 0.1 was tuned at that
    scale (the filter's weights e^{A/β} are one-hot when advantages are 10× larger). It is
    1 for negative returns (CN) and for returns up to 20 (our SMAX);
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
  * Stages I–II run once and are shared by all seeds; only Stage III is vmapped.

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
    pads narrower agents with zeros), ignoring the clipping's mass at the bounds; log σ is
    kept in [log_std_min, log_std_max] = [−5, 2] by clipping after every actor step;
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
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from teamsift.algos import offline_common as oc
from teamsift.algos.icq import batch_softmax_weights
from teamsift.data import to_device
from teamsift.data.views import gather_steps
from teamsift.nets import MLP, AgentNetConfig, NetworkPolicy, init_params, masked_logits, with_agent_ids
from teamsift.nets.gat import GATLayer
from teamsift.value import ardnem, dper
from teamsift.value.ardnem import ARDNEMConfig
from teamsift.value.dper import DPERConfig

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
    # Optimisation (Table 11).
    max_grad_norm: float = 10.0
    batch_size: int = 32  # individual trajectories per agent per update
    target_update_interval: int = 100  # d ("Parameters update interval")
    num_updates: int = 15_000  # "Training epoch"
    bootstrap_truncated: bool = True  # (PyMARL) time-limit ends bootstrap from the final observation
    log_every: int = 500
    sample_actions: bool = False  # True: act by sampling π instead of its argmax (continuous: its mean)
    # Continuous actions only (Gaussian actor, CRR's sampled advantage).
    action_samples: int = 4  # m: a_k ~ π(·|τ_j), k = 1 … m, in A = Q(a_j) − (1/m) Σ_k Q(a_k) (CRR)
    log_std_min: float = -5.0  # (ours) the learned log σ is kept in [log_std_min, log_std_max]
    log_std_max: float = 2.0
    # Stages I–II and ablations.
    decomposition: bool = True  # False: "w/o decomp" (team reward, uniform sampling, no Stage I)
    ardnem: ARDNEMConfig = ARDNEMConfig()  # Stage I (Table 10); "w/o attention"/"w/o ensemble" here
    dper: DPERConfig = DPERConfig()  # Stage II (Table 11: α = 0.2, range [0, 20])

    def __post_init__(self):
        oc.require_positive(self, ("critic_hidden", "gat_heads", "beta", "eta", "gamma", "actor_learning_rate",
                                   "critic_learning_rate", "max_grad_norm", "batch_size", "target_update_interval",
                                   "weight_clip", "action_samples"))
        if not self.log_std_min < self.log_std_max:
            raise ValueError(f"SITConfig.log_std_min: expected less than log_std_max={self.log_std_max!r}, got "
                             f"{self.log_std_min!r}")
        oc.require_unit_interval(self, ("gamma",))
        if self.filter not in FILTERS:
            raise ValueError(f"SITConfig.filter: expected one of {FILTERS}, got {self.filter!r}")
        if self.reward_scale is not None and not self.reward_scale > 0:
            raise ValueError(f"SITConfig.reward_scale: expected a positive number or None, got {self.reward_scale!r}")
        if not self.uncertainty_floor >= 0:
            raise ValueError(f"SITConfig.uncertainty_floor: expected a number >= 0, got {self.uncertainty_floor!r}")
        if not isinstance(self.ardnem, ARDNEMConfig):
            raise ValueError(f"SITConfig.ardnem: expected an ARDNEMConfig, got {type(self.ardnem).__name__}")
        if not isinstance(self.dper, DPERConfig):
            raise ValueError(f"SITConfig.dper: expected a DPERConfig, got {type(self.dper).__name__}")


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

    e_global = GAT(nodes)[self index] (eq. 8) or, w/o GAT, a linear embedding of the
    concatenated nodes; e_local = f_local([local; a]) for each candidate a;
    Q = f_agg([e_local; e_global]). Without `actions` the candidates are the one-hots of
    every discrete action (K = D = nA): one output per action."""

    config: CriticConfig

    @nn.compact
    def __call__(self, local, nodes, self_index, actions=None):
        c = self.config
        if c.use_gat:
            out, _ = GATLayer(c.hidden, c.gat_heads, c.negative_slope, name="gat")(nodes)
            e_global = jnp.take_along_axis(out, self_index[..., None, None].astype(jnp.int32), axis=-2)[..., 0, :]
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
    return oc.masked_mean(weights * (targets - q_taken) ** 2, mask)


def crr_filter(advantage: jax.Array, mask: jax.Array, kind: str, beta: float, clip: float) -> jax.Array:
    """f(A) of eq. 10 on [B, ...] values (0 where mask is False):
    softmax: |B|·softmax over the batch axis (0) of A/β at every other index (exp(A/β)/Z);
    exp: exp(A/β) (CRR); binary: 1[A > 0] (CRR). Every form is clipped at `clip`."""
    mask = jnp.broadcast_to(mask, advantage.shape)
    if kind == "softmax":
        weights = batch_softmax_weights(advantage, mask, beta)
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
    return -oc.masked_mean(weights * filter_weights * log_pi_taken, mask)


# --- sampling individual trajectories (Stage II buffers) ------------------------------------

def slot_groups(agent_types, group_by: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Static (buffer name, slots drawing from it) pairs, in DPER's buffer order."""
    return tuple((name, tuple(int(s) for s in slots)) for name, slots in dper.buffer_groups(agent_types,
                                                                                           group_by).items())


def draw_trajectories(key: jax.Array, state: dper.DPERState, groups, batch_size: int,
                      num_agents: int) -> tuple[jax.Array, jax.Array]:
    """(episode k [B, A], source slot j [B, A]): for every agent i, `batch_size` individual
    trajectories of its buffer drawn with `dper_sample` (P_J). A buffer shared by n slots
    draws n·B stratified samples at once, shuffled before they are dealt to its slots."""
    episodes, sources = [None] * num_agents, [None] * num_agents
    for b, (name, slots) in enumerate(groups):
        draw_key, deal_key = jax.random.split(jax.random.fold_in(key, b))
        count = len(slots) * batch_size
        drawn = dper.dper_sample(dper.DPERState({name: state.buffers[name]}), draw_key, count)[name]
        order = jax.random.permutation(deal_key, count)
        episode = drawn.episode[order].reshape(len(slots), batch_size)
        source = drawn.slot[order].reshape(len(slots), batch_size)
        for m, i in enumerate(slots):
            episodes[i], sources[i] = episode[m], source[m]
    return jnp.stack(episodes, axis=1), jnp.stack(sources, axis=1)


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


def sample_batch(key: jax.Array, data: dict, groups, batch_size: int, max_length: int, num_agents: int,
                 bootstrap_truncated: bool = True) -> dict:
    """One Stage III batch: DPER draws (Algorithm 1, line 18), gathered."""
    episode, source = draw_trajectories(key, data["dper"], groups, batch_size, num_agents)
    batch = gather_individual(data, episode, source, max_length, bootstrap_truncated)
    batch["episode"], batch["source"] = episode, source
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
    q_next = critic_values(critic, target_params, batch)[:, 1:]
    pi_next = jax.nn.softmax(policy_logits(actor, actor_params, batch["obs_ext"], batch["avail_ext"])[:, 1:], axis=-1)
    expected = jnp.sum(pi_next * jnp.where(batch["avail_ext"][:, 1:], q_next, 0.0), axis=-1)
    next_value = jnp.where(batch["has_next"], oc.taken(q_next, batch["actions_next"]), expected)
    return td_targets(batch["reward"], next_value, batch["continues"], config.gamma)


def critic_fields(critic: CriticConfig, batch: dict, targets: jax.Array) -> tuple:
    """Eq. 9's inputs at steps 0 … T−1, each [B, T, A, ...] and the mask [B, T, A] last:
    (local input of τ_j, nodes o_1 … o_N, self index j, a_j, y, η/û, mask)."""
    max_length = batch["actions"].shape[1]
    steps = slice(0, max_length)
    local = critic_inputs(critic, batch["obs_ext"][:, steps], batch["last_actions_ext"][:, steps],
                          batch["has_last_ext"][:, steps])
    return (local, batch["nodes_ext"][:, steps], batch["self_index_ext"][:, steps], batch["actions"], targets,
            batch["weight"], batch["mask"])


def fields_td_loss(critic_params, local, nodes, self_index, actions, targets, weights, mask,
                   critic: CriticConfig) -> jax.Array:
    """Eq. 9 on `critic_fields` (whole batch or one time step of it)."""
    if critic.discrete:
        q = oc.taken(GATCritic(critic).apply(critic_params, local, nodes, self_index), actions)
    else:
        q = GATCritic(critic).apply(critic_params, local, nodes, self_index, actions[..., None, :])[..., 0]
    return weighted_td_loss(q, targets, weights, mask)


def critic_loss(critic_params, batch, targets, critic: CriticConfig) -> jax.Array:
    """Eq. 9 on a whole batch, discrete or continuous actions."""
    return fields_td_loss(critic_params, *critic_fields(critic, batch, targets), critic)


def train_critic(critic_params, opt_state, batch, targets, critic: CriticConfig, optimizer, config: SITConfig):
    """Critic steps on one batch (one, or one per time step: `critic_step_per_time_step`).
    Returns (params, opt_state, mean loss)."""
    loss_fn = functools.partial(fields_td_loss, critic=critic)
    critic_params, opt_state, _, loss = oc.critic_gradient_steps(
        loss_fn, critic_params, opt_state, optimizer, critic_fields(critic, batch, targets),
        config.critic_step_per_time_step)
    return critic_params, opt_state, loss


def actor_loss(actor_params, critic_params, batch, actor: AgentNetConfig, critic: CriticConfig,
               config: SITConfig) -> jax.Array:
    max_length = batch["actions"].shape[1]
    logits = policy_logits(actor, actor_params, batch["obs_ext"][:, :max_length], batch["avail_ext"][:, :max_length])
    log_pi = jax.nn.log_softmax(logits, axis=-1)
    q = jax.lax.stop_gradient(critic_values(critic, critic_params, batch, slice(0, max_length)))
    advantage = oc.taken(q, batch["actions"])
    if config.advantage_baseline:
        pi = jax.lax.stop_gradient(jnp.exp(log_pi))
        advantage = advantage - jnp.sum(pi * jnp.where(batch["avail_ext"][:, :max_length], q, 0.0), axis=-1)
    filter_weights = crr_filter(advantage, batch["mask"], config.filter, config.beta, config.weight_clip)
    return filtered_bc_loss(oc.taken(log_pi, batch["actions"]), filter_weights, batch["weight"], batch["mask"])


# --- Stage III for continuous actions (Gaussian actor, CRR's sampled advantage) ------------

LOG_2PI = float(np.log(2.0 * np.pi))


def action_mask(spec) -> np.ndarray:
    """[A, D] float mask of each agent's real action dimensions (padding = 0)."""
    mask = np.zeros((spec.num_agents, spec.num_actions), np.float32)
    for i, d in enumerate(spec.action_dims):
        mask[i, :d] = 1.0
    return mask


def gaussian_log_prob(actions: jax.Array, mean: jax.Array, log_std: jax.Array, mask: jax.Array) -> jax.Array:
    """log N(a; μ, diag σ²) over the real action dimensions: [..., D] → [...]."""
    z = (actions - mean) * jnp.exp(-log_std)
    return jnp.sum(mask * (-0.5 * z**2 - log_std - 0.5 * LOG_2PI), axis=-1)


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
    mean_next = oc.unroll(actor, actor_params, batch["obs_ext"])[:, 1:] * batch_action_mask(batch)
    next_actions = jnp.where(batch["has_next"][..., None], batch["actions_next"], mean_next)
    q_next = critic_values(critic, target_params, batch, slice(1, None), next_actions[..., None, :])[..., 0]
    return td_targets(batch["reward"], q_next, batch["continues"], config.gamma)


def continuous_actor_loss(actor_params, critic_params, batch, noise, actor: AgentNetConfig, critic: CriticConfig,
                          config: SITConfig) -> jax.Array:
    """Eq. 10 for a Gaussian actor: A = Q_i(τ_j, a_j) − (1/m) Σ_k Q_i(τ_j, a_k) with
    a_k = clip(μ + σ·ε_k, −1, 1) from `noise` ε [B, T, A, m, D] (no gradient through them),
    L_π = −E[ η/û · f(A) · log N(a_j; μ_i(τ_j), σ_i²) ]."""
    max_length = batch["actions"].shape[1]
    mask_d = batch_action_mask(batch)
    mean = oc.unroll(actor, actor_params, batch["obs_ext"][:, :max_length])
    log_std = actor_params["params"]["log_std"]
    log_pi = gaussian_log_prob(batch["actions"], mean, log_std, mask_d)
    candidates = batch["actions"][..., None, :]  # a_j, then the m samples a_k
    if config.advantage_baseline:
        sampled = policy_samples(noise, jax.lax.stop_gradient(mean), jax.lax.stop_gradient(log_std), mask_d)
        candidates = jnp.concatenate([candidates, sampled], axis=-2)
    q = jax.lax.stop_gradient(critic_values(critic, critic_params, batch, slice(0, max_length), candidates))
    advantage = q[..., 0] - jnp.mean(q[..., 1:], axis=-1) if config.advantage_baseline else q[..., 0]
    filter_weights = crr_filter(advantage, batch["mask"], config.filter, config.beta, config.weight_clip)
    return filtered_bc_loss(log_pi, filter_weights, batch["weight"], batch["mask"])


def clip_log_std(params, low: float, high: float):
    """Keep the actor's learned log σ in [low, high] (after each actor step)."""
    inner = dict(params["params"])
    inner["log_std"] = jnp.clip(inner["log_std"], low, high)
    return {**params, "params": inner}


@functools.lru_cache(maxsize=None)
def make_update(actor: AgentNetConfig, critic: CriticConfig, config: SITConfig, groups, max_length: int):
    """The pure update: ((actor, critic, target, opt states, updates), key, data) → (carry, [L_Q, L_π])."""
    critic_optimizer = oc.rmsprop(config.critic_learning_rate, config.max_grad_norm)
    actor_optimizer = oc.rmsprop(config.actor_learning_rate, config.max_grad_norm)

    def update(carry, key, data):
        actor_params, critic_params, target, actor_opt, critic_opt, step = carry
        if critic.discrete:
            batch = sample_batch(key, data, groups, config.batch_size, max_length, actor.num_agents,
                                 config.bootstrap_truncated)
            targets = jax.lax.stop_gradient(critic_targets(actor, critic, actor_params, target, batch, config))
            critic_params, critic_opt, loss_q = train_critic(critic_params, critic_opt, batch, targets, critic,
                                                             critic_optimizer, config)
            loss_pi, grads = jax.value_and_grad(actor_loss)(actor_params, critic_params, batch, actor, critic,
                                                            config)
            actor_params, actor_opt = oc.apply_gradients(actor_optimizer, actor_params, actor_opt, grads)
        else:
            batch_key, noise_key = jax.random.split(key)
            batch = sample_batch(batch_key, data, groups, config.batch_size, max_length, actor.num_agents,
                                 config.bootstrap_truncated)
            noise = jax.random.normal(noise_key, batch["mask"].shape + (config.action_samples, actor.num_actions))
            targets = jax.lax.stop_gradient(
                continuous_critic_targets(actor, critic, actor_params, target, batch, config))
            critic_params, critic_opt, loss_q = train_critic(critic_params, critic_opt, batch, targets, critic,
                                                             critic_optimizer, config)
            loss_pi, grads = jax.value_and_grad(continuous_actor_loss)(actor_params, critic_params, batch, noise,
                                                                       actor, critic, config)
            actor_params, actor_opt = oc.apply_gradients(actor_optimizer, actor_params, actor_opt, grads)
            actor_params = clip_log_std(actor_params, config.log_std_min, config.log_std_max)
        target = oc.hard_update(target, critic_params, step, step + 1, config.target_update_interval)
        return (actor_params, critic_params, target, actor_opt, critic_opt, step + 1), jnp.stack([loss_q, loss_pi])

    return update


@functools.lru_cache(maxsize=None)
def make_init(actor: AgentNetConfig, critic: CriticConfig, config: SITConfig):
    """seed keys [n] → carries (actor, critic, its target copy, optimiser states, 0), jitted."""
    critic_optimizer = oc.rmsprop(config.critic_learning_rate, config.max_grad_norm)
    actor_optimizer = oc.rmsprop(config.actor_learning_rate, config.max_grad_norm)

    def init(seed_key):
        actor_key, critic_key = jax.random.split(seed_key)
        actor_params = init_params(actor, actor_key)
        critic_params = init_critic(critic, critic_key)
        return (actor_params, critic_params, critic_params, actor_optimizer.init(actor_params),
                critic_optimizer.init(critic_params), jnp.int32(0))

    return oc.batched_init(init)


# --- driver -----------------------------------------------------------------------------------

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
            raise ValueError(f"dataset.steps[{field!r}]: SIT needs it; the dataset has {sorted(dataset.steps)}")


def check_stage1(stage1, dataset) -> None:
    n, e, a = dataset.num_steps, dataset.num_episodes, dataset.num_agents
    for name, shape in (("reward", (n, a)), ("uncertainty", (n, a)), ("priority", (e, a))):
        value = np.shape(getattr(stage1, name, None))
        if value != shape:
            raise ValueError(f"stage1.{name}: expected shape {list(shape)} for this dataset, got {list(value)}")


def _update_key(config: SITConfig) -> SITConfig:
    """The config with the fields that do not shape the update reset (jit cache sharing)."""
    return dataclasses.replace(config, num_updates=0, log_every=0, sample_actions=False, eta=1.0,
                               uncertainty_floor=0.0, decomposition=True, ardnem=ARDNEMConfig(), dper=DPERConfig(),
                               reward_scale=1.0)


def train(config: SITConfig, dataset, key: jax.Array, *, num_seeds: int = 1, progress: bool = True,
          stage1: ardnem.ARDNEMResult | None = None) -> tuple[NetworkPolicy, dict[str, Any]]:
    """SIT on `dataset`: Stage I (ARDNEM, unless its result is passed as `stage1`), Stage II
    (DPER), then Stage III. Returns (policy, logs): logs["critic_loss"] and logs["actor_loss"]
    are [seeds, updates], logs["seconds"] the wall time of each stage (Stage III includes
    compilation), logs["stage1"] the ARDNEMResult (None w/o decomposition) and
    logs["dper_effective_sizes"] the buffers' effective sizes. With num_seeds > 1 the
    policy's params have a leading seed axis; Stages I–II are shared by the seeds.
    With decomposition=False Stage I is skipped and `stage1` is ignored."""
    check_dataset(dataset)
    spec = dataset.spec
    stage1_key, stage3_key = jax.random.split(key)
    seconds = {"stage1": 0.0, "stage2": 0.0, "stage3": 0.0}
    began = time.perf_counter()
    if config.decomposition:
        if stage1 is None:
            stage1 = ardnem.train(config.ardnem, dataset, stage1_key, progress=progress)
        check_stage1(stage1, dataset)
        seconds["stage1"] = time.perf_counter() - began
        began = time.perf_counter()
        reward = np.asarray(stage1.reward, np.float32)
        weight = uncertainty_weights(stage1.uncertainty, config.eta, config.uncertainty_floor)
        buffers = dper.build_dper(stage1, dataset, config.dper)
    else:  # w/o decomp: the team reward for every agent, weight η, uniform type-wise buffers
        stage1 = None
        team = np.asarray(dataset.steps["reward"], np.float32)
        reward = np.broadcast_to(team[:, None], (dataset.num_steps, spec.num_agents)).copy()
        weight = np.full(reward.shape, config.eta, np.float32)
        buffers = dper.build_dper_from_priorities(np.zeros((dataset.num_episodes, spec.num_agents)),
                                                  spec.agent_types, config.dper)
    if config.reward_scale is None:
        config = dataclasses.replace(config, reward_scale=oc.smac_reward_scale(dataset))
    reward = config.reward_scale * reward
    data = to_device(dataset, STAGE3_FIELDS if spec.discrete else STAGE3_CONTINUOUS_FIELDS)
    data["reward"], data["weight"], data["dper"] = jnp.asarray(reward), jnp.asarray(weight), buffers
    if not spec.discrete:
        data["action_mask"] = jnp.asarray(action_mask(spec))
    seconds["stage2"] = time.perf_counter() - began

    began = time.perf_counter()
    actor = actor_config(config, spec)
    critic = critic_config(config, spec)
    shape_config = _update_key(config)
    groups = slot_groups(spec.agent_types, config.dper.group_by)
    update = make_update(actor, critic, shape_config, groups, int(dataset.lengths.max()))
    carry, losses = oc.train_seeds(update, make_init(actor, critic, shape_config), stage3_key, num_seeds,
                                   config.num_updates, config.log_every, data, progress=progress, label="SIT")
    losses = np.asarray(losses).reshape(num_seeds, config.num_updates, 2)
    oc.warn_if_diverged(losses[..., 0], "SIT's critic", f"lower SITConfig.reward_scale (now {config.reward_scale:g})")
    seconds["stage3"] = time.perf_counter() - began
    policy = NetworkPolicy(params=oc.seed_params(carry[0], num_seeds), config=actor,
                           deterministic=not config.sample_actions)
    logs = {"critic_loss": losses[..., 0], "actor_loss": losses[..., 1], "loss": losses[..., 0],
            "num_seeds": num_seeds, "config": dataclasses.asdict(config), "seconds": seconds,
            "stage1": stage1, "dper_effective_sizes": dper.effective_sizes(buffers),
            "critic": jax.tree.map(np.asarray, oc.seed_params(carry[1], num_seeds))}
    return policy, logs
