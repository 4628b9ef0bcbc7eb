"""ICQ-MA: implicit constraint Q-learning for multi-agent offline RL (Yang et al. 2021;
SIT appendix B, eq. 14; methods.md §4).

    π_i(·|τ_i)        actor: parameter-shared recurrent agent network (GRU 64), masked softmax
    Q_i(s, o_i, ·)    critic: parameter-shared MLP on (state, own observation, agent id)
    Q_tot(s, a) = Σ_i k_i(s) Q_i(s, o_i, a_i)      mixer with k_i(s) ≥ 0, Σ_i k_i(s) = 1

    for update in 1 … U:                                (the engine: lax loops inside jit)
        draw a batch B of 32 whole episodes (the run's sampler)
        critic (eq. 14; only the data's actions are ever evaluated — the implicit constraint):
            X_{t+1} = |B|·softmax_B(Q'_tot(s_{t+1}, a_{t+1}) / β_c) · Q'_tot(s_{t+1}, a_{t+1})
            G_t = r_t + γ[(1 − λ) X_{t+1} + λ G_{t+1}]                        TD(λ), λ = 0.8
            for t = 0 … T−1:  L_Q = E_B[(Q_tot(s_t, a_t) − G_t)²]
                              (φ, φ_i) ← RMSProp(∇L_Q, lr 1e-4), gradients clipped to norm 20
        actor (with the updated critic, held fixed):
            A_i = Q_i(s, o_i, a_i) − Σ_a π_i(a|τ_i) Q_i(s, o_i, a)
            L_π = −E[ Σ_i k_i(s) · |B|·softmax_B(A_i / β) · log π_i(a_i|τ_i) ]   β = 0.1
            θ ← RMSProp(∇L_π, lr 5e-4), gradients clipped to norm 20
        every 600 critic steps: target critic and mixer ← online ones
    act: a_i = argmax_{a ∈ avail} π_i(a|τ_i)

softmax_B normalises over the episodes of the batch at each time step (and, for the
actor, each agent): the implicit constraint exp(Q/β)/Z of eq. 14 estimated on a batch.

Defaults follow methods.md §4 (ICQ reference, YiqinYang/ICQ) and SIT Table 11: actor lr
5e-4, critic lr 1e-4, RMSProp, gradient clipping 20, GRU 64, mixer hidden 32, β = 0.1,
λ = 0.8, γ = 0.99, batch 32 episodes, target update every 600 critic steps, 15 000 updates
(the registry's budget).

Choices and where they come from:
  * β_c = 1000: the reference's critic temperature. SIT's eq. 14 writes β_ICQ in both
    places, but with β = 0.1 the batch softmax of Q_tot values would be one-hot;
  * the critic is the reference's: MLP 256-256 on (state, obs_i, id); Q_tot = Σ_i k_i(s) Q_i
    with k(s) = |W_1(s)|·|w_2(s)| normalised over agents and no bias — SIT's "linear mixer
    w_i Q_i + b" with b = 0; k_i(s) also weighs the actor loss (the reference's `mixer.k`);
  * RMSProp with the reference's decay 0.99 and ε = 1e-5, but ε under the root
    (`optimizer="rmsprop_eps_in_root"`), where PyMARL adds it to the root
    (`"rmsprop_pymarl"`): a parameter whose RMS gradient is below √ε ≈ 3·10⁻³ takes a
    smaller step than the reference's (`teamsift.nets.optim`). The default stays until the
    recorded ICQ tables are rerun under the reference's;
  * as in the reference, the critic takes one gradient step per time step of the batch,
    all towards targets computed once before them, and "every 600 steps" counts those
    steps (`critic_step_per_time_step=False`: one step on the whole batch per update);
  * (ours) padded steps take no part in softmax_B, and |B| is the number of episodes
    that bootstrap at that step (the reference mixes padding into the softmax);
  * (ours) after the last step of an episode cut by the time limit the data has no next
    action, so its next value is Σ_a π_i(a) Q'_i(s_T, a) under the current actor;
  * (ours) `reward_scale` multiplies the data's rewards for learning. β and β_c are the
    reference's for SMAC, whose rewards PyMARL scales to a best episode return of 20;
    the default (None) reads a scale from the data (`oc.smac_reward_scale`) by
    `reward_scale_rule`: "smac" (the default) brings the environment's best return to 20
    where it is known (SMAX: × 10), else as "largest": 20 / the largest episode return
    where that exceeds 20, else 1, so negative and small returns stay as they are.
    X_j = |B|·w_j·Q_j with w_j ≈ 1 + (Q_j − mean_B Q)/β_c: where values are positive, the
    batch's high values are scaled up and its low ones down, so the targets spread more
    than Q does, by a margin that grows with the value scale. On PP_3p1p (returns up to
    170) the critic feeds on this and diverges (critic loss ≈ 1e14 after 1,500 updates).
    Negative values, as on CN, are pulled together instead. The training pipeline warns
    when the logged critic loss diverges (`offline_common.warn_if_diverged` with
    `divergence_hint`); a smaller `reward_scale` is the remedy;
  * (ours) per-decision weights (`fit(..., weights=...)`, `batch["weight"]`) weigh each
    agent's actor term by its own weight and each step's critic term by the mean weight
    of its agents (normalised weighted means); without weights the losses are as above.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from teamsift.algos import offline_common as oc
from teamsift.checks import require_choice, require_discrete, require_positive, require_unit_interval
from teamsift.engine import Learner
from teamsift.nets import AgentNetConfig, NetworkPolicy, apply_step, init_params, masked_logits, with_agent_ids
from teamsift.nets.agent import build
from teamsift.nets.mixer import MixerConfig, init_mixer, mix, mixing_weights
from teamsift.nets import ops


@dataclasses.dataclass(frozen=True)
class ICQConfig:
    hidden: tuple[int, ...] = (64,)  # actor: GRU 64 → linear head
    recurrent: bool = True
    critic_hidden: tuple[int, ...] = (256, 256)  # ICQ reference critic
    mixer_embed: int = 32
    beta: float = 0.1  # β (actor temperature)
    critic_beta: float = 1000.0  # β_c (critic temperature, reference)
    td_lambda: float = 0.8  # λ_ICQ
    gamma: float = 0.99
    actor_learning_rate: float = 5e-4
    critic_learning_rate: float = 1e-4
    optimizer: str = oc.OPTIMIZER  # a `nets.optim.OPTIMIZERS` name; the reference's: "rmsprop_pymarl"
    max_grad_norm: float = 20.0
    batch_size: int = 32  # episodes
    target_update_interval: int = 600  # critic gradient steps
    critic_step_per_time_step: bool = True  # the reference: one critic step per time step of the batch
    bootstrap_truncated: bool = True  # time-limit ends bootstrap from the final observation (PyMARL)
    sample_actions: bool = False  # True: act by sampling π instead of its argmax
    reward_scale: float | None = None  # (ours) multiplies the rewards; None: `oc.smac_reward_scale` of the data
    reward_scale_rule: str = "smac"  # (ours) how None is read: `oc.REWARD_SCALE_RULES`

    def __post_init__(self):
        require_positive(self, ("mixer_embed", "beta", "critic_beta", "gamma", "actor_learning_rate",
                                "critic_learning_rate", "max_grad_norm", "batch_size", "target_update_interval"))
        if self.reward_scale is not None:
            require_positive(self, ("reward_scale",))
        require_choice(self, "reward_scale_rule", oc.REWARD_SCALE_RULES)
        oc.require_optimizer(self)
        require_unit_interval(self, ("td_lambda", "gamma"))
        if not self.hidden or min(self.hidden) < 1 or not self.critic_hidden or min(self.critic_hidden) < 1:
            raise ValueError(f"ICQConfig.hidden, critic_hidden: expected positive layer widths, got "
                             f"{self.hidden!r}, {self.critic_hidden!r}")


class ICQState(NamedTuple):
    """One seed's ICQ state."""

    actor: dict  # π's parameters
    critic: dict  # {"critic": Q_i's parameters, "mixer": k(s)'s}
    target: dict  # the target copy of `critic`
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    critic_steps: jax.Array  # int32: critic gradient steps so far (the target period counts them)


