"""DPER: decomposed prioritised experience replay over individual trajectories (SIT Stage II).

Every joint episode k is cut into its N individual trajectories (k, i). ARDNEM gives each
one a priority p̂_i^k = mean_t ĝ_i^{t,k} (`teamsift.value.ardnem`). The trajectories are
stored by agent type J — one buffer per type, holding the trajectories of every slot of
that type, so that isomorphic agents share them — and sampled through a sum-tree with

    p̃_i^k = lo + (hi − lo) · (p̂_i^k − min_J p̂) / (max_J p̂ − min_J p̂)    linear rescale to [0, 20]
    p_i^k  = exp(p̃_i^k / α) / Σ_{j∈J, k'} exp(p̃_j^{k'} / α)              eq. 7, α = 0.2

SIT: "all sampling priorities p̂ are linearly scaled to a uniform range, allowing our
method to share the same temperature factor α across environments" and Table 11's
"rescaled priority range [0, 20]"; methods.md §4 (ours): min–max over each type-wise
buffer. The rescaling therefore comes before the softmax (`rescale="before_softmax"`,
the default). `rescale="after_softmax"` instead applies eq. 7 to the raw p̂ and
min–max rescales the resulting probabilities to [0, 20], which are then the sum-tree
priorities (sampling ∝ rescaled value; the lowest trajectory of a buffer is never drawn).

Beware the paper's numbers together: α = 0.2 on a [0, 20] range puts a factor e^100
between a buffer's best and worst trajectory, and e^5 between two trajectories one unit
(5% of the range) apart, so the draws collapse onto the few best trajectories of each
buffer (`effective_sizes` ≈ 1 on our test data). A larger α spreads them out.

`build_dper` returns a `DPERState` pytree; `dper_sample(state, key, batch_size)` is pure
and jittable (batch_size static) and returns, per type, the (episode, slot) of each
sampled individual trajectory.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from teamsift.data.sumtree import SumTree, sumtree_build, sumtree_sample

RESCALE_MODES = ("before_softmax", "after_softmax")
GROUPINGS = ("type", "slot")


@dataclasses.dataclass(frozen=True)
class DPERConfig:
    """Defaults: SIT Table 11 (α, rescaled priority range)."""

    alpha: float = 0.2  # softmax temperature of eq. 7 (α → ∞: uniform)
    priority_range: tuple[float, float] = (0.0, 20.0)
    rescale: str = "before_softmax"  # see the module docstring
    group_by: str = "type"  # one buffer per agent type (SIT) or per slot

    def __post_init__(self):
        if not self.alpha > 0:
            raise ValueError(f"DPERConfig.alpha: expected a positive temperature, got {self.alpha!r}")
        lo, hi = self.priority_range
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi):
            raise ValueError(f"DPERConfig.priority_range: expected (lo, hi) with 0 <= lo < hi, got {self.priority_range!r}")
        if self.rescale not in RESCALE_MODES:
            raise ValueError(f"DPERConfig.rescale: expected one of {RESCALE_MODES}, got {self.rescale!r}")
        if self.group_by not in GROUPINGS:
            raise ValueError(f"DPERConfig.group_by: expected one of {GROUPINGS}, got {self.group_by!r}")


class TypeBuffer(NamedTuple):
    """One type-wise buffer of K individual trajectories."""

    tree: SumTree  # leaves = sampling priorities (padded to a power of two)
    episode: jax.Array  # [K] int32
    slot: jax.Array  # [K] int32
    scaled: jax.Array  # [K] float32 — rescaled p̂ (before_softmax) or rescaled p (after_softmax)
    probability: jax.Array  # [K] float32 — the probability of drawing each trajectory


class DPERState(NamedTuple):
    buffers: dict  # buffer name (agent type, or "slot<i>") -> TypeBuffer


class DPERSample(NamedTuple):
    episode: jax.Array  # [B] int32
    slot: jax.Array  # [B] int32
    index: jax.Array  # [B] int32, position in the buffer


def min_max(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map of values onto [lo, hi]; constant values map to lo."""
    span = values.max() - values.min()
    if span <= 0:
        return np.full(values.shape, lo, np.float64)
    return lo + (hi - lo) * (values - values.min()) / span


