"""Views over a dataset: index arithmetic over the (memory-mapped) step arrays.

No view copies the big arrays: a view holds the dataset and computes, for the rows a
caller asks for, where they live. Only the requested batch is gathered.

* `Transitions` — joint transitions, one per step row i (len N): the step's obs, state,
  avail, actions, reward, flags, and the next step's obs/state/avail, where
  next(i) = row i+1 inside an episode and final_*[episode] at its last step.
* `AgentTrajectories` — the individual trajectories, one per (episode, slot) (len E*A),
  each with its agent id, behaviour, policy id and agent type; `.table` lists them.
* `Sequences` — fixed-length windows (or whole episodes) padded to one length, with a
  mask, for recurrent agents.

The gathering code (`gather_steps`) is written once against an array namespace and is
shared with the jit-compatible samplers in `teamsift.data.samplers` (xp = jax.numpy).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

#: Fields with a per-episode final_* counterpart that gives the next step's value.
NEXT_FIELDS = ("obs", "state", "avail")


#: Per-step fields gathered at sampled rows. `weight` ([N, A]) is not stored in datasets:
#: learners add it to the device arrays to weigh each agent decision (EV2BC, DPER, …).
STEP_FIELDS = ("obs", "state", "avail", "actions", "reward", "terminated", "truncated", "weight")


def gather_steps(xp, arrays: Mapping[str, Any], rows, episode, last_row, mask=None) -> dict:
    """Gather the step fields at `rows` (any shape) plus next_* via final_*.

    Args:
        xp: the array namespace (numpy or jax.numpy).
        arrays: name -> array; step arrays have N leading rows, final_* E rows.
            Fields that are absent are skipped.
        rows: int array of step rows (must be valid rows; clamp padded ones first).
        episode: the episode of each row (same shape as rows).
        last_row: the last row of that episode (same shape as rows).
        mask: optional bool array (same shape as rows); where False the outputs are
            zero (False for flags) except `avail`/`next_avail`, which are all True so
            that masked softmaxes stay finite.
    """

    def expand(m, x):
        return xp.reshape(m, m.shape + (1,) * (x.ndim - m.ndim))

    out = {}
    for name in STEP_FIELDS:
        if name in arrays:
            out[name] = arrays[name][rows]
    is_last = rows == last_row
    nxt = xp.where(is_last, rows, rows + 1)  # never out of bounds
    for name in NEXT_FIELDS:
        if name in arrays and "final_" + name in arrays:
            step_next = arrays[name][nxt]
            final = arrays["final_" + name][episode]
            out["next_" + name] = xp.where(expand(is_last, step_next), final, step_next)
    if "terminated" in out and "truncated" in out:
        out["done"] = out["terminated"] | out["truncated"]
    if mask is not None:
        for name, x in out.items():
            m = expand(mask, x)
            if name in ("avail", "next_avail"):
                out[name] = xp.where(m, x, True)
            else:
                out[name] = xp.where(m, x, xp.zeros((), x.dtype))
    out["is_last"] = is_last if mask is None else is_last & mask
    return out


class Transitions:
    """Joint transitions of a dataset, indexable by step row (int, slice or int array).

    `t[idx]` returns a dict of arrays with leading shape idx.shape: obs, state, avail
    (discrete), actions, reward, terminated, truncated, done, next_obs, next_state,
    next_avail (discrete), is_last, episode (row of the episode table), t (step within
    the episode), index (the step row).
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self._episode_index = dataset.episode_index
        self._last = (dataset.starts + dataset.lengths - 1).astype(np.int64)

    def __len__(self) -> int:
        return self.dataset.num_steps

    def __getitem__(self, idx) -> dict[str, np.ndarray]:
        n = len(self)
        if isinstance(idx, slice):
            rows = np.arange(n)[idx]
        else:
            rows = np.asarray(idx, dtype=np.int64)
            if rows.size and (rows.min() < -n or rows.max() >= n):
                raise IndexError(f"step index out of range for {n} steps")
            rows = np.where(rows < 0, rows + n, rows)
        ep = self._episode_index[rows]
        out = gather_steps(np, self.dataset.steps, rows, ep, self._last[ep])
        out["episode"] = ep
        out["t"] = rows - self.dataset.starts[ep]
        out["index"] = rows
        return out

    def next_index(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """(next row, is_last) for step rows; at an episode's last step the next values
        come from final_*[episode] and the returned row is the row itself."""
        rows = np.asarray(rows, dtype=np.int64)
        is_last = rows == self._last[self._episode_index[rows]]
        return np.where(is_last, rows, rows + 1), is_last

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, drop_last: bool = False):
        """Iterate over all transitions in batches (streams from the memory-maps)."""
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_last else n
        for lo in range(0, stop, batch_size):
            idx = order[lo : lo + batch_size]
            yield self[np.sort(idx) if not shuffle else idx]


@dataclasses.dataclass(frozen=True)
class AgentTrajectory:
    """One individual's trajectory: slot `slot` of episode `episode` (array fields are
    views into the dataset's memory-maps; `reward` is the team reward)."""

    episode: int
    slot: int
    agent_id: str
    agent_type: str
    behaviour: str | None
    policy_id: str | None
    obs_width: int
    obs: np.ndarray  # [T, O]
    actions: np.ndarray  # [T] or [T, D]
    avail: np.ndarray | None  # [T, nA]
    reward: np.ndarray  # [T] team reward
    terminated: np.ndarray  # [T]
    truncated: np.ndarray  # [T]
    final_obs: np.ndarray  # [O]
    episode_return: float

    @property
    def length(self) -> int:
        return int(self.obs.shape[0])