def resolve_config(config: ICQConfig, dataset) -> ICQConfig:
    """`config` with `reward_scale=None` resolved from the data (`oc.smac_reward_scale`)."""
    return oc.resolve_reward_scale(config, dataset)


def divergence_hint(config: ICQConfig) -> str:
    """What to do when the critic loss diverges (for `oc.warn_if_diverged(history["critic_loss"],
    "ICQ's critic", divergence_hint(resolved config))`)."""
    return (f"its targets weigh Q by softmax(Q/β_c) with β_c = {config.critic_beta:g}, tuned for returns of at most "
            f"{oc.SMAC_MAX_RETURN:g}; lower ICQConfig.reward_scale (now {config.reward_scale:g}) so that the data's "
            f"returns are of that size")


def actor_net_config(config: ICQConfig, spec) -> AgentNetConfig:
    """π_i(·|τ_i): the parameter-shared (recurrent) agent network."""
    return oc.agent_net_config(spec, config.hidden, config.recurrent)


def critic_net_config(config: ICQConfig, spec) -> AgentNetConfig:
    """Q_i(s, o_i, ·): an MLP over [state, obs_i, one-hot id]."""
    return oc.agent_net_config(spec, config.critic_hidden, recurrent=False, obs_dim=spec.state_dim + spec.obs_dim)


