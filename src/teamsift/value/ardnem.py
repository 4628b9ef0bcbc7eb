"""ARDNEM: attention-based reward decomposition with an ensemble (SIT Stage I, eqs. 1–6).

For every step t of episode k and agent i (parameters shared by all agents, SIT §ARDNEM):

    r_i      = f(o_i, a_i, id_i)                                   reward network
    λ_i      ∝ exp(e_sᵀ W_qᵀ W_k e_i),  e_s = MLP(s), e_i = MLP(o_i, a_i, id_i)   (eq. 1)
    r̂_tot    = Σ_i λ_i r_i                                                        (eq. 2)
    L(ψ)     = 1/M Σ_m (Σ_i λ_{i,m} r_{i,m} − r_tot)²       M ensemble members    (eq. 3)

    for update in 1 … U:                                   (the engine: lax loops inside jit)
        draw a batch of 32 whole episodes (the run's sampler); every member sees it
        for every member m:  ψ_m ← RMSProp(∇ of its own term of eq. 3), clipped to norm 10

after training, over the whole dataset (`result`):

    r̂_i = mean_m λ_{i,m} r_{i,m}          weighted individual reward              (eq. 4)
    û_i = std_m  λ_{i,m} r_{i,m}          uncertainty (population std)            (eq. 5)
    ĝ_i^t = Σ_{t'≥t} γ^{t'−t} r̂_i^{t'}     individual Monte Carlo return           (eq. 6)
    p̂_i^k = 1/T Σ_t ĝ_i^{t,k}             trajectory priority (Algorithm 1, line 14)

which DPER (`teamsift.data.dper`, eq. 7; the `teamsift.data.DPER` sampler) turns into
sampling probabilities:

    fitted = fit(ardnem.learner(config, dataset), dataset, key, RunConfig(updates=20_000))
    stage1 = ardnem.result(config, fitted, dataset)            # ARDNEMResult: r̂, û, ĝ, p̂

Defaults are SIT's Table 10 (lr 1e-4, RMSProp, reward network 64-64, batch 32 episodes,
M = 5, 20 000 updates: the registry's budget) and the discount of Table 11.

Ablations and the alternative of SIT's appendix E.1:
  * attention=False ("w/o attention"): λ_i ≡ 1, so r̂_tot = Σ_i r_i;
  * ensemble_size=1 ("w/o ensemble"): û ≡ 0;
  * mixer="monotonic" (MNC, eq. 15): r̂_tot = QMIX-style hypernetwork mixer of the r_i
    conditioned on s, with non-negative weights (∂r_tot/∂r_i ≥ 0); the decomposed
    individual reward is r_i itself (the quantity SIT's Figure 7(b) plots).

Choices the paper leaves open (ours): a batch is 32 whole episodes (pymarl's meaning of
"batch size 32"), every step of them counted in eq. 3; the M members see the same batch
and differ by initialisation; each member's optimiser step uses the gradient of its own
squared error (eq. 3 without the 1/M factor, which RMSProp would normalise away anyway)
and clips it on its own; RMSProp with pymarl's α = 0.99, ε = 1e-5 (ε outside the root,
as in PyTorch); discrete actions enter as one-hots; no slot ids by default (SIT's
f(o_i, a_i) with shared parameters — ids would let the network split a fixed team's
reward by slot arbitrarily); when an environment has no global state (state_dim 0) the
joint observation stands in for s. Eq. 1's logits are divided by √h (scaled dot
product): the same function class as eq. 1 (the factor can be absorbed into W_q, W_k),
only a smaller initial scale, which keeps the softmax from saturating at
initialisation — unscaled, the fit was markedly worse and the ranking of individual
trajectories unreliable in our tests (`scaled_attention=False` restores it). Eq. 6 as
printed has γ^{t−t'}; we use the intended γ^{t'−t}. Per-decision weights
(`fit(..., weights=...)`) weigh each step's squared error by the mean weight of its
agents (eq. 3 is a joint term).

At every log point the learner's probe reports the mean r̂ per slot (and per
ground-truth level, when the dataset has one) on a fixed probe set of episodes — the data
of SIT's Figure 3(a)/(d) (`ARDNEMResult.logs["probe"]`, `teamsift.value.plots`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from teamsift.checks import require_choice, require_positive, require_unit_interval
from teamsift.data import gather_episodes, to_device
from teamsift.engine import Learner
from teamsift.nets.agent import MLP, with_agent_ids
from teamsift.nets import ops

MIXERS = ("attention", "monotonic")
OPTIMIZERS = ("rmsprop", "adam")
#: Metrics: "loss" (eq. 3, the members' mean) and "member_loss" [M] every update; the probe's
#: at every log point: the mean r̂ per slot [A] and per ground-truth level.
PROBE_SLOT = "probe_slot_mean"
PROBE_LEVEL = "probe_level_mean/"  # + the ground-truth level


@dataclasses.dataclass(frozen=True)
class ARDNEMConfig:
    """Defaults: SIT Table 10 (ARDNEM) and the discount of Table 11."""

    learning_rate: float = 1e-4
    optimizer: str = "rmsprop"
    max_grad_norm: float = 10.0
    reward_hidden: int = 64  # "Reward network dimension": f = MLP(64, 64) → 1
    attention_hidden: int = 64  # embeddings e_s, e_i and query/key width
    batch_size: int = 32  # episodes per update
    ensemble_size: int = 5  # M
    discount: float = 0.99  # γ of eq. 6 (Table 11)
    # Ablations / appendix E.1.
    attention: bool = True  # False: λ ≡ 1 ("w/o attention")
    mixer: str = "attention"  # "attention" (eqs. 1–2) | "monotonic" (MNC, eq. 15)
    mixer_hidden: int = 32  # MNC hypernetwork embedding width (QMIX's 32)
    agent_ids: bool = False  # append one-hot slot ids to (o_i, a_i); SIT's f(o_i, a_i) has none
    scaled_attention: bool = True  # eq. 1's logits / √h: a reparametrisation of W_q, W_k (see above)
    # Implementation (ours).
    rmsprop_decay: float = 0.99
    rmsprop_eps: float = 1e-5
    probe_episodes: int = 64  # fixed probe set for the per-slot reward log
    inference_rows: int = 8192  # step rows per jitted call of the decomposition pass

    def __post_init__(self):
        require_choice(self, "mixer", MIXERS)
        require_choice(self, "optimizer", OPTIMIZERS)
        for name in ("reward_hidden", "attention_hidden", "batch_size", "ensemble_size", "mixer_hidden",
                     "probe_episodes", "inference_rows"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ARDNEMConfig.{name}: expected an integer >= 1, got {value!r}")
        require_unit_interval(self, ("discount",))
        require_positive(self, ("learning_rate", "max_grad_norm"))


class NetShape(NamedTuple):
    """Static facts about the inputs (part of the jit cache key)."""

    num_agents: int
    obs_dim: int
    action_width: int  # nA (one-hot) or D
    discrete: bool
    state_dim: int  # 0: the joint observation stands in for the state
    max_length: int

    @property
    def global_dim(self) -> int:
        return self.state_dim if self.state_dim > 0 else self.num_agents * self.obs_dim


def net_shape(dataset) -> NetShape:
    spec = dataset.spec
    return NetShape(spec.num_agents, spec.obs_dim, spec.num_actions, bool(spec.discrete), spec.state_dim,
                    int(dataset.lengths.max()))


# --- network --------------------------------------------------------------------------------


class Decomposition(NamedTuple):
    rewards: jax.Array  # r_i = f(o_i, a_i) [..., A]
    weights: jax.Array  # λ_i [..., A] (eq. 1; ones w/o attention and for MNC)
    weighted: jax.Array  # λ_i r_i [..., A] — the decomposed individual reward (r_i for MNC)
    total: jax.Array  # r̂_tot [...] (eq. 2, or the MNC mixer)


class RewardDecomposer(nn.Module):
    """One ensemble member: (agent inputs [..., A, I], state [..., S]) → Decomposition."""

    config: ARDNEMConfig

    @nn.compact
    def __call__(self, inputs, state) -> Decomposition:
        c = self.config
        rewards = MLP((c.reward_hidden, c.reward_hidden), 1, name="reward")(inputs)[..., 0]  # r_i = f(o_i, a_i)
        if c.mixer == "monotonic":
            total = MonotonicMixer(c.mixer_hidden, name="mixer")(rewards, state)
            return Decomposition(rewards, jnp.ones_like(rewards), rewards, total)
        if c.attention:
            weights = self.attention_weights(inputs, state)  # eq. 1
        else:
            weights = jnp.ones_like(rewards)  # w/o attention: λ ≡ 1
        weighted = weights * rewards
        return Decomposition(rewards, weights, weighted, jnp.sum(weighted, axis=-1))  # eq. 2

    def attention_weights(self, inputs, state):
        """λ_i = softmax_i(e_sᵀ W_qᵀ W_k e_i) — the key-value memory read of eq. 1."""
        h = self.config.attention_hidden
        query = nn.Dense(h, use_bias=False, name="W_q")(MLP((h,), h, name="embed_state")(state))
        keys = nn.Dense(h, use_bias=False, name="W_k")(MLP((h,), h, name="embed_agent")(inputs))
        logits = jnp.einsum("...d,...ad->...a", query, keys)
        if self.config.scaled_attention:
            logits = logits / jnp.sqrt(jnp.float32(h))
        return jax.nn.softmax(logits, axis=-1)


class MonotonicMixer(nn.Module):
    """QMIX's hypernetwork mixer applied to rewards (SIT appendix E.1, eq. 15)."""

    hidden: int

    @nn.compact
    def __call__(self, rewards, state):
        a, h = rewards.shape[-1], self.hidden
        w1 = jnp.abs(nn.Dense(a * h, name="hyper_w1")(state)).reshape(state.shape[:-1] + (a, h))
        b1 = nn.Dense(h, name="hyper_b1")(state)
        hidden = nn.elu(jnp.einsum("...a,...ah->...h", rewards, w1) + b1)
        w2 = jnp.abs(nn.Dense(h, name="hyper_w2")(state))
        bias = MLP((h,), 1, name="hyper_v")(state)[..., 0]
        return jnp.sum(hidden * w2, axis=-1) + bias


