"""Samplers: which items a training batch is made of, chosen apart from the learner.

Device arrays. `to_device(dataset, fields)` copies the needed step arrays to the
accelerator once, as a flat dict of jax arrays (a pytree) that also holds the episode
bookkeeping:

    episode_index  int32 [N]   episode of every step row
    episode_start  int32 [E]   first row of every episode
    episode_length int32 [E]

Items. A learner declares the unit its batches are made of:

    "step"        a step row (a joint transition); M = N items
    "episode"     a whole episode, from t = 0; M = E items
    "window"      consecutive steps opened at one of the learner's start rows
                  (`window_start` [M] in its arrays, e.g. every k-th step of every episode)
    "trajectory"  an individual trajectory (episode k, slot j): every agent i draws its B
                  trajectories from the buffer of its agent type (SIT's Stage III, DPER's layout)

The engine draws item indices with a sampler and the learner gathers its batch from them
(`gather_transitions`, `gather_sequences`, ...), so one learner runs under every sampler:

    Uniform()                   P(item) = 1/M; within each type-wise buffer for trajectories
    DPER(config, priorities)    SIT's eq. 7 over type-wise buffers of individual trajectories
                                (`teamsift.data.dper`). For joint units the marginal (ours):
                                P(episode k) = (1/|J|) Σ_J Σ_{j∈J} P_J(k, j), the chance that a
                                draw from a uniformly chosen buffer lands in episode k, shared
                                evenly by the episode's items
    PJAP(config)                Proximal Joint-Action Prioritisation (`teamsift.data.pjap`):
                                P(item) ∝ ρ^α, adaptive — a learner that reports proximity
                                returns d_τ of the items it drew and the sampler updates ρ

Every draw is a pure function of (arrays, state, key) with static sizes, so it runs inside
the jitted, scanned and vmapped update loop; the same key always gives the same items.
`sample_transitions` and `sample_sequences` are the uniform draw and the gather in one call.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from teamsift.data import dper, pjap
from teamsift.data.sumtree import sumtree_build, sumtree_sample
from teamsift.data.views import gather_steps

#: Fields `to_device` moves when none are named: everything transitions need.
DEFAULT_FIELDS = ("obs", "state", "avail", "actions", "reward", "terminated", "truncated",
                  "final_obs", "final_state", "final_avail")
INDEX_FIELDS = ("episode_index", "episode_start", "episode_length")
UNITS = ("step", "episode", "window", "trajectory")

_ON_HOST = contextvars.ContextVar("teamsift_arrays_on_host", default=False)


@contextlib.contextmanager
def on_host():
    """Within this block `to_device` leaves the step arrays where they are (the dataset's
    memory-maps, nothing read) and returns numpy arrays: the streaming placement prepares a
    learner's arrays this way and gathers pages from them (`teamsift.data.pages`)."""
    token = _ON_HOST.set(True)
    try:
        yield
    finally:
        _ON_HOST.reset(token)


def to_device(dataset, fields: Iterable[str] | None = None, device=None) -> dict[str, jax.Array]:
    """Move step arrays (and the episode index arrays) to a JAX device (inside `on_host()`:
    numpy views of the memory-maps, and the index arrays but `episode_index`).

    Args:
        dataset: a loaded `Dataset`.
        fields: step/final field names; None = every field transitions need. Naming
            "obs" (or "state", "avail") without its final_* counterpart is allowed, but
            then the samplers return no next_obs (next_state, next_avail). Fields a
            continuous dataset lacks (avail, final_avail) are skipped when not named
            explicitly.
        device: a `jax.Device` (default: JAX's default device).
    """
    explicit = fields is not None
    fields = tuple(DEFAULT_FIELDS if fields is None else fields)
    host = _ON_HOST.get()
    out: dict[str, jax.Array] = {}
    for name in fields:
        if name not in dataset.steps:
            if explicit:
                raise KeyError(f"dataset has no field {name!r}; it has {sorted(dataset.steps)}")
            continue
        out[name] = dataset.steps[name] if host else jax.device_put(np.asarray(dataset.steps[name]), device)
    if host:
        out["episode_start"] = dataset.starts.astype(np.int32)
        out["episode_length"] = dataset.lengths.astype(np.int32)
        return out
    out["episode_index"] = jax.device_put(dataset.episode_index.astype(np.int32), device)
    out["episode_start"] = jax.device_put(dataset.starts.astype(np.int32), device)
    out["episode_length"] = jax.device_put(dataset.lengths.astype(np.int32), device)
    return out