def mixer_config(config: ICQConfig, spec) -> MixerConfig:
    return MixerConfig(num_agents=spec.num_agents, state_dim=spec.state_dim, embed_dim=config.mixer_embed,
                       kind="linear", normalise_weights=True, state_bias=False)


def critic_values(critic: AgentNetConfig, params, obs: jax.Array, state: jax.Array) -> jax.Array:
    """Q_i(s, o_i, ·) [..., A, nA] from obs [..., A, O] and state [..., S]."""
    return apply_step(critic, params, oc.with_state(obs, state), None)[0]


def critic_inputs(critic: AgentNetConfig, obs: jax.Array, state: jax.Array) -> jax.Array:
    """Q_i's input [..., A, S + O (+ A)]: [state, obs_i, one-hot id] (what `critic_values` feeds)."""
    inputs = oc.with_state(obs, state)
    return with_agent_ids(inputs, critic.num_agents) if critic.agent_ids else inputs


def weighted_td_targets(q_tot_next: jax.Array, batch: dict, config: ICQConfig) -> jax.Array:
    """G_t = TD(λ) over X_{t+1} = |B|·softmax_B(Q'_tot,t+1/β_c)·Q'_tot,t+1 (eq. 14) with the
    rewards times `reward_scale`; the softmax runs over the episodes of the batch that
    bootstrap at step t."""
    weights = oc.batch_softmax_weights(q_tot_next, batch["continues"], config.critic_beta)
    reward = config.reward_scale * batch["reward"]
    return oc.td_lambda_returns(reward, weights * q_tot_next, batch["continues"], batch["has_next"], config.gamma,
                                config.td_lambda)


def policy_logits(actor: AgentNetConfig, actor_params, batch) -> jax.Array:
    """π's masked logits [B, T + 1, A, nA] over τ_0 … τ_T (the final observation last)."""
    return masked_logits(oc.unroll(actor, actor_params, batch["obs_ext"]), batch["avail_ext"])


def critic_targets(actor, critic, mixer, actor_params, target, batch, config: ICQConfig) -> jax.Array:
    """G_t of eq. 14 from the target critic at the data's next actions a_{t+1}.

    After the last step of a truncated episode the data has no action: there the next
    value is Σ_a π_i(a|τ_i,T) Q'_i(s_T, a), under the current actor (ours)."""
    return targets_from_logits(critic, mixer, policy_logits(actor, actor_params, batch), target, batch, config)