def agent_inputs(shape: NetShape, config: ARDNEMConfig, obs, actions) -> jax.Array:
    """Per-agent features [..., A, I]: observation, action (one-hot if discrete), slot id."""
    acts = jax.nn.one_hot(actions, shape.action_width, dtype=obs.dtype) if shape.discrete else actions
    features = jnp.concatenate([obs, acts.astype(obs.dtype)], axis=-1)
    return with_agent_ids(features, shape.num_agents) if config.agent_ids else features


def global_inputs(shape: NetShape, obs, state) -> jax.Array:
    """The global state s [..., S], or the joint observation when the env has none."""
    if shape.state_dim > 0:
        return state
    return obs.reshape(obs.shape[:-2] + (shape.num_agents * shape.obs_dim,))


def apply_member(config: ARDNEMConfig, shape: NetShape, params, obs, actions, state) -> Decomposition:
    """One member on raw step arrays [..., A, ·] → its Decomposition."""
    model = RewardDecomposer(config)
    return model.apply(params, agent_inputs(shape, config, obs, actions), global_inputs(shape, obs, state))


def init_member(config: ARDNEMConfig, shape: NetShape, key: jax.Array):
    model = RewardDecomposer(config)
    inputs = jnp.zeros((shape.num_agents, shape.obs_dim + shape.action_width
                        + (shape.num_agents if config.agent_ids else 0)), jnp.float32)
    return model.init(key, inputs, jnp.zeros((shape.global_dim,), jnp.float32))