class AgentTrajectories:
    """Per-agent individual trajectories, one per (episode, slot), k = episode*A + slot."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return self.dataset.num_episodes * self.dataset.num_agents

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]

    def __getitem__(self, k: int) -> AgentTrajectory:
        a = self.dataset.num_agents
        if not -len(self) <= k < len(self):
            raise IndexError(f"trajectory index {k} out of range for {len(self)} trajectories")
        k = k % len(self)
        return self.get(k // a, k % a)

    def get(self, episode: int, slot: int) -> AgentTrajectory:
        ds = self.dataset
        sl = ds.episode_slice(episode)
        steps, eps, spec = ds.steps, ds.episodes, ds.spec
        return AgentTrajectory(
            episode=int(episode),
            slot=int(slot),
            agent_id=str(eps["agent_ids"][episode, slot]),
            agent_type=spec.agent_types[slot],
            behaviour=str(eps["behaviour"][episode, slot]) if "behaviour" in eps else None,
            policy_id=str(eps["policy_ids"][episode, slot]) if "policy_ids" in eps else None,
            obs_width=int(spec.obs_widths[slot]),
            obs=steps["obs"][sl, slot],
            actions=steps["actions"][sl, slot],
            avail=steps["avail"][sl, slot] if "avail" in steps else None,
            reward=steps["reward"][sl],
            terminated=steps["terminated"][sl],
            truncated=steps["truncated"][sl],
            final_obs=steps["final_obs"][episode, slot],
            episode_return=float(eps["return"][episode]),
        )

    @property
    def table(self) -> dict[str, np.ndarray]:
        """Flat columns [E*A] describing every individual trajectory (for valuation):
        episode, slot, agent_id, agent_type, behaviour/policy_id (when known), start,
        length, return (team), and every score_<name>."""
        ds = self.dataset
        e, a = ds.num_episodes, ds.num_agents
        ep = np.repeat(np.arange(e, dtype=np.int64), a)
        out = {
            "episode": ep,
            "slot": np.tile(np.arange(a, dtype=np.int64), e),
            "agent_id": ds.episodes["agent_ids"].reshape(-1),
            "agent_type": np.tile(np.asarray(ds.spec.agent_types, dtype=str), e),
        }
        for name in ("behaviour", "policy_ids"):
            if name in ds.episodes:
                out["policy_id" if name == "policy_ids" else name] = ds.episodes[name].reshape(-1)
        for name in ("start", "length", "return", *("score_" + s for s in ds.score_names)):
            out[name] = ds.episodes[name][ep]
        return out


class Sequences:
    """Fixed-length padded windows over episodes, for recurrent agents.

    With seq_len=None every episode is one window, padded to the longest episode.
    Otherwise each episode is cut into windows starting at t = 0, stride, 2*stride, ...
    (stride defaults to seq_len: non-overlapping), the last one padded. `s[idx]` returns
    a dict of arrays [B, L, ...] with the fields of `Transitions` plus `mask` [B, L]
    (True on real steps); padded steps are zero (avail: True).
    """

    def __init__(self, dataset, seq_len: int | None = None, stride: int | None = None):
        self.dataset = dataset
        lengths = dataset.lengths.astype(np.int64)
        starts = dataset.starts.astype(np.int64)
        if seq_len is None:
            self.seq_len = int(lengths.max())
            self.window_episode = np.arange(dataset.num_episodes, dtype=np.int64)
            self.window_t0 = np.zeros(dataset.num_episodes, dtype=np.int64)
        else:
            if seq_len < 1:
                raise ValueError(f"seq_len must be >= 1, got {seq_len}")
            stride = seq_len if stride is None else stride
            if stride < 1:
                raise ValueError(f"stride must be >= 1, got {stride}")
            self.seq_len = int(seq_len)
            counts = (lengths - 1) // stride + 1  # windows per episode
            self.window_episode = np.repeat(np.arange(dataset.num_episodes, dtype=np.int64), counts)
            first = np.concatenate([[0], np.cumsum(counts)[:-1]])
            k = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(first, counts)
            self.window_t0 = k * stride
        ep = self.window_episode
        self.window_start = starts[ep] + self.window_t0
        self.window_valid = np.minimum(self.seq_len, lengths[ep] - self.window_t0)
        self._last = starts + lengths - 1

    def __len__(self) -> int:
        return len(self.window_episode)

    def __getitem__(self, idx) -> dict[str, np.ndarray]:
        w = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx, dtype=np.int64)
        ep = self.window_episode[w]
        offs = np.arange(self.seq_len, dtype=np.int64)
        mask = offs < self.window_valid[w][..., None]
        last = self._last[ep][..., None]
        rows = np.minimum(self.window_start[w][..., None] + offs, last)
        epb = np.broadcast_to(ep[..., None], rows.shape)
        out = gather_steps(np, self.dataset.steps, rows, epb, np.broadcast_to(last, rows.shape), mask)
        out["mask"] = mask
        out["episode"] = ep
        out["t"] = self.window_t0[w][..., None] + offs
        return out