# --- gathering a batch at given items --------------------------------------------------------

def gather_transitions(arrays: dict, rows: jax.Array) -> dict[str, jax.Array]:
    """The joint transitions at step rows [B]: the present fields among obs, state, avail,
    actions, reward, terminated, truncated, done, weight, next_obs, next_state, next_avail,
    plus is_last, episode, t (step in episode) and index (step row)."""
    ep = arrays["episode_index"][rows]
    start = arrays["episode_start"][ep]
    last = start + arrays["episode_length"][ep] - 1
    out = gather_steps(jnp, arrays, rows, ep, last)
    out["episode"] = ep
    out["t"] = rows - start
    out["index"] = rows
    if "page_episode" in arrays:  # a streamed page: report the dataset's episodes, steps and rows
        out["episode"] = arrays["page_episode"][ep]
        out["t"] = out["t"] + arrays["page_t"][ep]
        out["index"] = arrays["page_row"][ep] + rows - start
    return out


def gather_sequences(arrays: dict, episode: jax.Array, first: jax.Array, seq_len: int) -> dict[str, jax.Array]:
    """Windows of `seq_len` steps of episodes [B] opened at rows `first` [B] (static seq_len).

    A window never crosses into the next episode: steps past the episode's end are padded
    (zeros; avail True) and `mask` [B, L] is False there. Fields are [B, L, ...], as in
    `gather_transitions`, plus mask, episode [B], t [B, L]."""
    start = arrays["episode_start"][episode]
    last = start + arrays["episode_length"][episode] - 1
    offs = jnp.arange(seq_len, dtype=jnp.int32)
    raw = first[:, None] + offs[None, :]
    mask = raw <= last[:, None]
    rows = jnp.minimum(raw, last[:, None])
    epb = jnp.broadcast_to(episode[:, None], rows.shape)
    out = gather_steps(jnp, arrays, rows, epb, jnp.broadcast_to(last[:, None], rows.shape), mask)
    out["mask"] = mask
    out["episode"] = episode
    out["t"] = raw - start[:, None]
    if "page_episode" in arrays:  # a streamed page: report the dataset's episodes and steps
        out["episode"] = arrays["page_episode"][episode]
        out["t"] = out["t"] + arrays["page_t"][episode][:, None]
    return out


def gather_episodes(arrays: dict, episode: jax.Array, max_length: int) -> dict[str, jax.Array]:
    """Whole episodes [B] from t = 0, padded to `max_length` (see `gather_sequences`)."""
    return gather_sequences(arrays, episode, arrays["episode_start"][episode], max_length)


def gather_windows(arrays: dict, first: jax.Array, seq_len: int) -> dict[str, jax.Array]:
    """Windows opened at step rows `first` [B] (see `gather_sequences`)."""
    return gather_sequences(arrays, arrays["episode_index"][first], first, seq_len)


def sample_transitions(key: jax.Array, arrays: dict, batch_size: int) -> dict[str, jax.Array]:
    """`batch_size` transitions drawn uniformly over step rows (with replacement); see
    `gather_transitions`. `batch_size` must be static under jit."""
    n = arrays["episode_index"].shape[0]
    return gather_transitions(arrays, jax.random.randint(key, (batch_size,), 0, n, dtype=jnp.int32))


def sample_sequences(key: jax.Array, arrays: dict, batch_size: int, seq_len: int,
                     align: str = "step") -> dict[str, jax.Array]:
    """`batch_size` windows of `seq_len` consecutive steps within episodes.

    align="step": the window opens at a step row chosen uniformly over all N rows (so every
    step is equally likely to open a window); align="episode": an episode is chosen
    uniformly and the window opens at its first step (for recurrent agents that need the
    hidden state from t = 0). See `gather_sequences`. Sizes and `align` must be static."""
    if align not in ("step", "episode"):
        raise ValueError(f"align must be 'step' or 'episode', got {align!r}")
    if align == "step":
        n = arrays["episode_index"].shape[0]
        return gather_windows(arrays, jax.random.randint(key, (batch_size,), 0, n, dtype=jnp.int32), seq_len)
    e = arrays["episode_start"].shape[0]
    return gather_episodes(arrays, jax.random.randint(key, (batch_size,), 0, e, dtype=jnp.int32), seq_len)