# --- the learner ----------------------------------------------------------------------------


class ARDNEMState(NamedTuple):
    """One seed's Stage I state: the M members' parameters and optimiser states (leading axis M)."""

    params: Any
    opt_state: optax.OptState


def make_optimizer(config: ARDNEMConfig) -> optax.GradientTransformation:
    if config.optimizer == "rmsprop":
        opt = optax.rmsprop(config.learning_rate, decay=config.rmsprop_decay, eps=config.rmsprop_eps,
                            eps_in_sqrt=False)
    else:
        opt = optax.adam(config.learning_rate)
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), opt)


def member_loss(params, config: ARDNEMConfig, shape: NetShape, batch: dict) -> jax.Array:
    """One member's term of eq. 3: masked mean over the batch's steps of (r̂_tot − r_tot)²
    (weighted by each step's mean decision weight when the batch has weights)."""
    total = apply_member(config, shape, params, batch["obs"], batch["actions"], batch.get("state")).total
    return ops.weighted_mean((total - batch["reward"]) ** 2, batch["mask"], ops.step_weight(batch))


def check_dataset(dataset) -> None:
    needed = ("obs", "actions", "reward") + (("state",) if dataset.spec.state_dim > 0 else ())
    missing = [name for name in needed if name not in dataset.steps]
    if missing:
        raise ValueError(f"{dataset.path}: ARDNEM dataset: expected step fields {list(needed)}, missing {missing}")