def targets_from_logits(critic, mixer, logits_ext, target, batch, config: ICQConfig) -> jax.Array:
    """`critic_targets` given π's masked logits [B, T + 1, A, nA]."""
    q_next = critic_values(critic, target["critic"], batch["obs_ext"], batch["state_ext"])[:, 1:]
    logits_next = logits_ext[:, 1:]
    expected = jnp.sum(jax.nn.softmax(logits_next, axis=-1) * jnp.where(batch["avail_ext"][:, 1:], q_next, 0.0),
                       axis=-1)
    per_agent = jnp.where(batch["has_next"][..., None], oc.taken(q_next, batch["actions_next"]), expected)
    q_tot_next = mix(mixer, target["mixer"], per_agent, batch["state_ext"][:, 1:])
    return weighted_td_targets(q_tot_next, batch, config)


def critic_loss(critic_params, inputs, state, action_one_hot, targets, mask, critic, mixer, weight=None):
    """E[(Q_tot(s, a) − G)²] over the valid entries (eq. 14), from Q_i's `critic_inputs` and
    the data's actions as one-hots; `weight` (the steps' mean decision weight) makes it the
    weighted mean."""
    q = build(critic).apply(critic_params["critic"], inputs)
    q_tot = mix(mixer, critic_params["mixer"], jnp.sum(q * action_one_hot, axis=-1), state)
    return ops.weighted_mean((q_tot - targets) ** 2, mask, weight)


def train_critic(critic_params, opt_state, batch, targets, critic, mixer, optimizer, config: ICQConfig):
    """Critic steps on one batch: one per time step, in order (the reference), or one on the
    whole batch. What does not depend on the critic's parameters (its inputs, the actions'
    one-hots) is built once for every step. Returns (params, opt_state, number of gradient
    steps taken, mean loss)."""
    weight = ops.step_weight(batch)
    inputs = critic_inputs(critic, batch["obs"], batch["state"])
    one_hot = jax.nn.one_hot(batch["actions"], critic.num_actions, dtype=inputs.dtype)
    if weight is None:
        fields = (inputs, batch["state"], one_hot, targets, batch["mask"])
        loss_fn = functools.partial(critic_loss, critic=critic, mixer=mixer)
    else:
        fields = (inputs, batch["state"], one_hot, targets, weight, batch["mask"])

        def loss_fn(params, inputs, state, one_hot, targets, weight, mask):
            return critic_loss(params, inputs, state, one_hot, targets, mask, critic, mixer, weight)

    return oc.critic_gradient_steps(loss_fn, critic_params, opt_state, optimizer, fields,
                                    config.critic_step_per_time_step)


def actor_loss(actor_params, critic_params, batch, actor: AgentNetConfig, critic, mixer, config: ICQConfig):
    """−E[Σ_i k_i(s)·|B|·softmax_B((Q_i − Σ_a π_i Q_i)/β)·log π_i(a_i|τ_i)] (each agent's
    term weighted by its decision weight when the batch has one)."""
    logits = masked_logits(oc.unroll(actor, actor_params, batch["obs"]), batch["avail"])
    return logits_actor_loss(logits, critic_params, batch, critic, mixer, config)