# --- item spaces --------------------------------------------------------------------------------

class ItemSpace(NamedTuple):
    """What one draw can pick in a dataset (host side, built once per run)."""

    unit: str
    episode: np.ndarray  # [M] int64: the episode of every item (trajectory: every episode)
    agent_types: tuple[str, ...]  # one per slot (trajectory buffers group slots by type)

    @property
    def num_items(self) -> int:
        return int(self.episode.shape[0])


def item_space(dataset, unit: str, window_start: np.ndarray | None = None) -> ItemSpace:
    """The items of `unit` in `dataset` (`window_start` [M]: the window unit's start rows)."""
    if unit not in UNITS:
        raise ValueError(f"sampling unit: expected one of {UNITS}, got {unit!r}")
    if unit == "step":
        episode = dataset.episode_index
    elif unit == "window":
        if window_start is None:
            raise ValueError("sampling unit 'window': the learner's arrays need 'window_start' (the start rows)")
        episode = dataset.episode_index[np.asarray(window_start, np.int64)]
    else:
        episode = np.arange(dataset.num_episodes, dtype=np.int64)
    if episode.shape[0] < 1:
        raise ValueError(f"{getattr(dataset, 'path', 'dataset')}: no {unit}s to sample from")
    return ItemSpace(unit, np.asarray(episode, np.int64), tuple(dataset.spec.agent_types))


# --- trajectory buffers (SIT's type-wise layout) ---------------------------------------------------

class TrajectoryBuffers(NamedTuple):
    """Type-wise buffers of individual trajectories, as a pytree: `buffers[b]` holds its
    sum-tree and the (episode, slot) of every leaf; `slots[b]` [n_b] the agent slots that
    draw from buffer b; `order` [A] the position of slot i in the concatenation of `slots`."""

    buffers: tuple  # of dper.TypeBuffer
    slots: tuple  # of int32 [n_b]
    order: jax.Array  # int32 [A]


def trajectory_buffers(state: dper.DPERState, agent_types, group_by: str) -> TrajectoryBuffers:
    groups = dper.buffer_groups(agent_types, group_by)
    slots = tuple(jnp.asarray(s, jnp.int32) for s in groups.values())
    order = np.argsort(np.concatenate(list(groups.values())), kind="stable")
    return TrajectoryBuffers(tuple(state.buffers[name] for name in groups), slots, jnp.asarray(order, jnp.int32))