def probe_episodes(dataset, count: int) -> np.ndarray:
    """The fixed probe set: `count` episodes evenly spread over the dataset (all if fewer)."""
    count = min(count, dataset.num_episodes)
    return np.unique(np.round(np.linspace(0, dataset.num_episodes - 1, count)).astype(np.int64))


def behaviour_levels(dataset) -> tuple[str, ...]:
    """The dataset's ground-truth levels (`episodes["behaviour"]`, `[E, A]`), sorted; `()` if none."""
    if "behaviour" not in dataset.episodes:
        return ()
    return tuple(str(level) for level in np.unique(np.asarray(dataset.episodes["behaviour"]).astype(str)))


def prepare(config: ARDNEMConfig, levels: tuple[str, ...], dataset, inputs: dict) -> dict:
    """The step fields eq. 3 reads, and the probe set: its step rows `probe_rows` [R] and,
    per ground-truth level, the mask of its (row, slot)s `probe_levels` [L, R, A]."""
    fields = ("obs", "actions", "reward") + (("state",) if dataset.spec.state_dim > 0 else ())
    arrays = to_device(dataset, fields)
    episodes = probe_episodes(dataset, config.probe_episodes)
    lengths = dataset.lengths[episodes]
    rows = np.concatenate([np.arange(s, s + n) for s, n in zip(dataset.starts[episodes], lengths)])
    arrays["probe_rows"] = jnp.asarray(rows, jnp.int32)
    if levels:
        behaviour = np.repeat(np.asarray(dataset.episodes["behaviour"]).astype(str)[episodes], lengths, axis=0)
        arrays["probe_levels"] = jnp.asarray(np.stack([behaviour == level for level in levels]), jnp.float32)
    return arrays


def ensemble_rewards(config: ARDNEMConfig, shape: NetShape, params, obs, actions, state):
    """Eqs. 4–5 over the M members (params with a leading M axis): (r̂ [..., A], û [..., A])."""
    weighted = jax.vmap(lambda p: apply_member(config, shape, p, obs, actions, state).weighted)(params)
    return weighted.mean(axis=0), weighted.std(axis=0)