def softmax_priorities(values: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 7 over one buffer: exp(v/α) / Σ exp(v/α), computed stably in float64."""
    logits = np.asarray(values, np.float64) / alpha
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def buffer_priorities(raw: np.ndarray, config: DPERConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scaled values, sampling probabilities, sum-tree leaves) of one buffer from raw p̂."""
    lo, hi = config.priority_range
    if config.rescale == "before_softmax":
        scaled = min_max(raw, lo, hi)
        probability = softmax_priorities(scaled, config.alpha)
        return scaled, probability, probability
    softmax = softmax_priorities(raw, config.alpha)
    scaled = min_max(softmax, lo, hi)
    probability = scaled / scaled.sum() if scaled.sum() > 0 else np.full(scaled.shape, 1.0 / len(scaled))
    return scaled, probability, (scaled if scaled.sum() > 0 else np.ones_like(scaled))


def buffer_groups(agent_types, group_by: str) -> dict[str, np.ndarray]:
    """Buffer name -> the slots it holds."""
    agent_types = list(agent_types)
    if group_by == "slot":
        return {f"slot{i}": np.asarray([i]) for i in range(len(agent_types))}
    names = list(dict.fromkeys(agent_types))
    return {name: np.flatnonzero(np.asarray(agent_types) == name) for name in names}


def build_dper_from_priorities(priority, agent_types, config: DPERConfig = DPERConfig()) -> DPERState:
    """Type-wise buffers from raw trajectory priorities p̂ [E, A] and the slots' agent types."""
    priority = np.asarray(priority, np.float64)
    agent_types = tuple(agent_types)
    if priority.ndim != 2 or priority.shape[1] != len(agent_types):
        raise ValueError(f"DPER priority: expected shape [E, A={len(agent_types)}], got {list(priority.shape)}")
    if priority.shape[0] < 1:
        raise ValueError("DPER priority: expected at least one episode, got 0")
    if not np.all(np.isfinite(priority)):
        raise ValueError("DPER priority: expected finite values, found NaN or inf")
    buffers = {}
    for name, slots in buffer_groups(agent_types, config.group_by).items():
        episode, slot = np.meshgrid(np.arange(priority.shape[0]), slots, indexing="ij")
        episode, slot = episode.reshape(-1), slot.reshape(-1)
        scaled, probability, leaves = buffer_priorities(priority[episode, slot], config)
        buffers[name] = TypeBuffer(
            tree=sumtree_build(leaves.astype(np.float32)),
            episode=jnp.asarray(episode, jnp.int32),
            slot=jnp.asarray(slot, jnp.int32),
            scaled=jnp.asarray(scaled, jnp.float32),
            probability=jnp.asarray(probability, jnp.float32),
        )
    return DPERState(buffers)


def build_dper(ardnem_result, dataset, config: DPERConfig = DPERConfig()) -> DPERState:
    """DPER from an `ARDNEMResult` (its p̂ [E, A]) over `dataset` (for the agent types)."""
    priority = np.asarray(ardnem_result.priority)
    expected = (dataset.num_episodes, dataset.num_agents)
    if priority.shape != expected:
        raise ValueError(f"ardnem_result.priority: expected shape [E={expected[0]}, A={expected[1]}] "
                         f"for this dataset, got {list(priority.shape)}")
    return build_dper_from_priorities(priority, dataset.spec.agent_types, config)


def effective_sizes(state: DPERState) -> dict[str, float]:
    """Kish's effective number of trajectories per buffer, 1 / Σ p² (K when uniform)."""
    return {name: float(1.0 / np.sum(np.asarray(b.probability, np.float64) ** 2)) for name, b in state.buffers.items()}


def dper_sample(state: DPERState, key: jax.Array, batch_size: int, stratified: bool = True) -> dict[str, DPERSample]:
    """Draw `batch_size` individual trajectories from every buffer (P_J of SIT eqs. 9–10).

    Pure and jittable (`batch_size`, `stratified` static); buffer b uses fold_in(key, b).
    stratified=True is PER's stratified sum-tree sampling; False: i.i.d. proportional draws.
    """
    out = {}
    for b, (name, buffer) in enumerate(state.buffers.items()):
        index = sumtree_sample(buffer.tree, jax.random.fold_in(key, b), batch_size, stratified)
        out[name] = DPERSample(buffer.episode[index], buffer.slot[index], index)
    return out