def draw_trajectories(buffers: TrajectoryBuffers, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """(episode k [B, A], source slot j [B, A]): for every agent i, `batch_size` individual
    trajectories drawn from its buffer through the sum-tree (stratified, P_J). A buffer shared
    by n slots draws n·B at once, shuffled before they are dealt to its slots."""
    episodes, sources = [], []
    for b, (buffer, slots) in enumerate(zip(buffers.buffers, buffers.slots)):
        draw_key, deal_key = jax.random.split(jax.random.fold_in(key, b))
        count = slots.shape[0] * batch_size
        index = sumtree_sample(buffer.tree, jax.random.fold_in(draw_key, 0), count)
        order = jax.random.permutation(deal_key, count)
        episodes.append(buffer.episode[index][order].reshape(slots.shape[0], batch_size))
        sources.append(buffer.slot[index][order].reshape(slots.shape[0], batch_size))
    episode = jnp.concatenate(episodes)[buffers.order]  # [A, B] in slot order
    source = jnp.concatenate(sources)[buffers.order]
    return episode.T, source.T


# --- sampler kinds --------------------------------------------------------------------------------

def _item_tree(space: ItemSpace, episode_probability: np.ndarray):
    """A sum-tree over the items whose leaves share each episode's probability evenly."""
    per_episode = np.bincount(space.episode, minlength=episode_probability.shape[0]).astype(np.float64)
    leaves = episode_probability[space.episode] / np.maximum(per_episode[space.episode], 1.0)
    return sumtree_build(leaves.astype(np.float32))


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Every item equally likely (trajectories: uniform within each type-wise buffer,
    `group_by` "type" or "slot" as DPER's buffers)."""

    group_by: str = "type"
    name = "uniform"
    adaptive = False

    def arrays(self, space: ItemSpace, dataset) -> Any:
        if space.unit == "trajectory":
            zeros = np.zeros((dataset.num_episodes, len(space.agent_types)))  # equal leaves: uniform per buffer
            state = dper.build_dper_from_priorities(zeros, space.agent_types, dper.DPERConfig(group_by=self.group_by))
            return trajectory_buffers(state, space.agent_types, self.group_by)
        return {"num_items": jnp.zeros((space.num_items, 0), jnp.float32)}  # M, static in the shape

    def init(self, arrays) -> None:
        return None

    def draw(self, arrays, state, key: jax.Array, batch_size: int, unit: str):
        if unit == "trajectory":
            return draw_trajectories(arrays, key, batch_size)
        return jax.random.randint(key, (batch_size,), 0, arrays["num_items"].shape[0], dtype=jnp.int32)


@dataclasses.dataclass(frozen=True)
class DPER:
    """SIT's decomposed prioritised replay from trajectory priorities p̂ [E, A] (ARDNEM's,
    `teamsift.value.ardnem`), with `config`'s temperature, range and buffer layout."""

    config: dper.DPERConfig = dper.DPERConfig()
    priorities: Any = dataclasses.field(default=None, compare=False, hash=False, repr=False)  # [E, A]
    name = "dper"
    adaptive = False

    def buffers(self, dataset) -> dper.DPERState:
        if self.priorities is None:
            raise ValueError("DPER sampler: no trajectory priorities; give ARDNEM's p̂ [E, A] "
                             "(`value --method ardnem`, or let `train --sampler dper` run Stage I)")
        priorities = np.asarray(self.priorities)
        expected = (dataset.num_episodes, dataset.num_agents)
        if priorities.shape != expected:
            raise ValueError(f"DPER sampler priorities: expected shape [E={expected[0]}, A={expected[1]}] for "
                             f"{getattr(dataset, 'path', 'this dataset')}, got {list(priorities.shape)}")
        return dper.build_dper_from_priorities(priorities, dataset.spec.agent_types, self.config)

    def arrays(self, space: ItemSpace, dataset) -> Any:
        state = self.buffers(dataset)
        if space.unit == "trajectory":
            return trajectory_buffers(state, space.agent_types, self.config.group_by)
        episode_probability = np.zeros(dataset.num_episodes)
        for buffer in state.buffers.values():  # (1/|J|) Σ_J Σ_{j∈J} P_J(k, j)
            np.add.at(episode_probability, np.asarray(buffer.episode), np.asarray(buffer.probability, np.float64))
        return {"tree": _item_tree(space, episode_probability / len(state.buffers))}

    def init(self, arrays) -> None:
        return None

    def draw(self, arrays, state, key: jax.Array, batch_size: int, unit: str):
        if unit == "trajectory":
            return draw_trajectories(arrays, key, batch_size)
        return sumtree_sample(arrays["tree"], key, batch_size)


@dataclasses.dataclass(frozen=True)
class PJAP:
    """Proximal Joint-Action Prioritisation (Tilbury et al. 2024): adaptive priorities
    ρ^α per item, updated from the joint-action distance the learner reports for the items
    it drew (`teamsift.data.pjap`). Needs a learner with `proximity`."""

    config: pjap.PJAPConfig = pjap.PJAPConfig()
    name = "pjap"
    adaptive = True

    def arrays(self, space: ItemSpace, dataset) -> Any:
        if space.unit == "trajectory":
            raise ValueError("PJAP sampler: prioritises joint actions, so it draws steps, episodes or windows, "
                             "not individual trajectories")
        return {"num_items": jnp.zeros((space.num_items, 0), jnp.float32)}

    def init(self, arrays) -> pjap.PJAPState:
        return pjap.pjap_init(arrays["num_items"].shape[0], self.config)

    def draw(self, arrays, state: pjap.PJAPState, key: jax.Array, batch_size: int, unit: str):
        return pjap.pjap_sample(state, key, batch_size)

    def feedback(self, state: pjap.PJAPState, items: jax.Array, distance: jax.Array, step):
        """New priorities of the drawn items (eq. 2 at the update count `step`); returns
        (state, {"priority": mean ρ of the items})."""
        state, rho = pjap.pjap_update(state, items, distance, step, self.config)
        return state, {"priority": jnp.mean(rho)}


SAMPLERS = {"uniform": Uniform, "dper": DPER, "pjap": PJAP}