@functools.lru_cache(maxsize=None)
def make_learner(config: ARDNEMConfig, shape: NetShape, levels: tuple[str, ...] = ()) -> Learner:
    """Stage I for `config` on data of `shape`; `levels` names the probe's ground-truth levels."""
    optimizer = make_optimizer(config)

    def init(key, arrays) -> ARDNEMState:
        def member(member_key):
            params = init_member(config, shape, member_key)
            return params, optimizer.init(params)

        return ARDNEMState(*jax.vmap(member)(jax.random.split(key, config.ensemble_size)))

    def update(state: ARDNEMState, key, arrays, items):
        batch = gather_episodes(arrays, items, shape.max_length)

        def member_step(member_params, member_opt_state):
            loss, grads = jax.value_and_grad(member_loss)(member_params, config, shape, batch)
            updates, member_opt_state = optimizer.update(grads, member_opt_state, member_params)
            return optax.apply_updates(member_params, updates), member_opt_state, loss

        params, opt_state, losses = jax.vmap(member_step)(state.params, state.opt_state)
        return ARDNEMState(params, opt_state), {"loss": losses.mean(), "member_loss": losses}  # eq. 3 = the mean

    def probe(state: ARDNEMState, arrays) -> dict:
        rows = arrays["probe_rows"]
        reward, _ = ensemble_rewards(config, shape, state.params, arrays["obs"][rows], arrays["actions"][rows],
                                     arrays["state"][rows] if shape.state_dim > 0 else None)
        out = {PROBE_SLOT: reward.mean(axis=0)}
        for index, level in enumerate(levels):
            mask = arrays["probe_levels"][index]
            out[PROBE_LEVEL + level] = jnp.sum(reward * mask) / jnp.maximum(jnp.sum(mask), 1.0)
        return out

    return Learner("ardnem", init, update, None, prepare=functools.partial(prepare, config, levels),
                   unit="episode", batch_size=config.batch_size, probe=probe, config=config)


def learner(config: ARDNEMConfig, dataset) -> Learner:
    """Stage I on `dataset` (obs, actions, the team reward, and the state where there is one)."""
    check_dataset(dataset)
    return make_learner(config, net_shape(dataset), behaviour_levels(dataset))


# --- the decomposition pass (eqs. 4–6) --------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("config", "shape"))
def _ensemble_chunk(config: ARDNEMConfig, shape: NetShape, params, obs, actions, state):
    return ensemble_rewards(config, shape, params, obs, actions, state)