def logits_actor_loss(logits, critic_params, batch, critic, mixer, config: ICQConfig):
    """`actor_loss` on π's masked logits [B, T (or T + 1: the last is unused), A, nA]."""
    log_pi = jax.nn.log_softmax(logits[:, :batch["actions"].shape[1]], axis=-1)
    q = jax.lax.stop_gradient(critic_values(critic, critic_params["critic"], batch["obs"], batch["state"]))
    q_taken = oc.taken(q, batch["actions"])
    pi = jax.lax.stop_gradient(jnp.exp(log_pi))
    baseline = jnp.sum(pi * jnp.where(batch["avail"], q, 0.0), axis=-1)
    agent_mask = jnp.broadcast_to(batch["mask"][..., None], q_taken.shape)
    advantage_weights = oc.batch_softmax_weights(q_taken - baseline, agent_mask, config.beta)
    k = jax.lax.stop_gradient(mixing_weights(mixer, critic_params["mixer"], q_taken, batch["state"]))
    per_agent = k * advantage_weights * oc.taken(log_pi, batch["actions"])
    return -ops.weighted_mean(per_agent, agent_mask, batch.get("weight"))


def prepare(dataset, inputs: dict) -> dict:
    return oc.episode_data(dataset)


@functools.lru_cache(maxsize=None)
def make_learner(config: ICQConfig, actor: AgentNetConfig, critic: AgentNetConfig, mixer: MixerConfig,
                 max_length: int) -> Learner:
    """ICQ for a resolved `config` (`reward_scale` set) on episodes of at most `max_length` steps."""
    if config.reward_scale is None:
        raise ValueError("ICQConfig.reward_scale: make_learner needs it resolved; use `icq.learner(config, dataset)` "
                         "(or `resolve_config`)")
    critic_optimizer = oc.optimizer(config, config.critic_learning_rate)
    actor_optimizer = oc.optimizer(config, config.actor_learning_rate)

    def init(key, arrays) -> ICQState:
        actor_key, critic_key, mixer_key = jax.random.split(key, 3)
        actor_params = init_params(actor, actor_key)
        critic_params = {"critic": init_params(critic, critic_key), "mixer": init_mixer(mixer, mixer_key)}
        return ICQState(actor_params, critic_params, critic_params, actor_optimizer.init(actor_params),
                        critic_optimizer.init(critic_params), jnp.int32(0))

    def update(state: ICQState, key, arrays, items):
        batch = oc.episode_batch(arrays, items, max_length, config.bootstrap_truncated)
        # One unroll of π over τ_0 … τ_T serves the targets (π at the final observation) and,
        # through its vjp, the actor's gradient (steps 0 … T−1).
        logits, logits_vjp = jax.vjp(lambda params: policy_logits(actor, params, batch), state.actor)
        targets = jax.lax.stop_gradient(targets_from_logits(critic, mixer, logits, state.target, batch, config))
        critic_params, critic_opt, steps, loss_q = train_critic(state.critic, state.critic_opt_state, batch, targets,
                                                                critic, mixer, critic_optimizer, config)
        loss_pi, logits_grad = jax.value_and_grad(logits_actor_loss)(logits, critic_params, batch, critic, mixer,
                                                                     config)
        grads = logits_vjp(logits_grad)[0]
        actor_params, actor_opt = oc.apply_gradients(actor_optimizer, state.actor, state.actor_opt_state, grads)
        target = oc.hard_update(state.target, critic_params, state.critic_steps, state.critic_steps + steps,
                                config.target_update_interval)
        state = ICQState(actor_params, critic_params, target, actor_opt, critic_opt, state.critic_steps + steps)
        return state, {"critic_loss": loss_q, "actor_loss": loss_pi}

    def policy(state: ICQState, arrays) -> NetworkPolicy:
        return NetworkPolicy(params=state.actor, config=actor, deterministic=not config.sample_actions)

    return Learner("icq", init, update, policy, prepare=prepare, unit="episode",
                   batch_size=config.batch_size, headline="critic_loss",
                   config=config)


def learner(config: ICQConfig, dataset) -> Learner:
    """ICQ on `dataset` (a discrete-action dataset with avail masks and a global state);
    `reward_scale=None` is resolved from the data here."""
    require_discrete(dataset, "ICQ")
    config = resolve_config(config, dataset)
    spec = dataset.spec
    return make_learner(config, actor_net_config(config, spec), critic_net_config(config, spec),
                        mixer_config(config, spec), int(dataset.lengths.max()))
