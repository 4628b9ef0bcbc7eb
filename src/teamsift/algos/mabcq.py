"""MABCQ: multi-agent discrete BCQ (SIT appendix B, eq. 12).

    μ_i(·|τ_i)   behaviour model: parameter-shared recurrent network trained first by
                 behaviour cloning (`teamsift.algos.bc`, eq. 11)
    Q_i(τ_i, ·)  parameter-shared recurrent agent network (GRU 64)
    Q(τ, a) = Σ_i w_i(s) Q_i(τ_i, a_i) + b(s)      linear mixer, w ≥ 0, Σ_i w_i = 1 (`nets.mixer`)
    familiar_i(a | τ_i) = avail_i(a) ∧ μ_i(a|τ_i) / max_a' μ_i(a'|τ_i) > ζ
                 (actions with ratio ≤ ζ are "unfamiliar" and masked out of every max)

    stage 1: μ by behaviour cloning (a BC fit: `bc.learner(behaviour_config(config), dataset)`)
    stage 2, starting from μ (frozen):
    for update in 1 … U:                                (the engine: lax loops inside jit)
        draw 32 whole episodes (the run's sampler)
        ã_{i,t+1} = argmax_{a ∈ familiar_i} Q'_i(τ_{i,t+1}, a)
        L(φ, φ_i) = E[ (r_t + γ Q'(τ_{t+1}, ã_{t+1}) − Q(τ_t, a_t))² ]                (eq. 12)
        (φ, φ_i) ← RMSProp(∇L), gradients clipped to norm 10
        every 100 updates: target networks ← online networks
    act: a_i = argmax_{a ∈ familiar_i} Q_i(τ_i, a)

Training is centralised (the mixer sees the global state) and execution decentralised
(each agent acts on its own Q_i and μ_i): since the mixer is monotonic, the per-agent
argmax over familiar actions is the argmax of Q over the familiar joint actions.

Defaults follow SIT Table 11: ζ = 0.3, RMSProp, lr 5e-4, γ 0.99, gradient clipping 10,
GRU 64, mixer hidden 32, batch 32 episodes, target update interval 100, 15 000 updates
(the registry's budget).

Choices where SIT is silent (ours):
  * the behaviour model has the Q network's architecture and BC's defaults (15 000
    updates, the behaviour stage's budget in the run schedule) and is frozen while Q
    learns: the learner takes it as its `start` (`fit(..., start=bc_result.state.params)`);
  * eq. 12's perturbation ξ of a discrete action is the mask above (as SIT describes it),
    so no perturbation network is learned; ã is chosen and evaluated by the target
    networks (`double_q=True` chooses with the online network, as discrete BCQ does);
  * the mixer is the linear, bias-carrying one of SIT's appendix B ("Q = w_i Q_i + b"),
    with its weights normalised to sum to 1 over the agents as in ICQ's reference mixer,
    which SIT says MABCQ's decomposition follows (`normalise_mixer=True`). Unnormalised,
    the weights grow (Σ_i w_i ≈ 150 after 3,000 updates on CN_3ls3l) and multiply the
    max's overestimation: the critic diverges and the policy ends below its untrained
    self (docs/benchmarks.md, "MABCQ and MACQL's mixer");
  * per-decision weights (`fit(..., weights=...)`, `batch["weight"]`) weigh each step's
    TD term by the mean weight of its agents (a normalised weighted mean).

The trained policy is a `teamsift.nets.BCQPolicy` (Q and μ parameters together);
`teamsift.nets.save_policy` writes it and `teamsift.nets.load_policy` reads it back.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from teamsift.algos import bc
from teamsift.algos import offline_common as oc
from teamsift.checks import require_discrete, require_positive, require_unit_interval
from teamsift.engine import Learner
from teamsift.nets import AgentNetConfig, BCQPolicy, init_params
from teamsift.nets.mixer import MixerConfig, init_mixer, mix
from teamsift.nets.policy import bcq_actions
from teamsift.nets import ops


@dataclasses.dataclass(frozen=True)
class MABCQConfig:
    hidden: tuple[int, ...] = (64,)  # GRU 64 → linear head (PyMARL's RNN agent)
    recurrent: bool = True
    threshold: float = 0.3  # ζ (SIT Table 11)
    mixer: str = "linear"  # "linear" (SIT appendix B) | "qmix"
    normalise_mixer: bool = True  # linear: k_i(s) / Σ_j k_j(s), ICQ's reference mixer (False: unbounded k)
    mixer_embed: int = 32
    gamma: float = 0.99
    learning_rate: float = 5e-4
    optimizer: str = oc.OPTIMIZER  # RMSProp (`nets.optim.OPTIMIZERS`; PyMARL's: "rmsprop_pymarl")
    max_grad_norm: float = 10.0
    batch_size: int = 32  # episodes
    target_update_interval: int = 100
    bootstrap_truncated: bool = True  # time-limit ends bootstrap from the final observation (PyMARL)
    double_q: bool = False

    def __post_init__(self):
        require_positive(self, ("mixer_embed", "gamma", "learning_rate", "max_grad_norm", "batch_size",
                                "target_update_interval"))
        require_unit_interval(self, ("gamma",))
        oc.require_decomposition_mixer(self)
        oc.require_optimizer(self)
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"MABCQConfig.threshold: expected ζ in [0, 1), got {self.threshold!r}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"MABCQConfig.hidden: expected positive layer widths, got {self.hidden!r}")


class MABCQState(NamedTuple):
    """One seed's MABCQ state."""

    params: dict  # {"agent": Q_i's parameters, "mixer": the mixer's}
    target: dict  # the target copy of `params`
    behaviour: dict  # μ's parameters (frozen: the behaviour stage's result)
    opt_state: optax.OptState
    step: jax.Array  # int32: updates so far (the target period counts them)