def rows_rewards(config, shape, params, steps, rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(r̂, û) [len(rows), A] for step rows, in jitted chunks of `size` rows (padded, then cut)."""
    means, stds = [], []
    for lo in range(0, len(rows), size):
        chunk = rows[lo: lo + size]
        padded = np.concatenate([chunk, np.full(size - len(chunk), chunk[-1], chunk.dtype)])
        state = steps["state"][padded] if shape.state_dim > 0 else np.zeros((size, 0), np.float32)
        mean, std = _ensemble_chunk(config, shape, params, steps["obs"][padded], steps["actions"][padded], state)
        means.append(np.asarray(mean)[: len(chunk)])
        stds.append(np.asarray(std)[: len(chunk)])
    return np.concatenate(means), np.concatenate(stds)


class ProbeLog(NamedTuple):
    """Mean r̂ on the probe set at each log point (SIT Figure 3(a)/(d) data)."""

    updates: np.ndarray  # [L] number of updates done at each log point
    slot_mean: np.ndarray  # [L, A] mean r̂ per slot
    level_mean: dict  # level -> [L] mean r̂ over the (row, slot)s of that ground-truth level


@dataclasses.dataclass(frozen=True)
class ARDNEMResult:
    """Stage I output over a whole dataset, ready for DPER (Stage II)."""

    config: ARDNEMConfig
    shape: NetShape
    params: Any  # pytree with a leading ensemble axis M
    reward: np.ndarray  # r̂ [N, A] (eq. 4)
    uncertainty: np.ndarray  # û [N, A] (eq. 5)
    step_return: np.ndarray  # ĝ [N, A] (eq. 6)
    episode_return: np.ndarray  # ĝ at each trajectory's first step [E, A]
    priority: np.ndarray  # p̂ [E, A] = mean_t ĝ (Algorithm 1, line 14)
    logs: dict  # at the L log points: updates [L], loss [L], member_loss [L, M], elapsed [L]; probe: ProbeLog


def individual_returns(reward: np.ndarray, starts: np.ndarray, lengths: np.ndarray, discount: float):
    """Eq. 6 per individual trajectory, and its mean over the episode.

    reward [N, A] → (ĝ [N, A], ĝ at t = 0 [E, A], p̂ = 1/T Σ_t ĝ [E, A]).
    """
    starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
    horizon = int(lengths.max())
    offsets = np.arange(horizon)
    mask = offsets[None, :] < lengths[:, None]  # [E, T]
    rows = np.where(mask, starts[:, None] + offsets[None, :], 0)
    padded = np.where(mask[..., None], reward[rows], 0.0).astype(np.float64)  # [E, T, A]
    returns = np.zeros_like(padded)
    following = np.zeros(padded[:, 0].shape)
    for t in range(horizon - 1, -1, -1):  # ĝ^t = r̂^t + γ ĝ^{t+1} within the episode
        following = padded[:, t] + discount * following * mask[:, t, None]
        returns[:, t] = following
    step_return = returns[mask].astype(np.float32)  # rows are episode-major and contiguous
    priority = returns.sum(axis=1) / lengths[:, None]
    return step_return, returns[:, 0].astype(np.float32), priority.astype(np.float32)


def decompose(config: ARDNEMConfig, shape: NetShape, params, dataset) -> dict[str, np.ndarray]:
    """The pass after training (eqs. 4–6) with trained params: r̂, û, ĝ over all steps;
    per-trajectory ĝ and p̂."""
    rows = np.arange(dataset.num_steps, dtype=np.int64)
    reward, uncertainty = rows_rewards(config, shape, params, dataset.steps, rows,
                                       min(config.inference_rows, dataset.num_steps))
    step_return, episode_return, priority = individual_returns(reward, dataset.starts, dataset.lengths,
                                                               config.discount)
    return {"reward": reward, "uncertainty": uncertainty, "step_return": step_return,
            "episode_return": episode_return, "priority": priority}


def check_result(result: ARDNEMResult, dataset) -> None:
    """A Stage I result (e.g. loaded from disk) fits `dataset`: r̂, û, ĝ [N, A], p̂ [E, A]."""
    n, e, a = dataset.num_steps, dataset.num_episodes, dataset.num_agents
    for name, shape in (("reward", (n, a)), ("uncertainty", (n, a)), ("step_return", (n, a)), ("priority", (e, a))):
        found = np.shape(getattr(result, name, None))
        if found != shape:
            raise ValueError(f"stage1.{name}: expected shape {list(shape)} for {dataset.path}, got {list(found)} "
                             f"(a Stage I result of another dataset?)")


def result(config: ARDNEMConfig, fitted, dataset) -> ARDNEMResult:
    """Stage I's result from a one-seed `fit` of `learner(config, dataset)`: the
    decomposition of every step of `dataset` (eqs. 4–6) by the trained ensemble, and the
    fit's logs (loss and probe at every log point)."""
    if fitted.learner is not learner(config, dataset):
        raise ValueError("ardnem.result: `fitted` is not a fit of ardnem.learner(config, dataset) for this config "
                         "and dataset")
    if fitted.seeds != 1:
        raise ValueError(f"ardnem.result: Stage I is one ensemble (one seed), got a fit with {fitted.seeds} seeds")
    shape = net_shape(dataset)
    params = jax.tree.map(lambda x: np.asarray(x[0]), fitted.state.params)
    history = fitted.history
    updates = np.asarray(history["update"], np.int64)

    def logged(name, tail=()):
        return np.asarray(history[name][0]) if name in history else np.zeros((len(updates),) + tail)

    levels = behaviour_levels(dataset)
    probe = ProbeLog(updates, logged(PROBE_SLOT, (shape.num_agents,)),
                     {level: logged(PROBE_LEVEL + level) for level in levels})
    logs = {"updates": updates, "loss": logged("loss"), "member_loss": logged("member_loss", (config.ensemble_size,)),
            "elapsed": np.asarray(history.get("elapsed", np.zeros(0))), "probe": probe,
            "config": dataclasses.asdict(config)}
    return ARDNEMResult(config=config, shape=shape, params=params, logs=logs,
                        **decompose(config, shape, params, dataset))


# --- saving and loading a Stage I result (msgpack, never pickle) ------------------------------

RESULT_FORMAT = "teamsift-ardnem-result-2"
#: Earlier formats `load_result` still reads: 1 logged the loss of every update (`logs["updates"]`
#: is then 1 … U) and the seconds of each chunk, and its config had the schedule fields.
OLD_FORMATS = ("teamsift-ardnem-result-1",)
_RESULT_ARRAYS = ("reward", "uncertainty", "step_return", "episode_return", "priority")


def save_result(result: ARDNEMResult, path) -> Path:
    """Write `result` (config, trained ensemble, decomposition and logs) to one msgpack
    file, atomically; `load_result` reads it back."""
    from flax import serialization

    from teamsift.fileio import atomic_write_bytes

    probe = result.logs["probe"]
    payload = {
        "format": RESULT_FORMAT,
        "config": json.dumps(dataclasses.asdict(result.config)),
        "shape": json.dumps(list(result.shape)),
        "params": serialization.to_state_dict(jax.tree.map(np.asarray, result.params)),
        "arrays": {name: np.asarray(getattr(result, name)) for name in _RESULT_ARRAYS},
        "logs": {"updates": np.asarray(result.logs["updates"]), "loss": np.asarray(result.logs["loss"]),
                 "member_loss": np.asarray(result.logs["member_loss"]),
                 "elapsed": np.asarray(result.logs["elapsed"]),
                 "probe_updates": np.asarray(probe.updates), "probe_slot_mean": np.asarray(probe.slot_mean),
                 "probe_level_mean": {level: np.asarray(v) for level, v in probe.level_mean.items()}},
    }
    return atomic_write_bytes(path, serialization.msgpack_serialize(payload))


def load_result(path) -> ARDNEMResult:
    """Read a Stage I result written by `save_result` (or by the format before it); a file
    of another kind raises a ValueError naming it."""
    from flax import serialization

    path = Path(path)
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
    except Exception as exc:  # msgpack raises several kinds on foreign bytes
        raise ValueError(f"{path}: not a teamsift ARDNEM result ({type(exc).__name__}: {exc})") from exc
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found != RESULT_FORMAT and found not in OLD_FORMATS:
        raise ValueError(f"{path}: field 'format': expected {RESULT_FORMAT!r}, got {found!r}")
    fields = {f.name for f in dataclasses.fields(ARDNEMConfig)}
    config = ARDNEMConfig(**{k: v for k, v in json.loads(payload["config"]).items() if k in fields})
    shape = NetShape(*json.loads(payload["shape"]))
    logs = payload["logs"]
    loss = np.asarray(logs["loss"])
    if found == RESULT_FORMAT:
        updates, elapsed = np.asarray(logs["updates"]), np.asarray(logs["elapsed"])
    else:  # format 1: one loss per update, chunk seconds
        updates, elapsed = np.arange(1, len(loss) + 1), np.cumsum(np.asarray(logs["chunk_seconds"]))
    probe = ProbeLog(np.asarray(logs["probe_updates"]), np.asarray(logs["probe_slot_mean"]),
                     {level: np.asarray(v) for level, v in dict(logs["probe_level_mean"]).items()})
    return ARDNEMResult(config=config, shape=shape, params=payload["params"],
                        logs={"updates": updates, "loss": loss, "member_loss": np.asarray(logs["member_loss"]),
                              "elapsed": elapsed, "probe": probe, "config": dataclasses.asdict(config)},
                        **{name: payload["arrays"][name] for name in _RESULT_ARRAYS})