def net_config(config: MABCQConfig, spec) -> AgentNetConfig:
    """Q_i(τ_i, ·), and μ_i(·|τ_i) with the same architecture."""
    return oc.agent_net_config(spec, config.hidden, config.recurrent)


def divergence_hint(config: MABCQConfig) -> str:
    """What to do when the loss diverges (for `oc.warn_if_diverged(history["loss"], ...)`)."""
    target = f"the max over the familiar actions (ζ = {config.threshold:g})"
    if config.mixer == "linear" and not config.normalise_mixer:
        return (f"the linear mixer's weights are unnormalised (normalise_mixer=False), so they can grow and multiply "
                f"the overestimation of {target}; set normalise_mixer=True (the default)")
    return (f"{target} overestimates; raise MABCQConfig.threshold to narrow the actions it ranges over, lower the "
            f"learning rate (now {config.learning_rate:g}) or lengthen target_update_interval "
            f"(now {config.target_update_interval})")


def mixer_config(config: MABCQConfig, spec) -> MixerConfig:
    return oc.decomposition_mixer(config, spec)


def behaviour_config(config: MABCQConfig) -> bc.BCConfig:
    """BC settings for μ: the Q network's architecture, SIT's shared optimiser settings
    (the behaviour stage: `fit(bc.learner(behaviour_config(config), dataset), ...)`)."""
    return bc.BCConfig(hidden=config.hidden, recurrent=config.recurrent, learning_rate=config.learning_rate,
                       max_grad_norm=config.max_grad_norm, batch_size=config.batch_size, sample_actions=False)


def bcq_targets(net, mixer, params, target, behaviour, batch, config: MABCQConfig) -> jax.Array:
    """y_t = r_t + γ Q'(τ_{t+1}, ã_{t+1}) with ã the best familiar actions (eq. 12)."""
    q_next = oc.unroll(net, target["agent"], batch["obs_ext"])[:, 1:]
    chooser = oc.unroll(net, params["agent"], batch["obs_ext"])[:, 1:] if config.double_q else q_next
    logits_next = oc.unroll(net, behaviour, batch["obs_ext"])[:, 1:]
    best = bcq_actions(chooser, logits_next, batch["avail_ext"][:, 1:], config.threshold)
    value = mix(mixer, target["mixer"], oc.taken(q_next, best), batch["state_ext"][:, 1:])
    return oc.batch_returns(batch, value, config.gamma)


def bcq_loss(params, target, behaviour, batch, net: AgentNetConfig, mixer: MixerConfig, config: MABCQConfig):
    """Eq. 12: E[(y − Q_tot)²] (each step weighted by its agents' mean decision weight
    when the batch has weights)."""
    y = jax.lax.stop_gradient(bcq_targets(net, mixer, params, target, behaviour, batch, config))
    q = oc.unroll(net, params["agent"], batch["obs"])
    q_tot = mix(mixer, params["mixer"], oc.taken(q, batch["actions"]), batch["state"])
    return ops.weighted_mean((y - q_tot) ** 2, batch["mask"], ops.step_weight(batch))


def prepare(dataset, inputs: dict) -> dict:
    return oc.episode_data(dataset)


def _check_behaviour(net: AgentNetConfig, behaviour) -> None:
    expected = jax.eval_shape(lambda key: init_params(net, key), jax.random.key(0))
    shapes = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)  # noqa: E731
    if jax.tree.structure(behaviour) != jax.tree.structure(expected) or shapes(behaviour) != shapes(expected):
        raise ValueError(f"MABCQ start: expected one seed's behaviour-model parameters of the Q network's "
                         f"architecture {net} (a BC fit of `behaviour_config(config)`: result.state.params), got "
                         f"{shapes(behaviour)}")


@functools.lru_cache(maxsize=None)
def make_learner(config: MABCQConfig, net: AgentNetConfig, mixer: MixerConfig, max_length: int) -> Learner:
    optimizer = oc.optimizer(config, config.learning_rate)

    def init(key, arrays, start) -> MABCQState:
        """`start`: one seed's μ parameters (the behaviour stage's BC result), frozen."""
        _check_behaviour(net, start)
        agent_key, mixer_key = jax.random.split(key)
        params = {"agent": init_params(net, agent_key), "mixer": init_mixer(mixer, mixer_key)}
        return MABCQState(params, params, start, optimizer.init(params), jnp.int32(0))

    def update(state: MABCQState, key, arrays, items):
        batch = oc.episode_batch(arrays, items, max_length, config.bootstrap_truncated)
        loss, grads = jax.value_and_grad(bcq_loss)(state.params, state.target, state.behaviour, batch, net, mixer,
                                                   config)
        params, opt_state = oc.apply_gradients(optimizer, state.params, state.opt_state, grads)
        target = oc.hard_update(state.target, params, state.step, state.step + 1, config.target_update_interval)
        return MABCQState(params, target, state.behaviour, opt_state, state.step + 1), {"loss": loss}

    def policy(state: MABCQState, arrays) -> BCQPolicy:
        return BCQPolicy(params={"q": state.params["agent"], "behaviour": state.behaviour}, config=net,
                         threshold=config.threshold)

    return Learner("mabcq", init, update, policy, prepare=prepare, unit="episode",
                   batch_size=config.batch_size, headline="loss",
                   needs_start=True, config=config)


def learner(config: MABCQConfig, dataset) -> Learner:
    """MABCQ's Q learning on `dataset` (a discrete-action dataset with avail masks and a
    global state); `fit` it with `start=` the behaviour stage's BC parameters [S, ...]."""
    require_discrete(dataset, "MABCQ")
    return make_learner(config, net_config(config, dataset.spec), mixer_config(config, dataset.spec),
                        int(dataset.lengths.max()))
