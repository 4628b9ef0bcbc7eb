"""The teamsift dataset format (version 1): writing, loading and validating it.

A dataset is a directory::

    meta.json         {"format": "teamsift-dataset", "format_version": 1, "env_id",
                       "env_kwargs", "spec" (EnvSpec.to_dict()), "discount",
                       "num_episodes", "num_steps", "scores" (names), "provenance",
                       "notes", "created" (ISO 8601, UTC)}
    episodes.parquet  one row per episode (E rows):
                        episode  int64    episode id (0..E-1 when written here)
                        start    int64    row offset of the episode in the step arrays
                        length   int64    number of steps (>= 1)
                        return   float64  team return (sum of `reward` over the episode)
                        score_<name> float64, one per name in meta["scores"]
                        agent_ids  list<string> (length A): individual behind each slot
                        behaviour  list<string> (optional): ground-truth level per slot
                        policy_ids list<string> (optional): behaviour policy per slot
    steps/*.npy       N = sum(length) rows, concatenated over episodes:
                        obs [N,A,O] float32, state [N,S] float32,
                        actions [N,A] int32 (discrete) | [N,A,D] float32 (continuous),
                        reward [N] float32, avail [N,A,nA] bool (discrete only),
                        terminated [N] bool, truncated [N] bool;
                      and one row per episode (E rows):
                        final_obs [E,A,O] float32, final_state [E,S] float32,
                        final_avail [E,A,nA] bool (discrete only)
                      = what the agents saw after the episode's last step, so that a
                      next-step view needs no copy: next(i) = i+1 inside an episode,
                      final_*[episode] at its last step.

Rules the loader (and the writer, before writing anything) enforces: the meta keys and
their types; a known format and version; every file present; exact dtypes and shapes
consistent with the spec and each other; episode offsets (start[0] == 0, contiguous,
length >= 1 and <= spec.episode_length, sum(length) == N); finite float arrays and
columns; discrete actions within each agent's action range and marked available in
`avail` at their step; terminated/truncated only
set at an episode's last step; list columns of length A without nulls; `return`
matching the rewards. Every violation raises `DatasetError` naming the file, the field
and what was expected vs found — never another exception type, never a hang.

`Dataset.episodes` is a dict of numpy columns: 1-D arrays for the scalar columns and
unicode arrays of shape [E, A] for the list columns (`agent_ids`, and `behaviour` /
`policy_ids` when present). `Dataset.steps` maps names to (memory-mapped) arrays.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import numpy as np

from teamsift.data.errors import DatasetError, describe_array, describe_shape, short_exc
from teamsift.data.pages import release
from teamsift.envs.base import EnvSpec
from teamsift.fileio import write_directory

FORMAT_NAME = "teamsift-dataset"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

META_FILE = "meta.json"
EPISODES_FILE = "episodes.parquet"
STEPS_DIR = "steps"

#: Per-step arrays (N rows) and per-episode final arrays (E rows).
STEP_FIELDS = ("obs", "state", "actions", "reward", "avail", "terminated", "truncated")
FINAL_FIELDS = ("final_obs", "final_state", "final_avail")
#: Fields that exist only for discrete-action datasets.
DISCRETE_ONLY = ("avail", "final_avail")
#: List columns of the episode table ([E, A] unicode arrays in `Dataset.episodes`).
LIST_COLUMNS = ("agent_ids", "behaviour", "policy_ids")
OPTIONAL_LIST_COLUMNS = ("behaviour", "policy_ids")
SCORE_PREFIX = "score_"

#: meta.json keys and the Python types their values must have.
META_KEYS: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "format_version": (int,),
    "env_id": (str,),
    "env_kwargs": (dict,),
    "spec": (dict,),
    "discount": (int, float),
    "num_episodes": (int,),
    "num_steps": (int,),
    "scores": (list,),
    "provenance": (dict,),
    "notes": (str,),
    "created": (str,),
}

_CHUNK_BYTES = 8 << 20  # value checks read the memory-maps this many bytes at a time (and let them go)


def step_file(field: str) -> str:
    """Relative path of the .npy file holding `field`."""
    return f"{STEPS_DIR}/{field}.npy"


# ---------------------------------------------------------------------------------------
# Spec and expected layout
# ---------------------------------------------------------------------------------------


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def check_spec(spec: Any, file: str = META_FILE, where: Any = None) -> EnvSpec:
    """Check that `spec` is a self-consistent EnvSpec; return it."""
    if not isinstance(spec, EnvSpec):
        raise DatasetError(file, "spec", "an EnvSpec", f"a {type(spec).__name__}", where=where)

    def bad(name, expected, found):
        raise DatasetError(file, f"spec.{name}", expected, found, where=where)

    if not isinstance(spec.env_id, str) or not spec.env_id:
        bad("env_id", "a non-empty string", repr(spec.env_id))
    if not isinstance(spec.agents, tuple) or not spec.agents or not all(isinstance(a, str) for a in spec.agents):
        bad("agents", "a non-empty tuple of agent names", repr(spec.agents))
    a = len(spec.agents)
    for name in ("agent_types", "obs_widths", "action_dims"):
        value = getattr(spec, name)
        if not isinstance(value, tuple) or len(value) != a:
            bad(name, f"a tuple of length A={a}", repr(value))
    if not all(isinstance(t, str) for t in spec.agent_types):
        bad("agent_types", "strings", repr(spec.agent_types))
    for name, lo in (("obs_dim", 1), ("state_dim", 0), ("num_actions", 1), ("episode_length", 1)):
        value = getattr(spec, name)
        if not _is_int(value) or value < lo:
            bad(name, f"an integer >= {lo}", repr(value))
    if not isinstance(spec.discrete, (bool, np.bool_)):
        bad("discrete", "a bool", repr(spec.discrete))
    for i, w in enumerate(spec.obs_widths):
        if not _is_int(w) or not 0 <= w <= spec.obs_dim:
            bad("obs_widths", f"integers in [0, obs_dim={spec.obs_dim}]", f"{w!r} for agent {i}")
    for i, d in enumerate(spec.action_dims):
        if not _is_int(d) or not 1 <= d <= spec.num_actions:
            bad("action_dims", f"integers in [1, num_actions={spec.num_actions}]", f"{d!r} for agent {i}")
    for name in ("scores", "lower_is_better"):
        value = getattr(spec, name)
        if not isinstance(value, tuple) or not all(isinstance(s, str) for s in value):
            bad(name, "a tuple of strings", repr(value))
    return spec


def expected_arrays(spec: EnvSpec, num_steps: int, num_episodes: int) -> dict[str, tuple[list, np.dtype]]:
    """name -> (labelled shape, dtype) of every step/final array for this spec."""
    n, e, a = ("N", num_steps), ("E", num_episodes), ("A", spec.num_agents)
    o, s = ("O", spec.obs_dim), ("S", spec.state_dim)
    f32, b = np.dtype(np.float32), np.dtype(bool)
    out = {
        "obs": ([n, a, o], f32),
        "state": ([n, s], f32),
        "reward": ([n], f32),
        "terminated": ([n], b),
        "truncated": ([n], b),
        "final_obs": ([e, a, o], f32),
        "final_state": ([e, s], f32),
    }
    if spec.discrete:
        out["actions"] = ([n, a], np.dtype(np.int32))
        out["avail"] = ([n, a, ("nA", spec.num_actions)], b)
        out["final_avail"] = ([e, a, ("nA", spec.num_actions)], b)
    else:
        out["actions"] = ([n, a, ("D", spec.num_actions)], f32)
    return out


def _shape_of(dims) -> tuple[int, ...]:
    return tuple(d[1] if isinstance(d, tuple) else d for d in dims)


def check_shape_dtype(file, field, shape, dtype, dims, want: np.dtype, where=None) -> None:
    want_shape = _shape_of(dims)
    dtype = np.dtype(dtype)
    if tuple(shape) != want_shape or dtype != want:
        found = f"{describe_shape(list(shape))} {dtype.name}"
        if dtype.name == want.name and dtype != want:
            found += f" (byte order {dtype.byteorder!r})"
        raise DatasetError(file, field, f"shape {describe_shape(dims)} {want.name}", found, where=where)


# ---------------------------------------------------------------------------------------
# Value checks (chunked, so they stream through memory-maps)
# ---------------------------------------------------------------------------------------


def _row_chunks(arr: np.ndarray):
    rows = arr.shape[0] if arr.ndim else 1
    row_bytes = max(1, arr.dtype.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64)))
    step = max(1, _CHUNK_BYTES // row_bytes)
    for lo in range(0, rows, step):
        yield lo, np.asarray(arr[lo : lo + step])
        release(arr, (lo, lo + step))  # nothing stays resident: checking 100 GB needs a chunk of memory


def check_finite(file, field, arr: np.ndarray, where=None, row_name: str = "row") -> None:
    """Raise naming the first row holding a NaN or an infinity."""
    if arr.size == 0 or arr.dtype.kind not in "fc":
        return
    for lo, chunk in _row_chunks(arr):
        ok = np.isfinite(chunk)
        if not ok.all():
            flat = ok.reshape(len(chunk), -1).all(axis=1)
            r = int(np.argmin(flat))
            vals = chunk[r].ravel()[~np.isfinite(chunk[r]).ravel()]
            kind = "NaN" if np.isnan(vals).any() else "inf"
            raise DatasetError(file, field, "finite values", f"{kind} at {row_name} {lo + r}", where=where)


def _check_action_range(file, spec: EnvSpec, actions: np.ndarray, where=None) -> None:
    hi = np.asarray(spec.action_dims, dtype=np.int64)
    for lo, chunk in _row_chunks(actions):
        bad = (chunk < 0) | (chunk >= hi[None, :])
        if bad.any():
            r, slot = np.argwhere(bad)[0]
            raise DatasetError(
                file, "actions",
                f"discrete actions in [0, action_dims[{slot}]={hi[slot]})",
                f"{int(chunk[r, slot])} at row {lo + r}, slot {slot}", where=where)


def _check_actions_available(file_for, actions: np.ndarray, avail: np.ndarray, starts, where=None) -> None:
    """Every logged discrete action must be one that `avail` marks available at its step."""
    bad_steps, first = 0, None
    for lo, mask in _row_chunks(avail):
        chunk = np.asarray(actions[lo : lo + len(mask)], dtype=np.int64)
        release(actions, (lo, lo + len(mask)))
        taken = np.take_along_axis(mask, chunk[..., None], axis=2)[..., 0]  # [rows, A]
        if not taken.all():
            bad_steps += int((~taken).any(axis=1).sum())
            if first is None:
                r, slot = np.argwhere(~taken)[0]
                first = (lo + int(r), int(slot), int(chunk[r, slot]))
    if first is None:
        return
    row, slot, action = first
    starts = np.asarray(starts, np.int64)
    episode = int(np.searchsorted(starts, row, side="right") - 1)
    raise DatasetError(
        file_for("actions"), "actions", f"logged actions that {file_for('avail')} marks available",
        f"{bad_steps} of {len(avail)} steps with an unavailable logged action, the first at episode {episode}, "
        f"t {row - int(starts[episode])}, agent {slot} (action {action})", where=where)


def last_step_mask(starts: np.ndarray, lengths: np.ndarray, num_steps: int) -> np.ndarray:
    is_last = np.zeros(num_steps, dtype=bool)
    is_last[np.asarray(starts, np.int64) + np.asarray(lengths, np.int64) - 1] = True
    return is_last


def _check_flags(file_for, arrays, is_last, where=None) -> None:
    for name in ("terminated", "truncated"):
        flag = np.asarray(arrays[name])
        release(arrays[name])
        bad = flag & ~is_last
        if bad.any():
            r = int(np.argmax(bad))
            raise DatasetError(file_for(name), name, "True only at an episode's last step",
                               f"True at row {r}, which is not the last step of its episode", where=where)


def check_offsets(file, starts, lengths, num_steps: int, max_length: int | None = None, where=None) -> None:
    """Episode offsets: start[0]==0, contiguous, lengths >= 1, sum(length) == N."""
    lengths = np.asarray(lengths)
    if len(lengths) == 0:
        raise DatasetError(file, "length", "at least one episode", "0 episodes", where=where)
    if (lengths < 1).any():
        r = int(np.argmax(lengths < 1))
        raise DatasetError(file, "length", "episode lengths >= 1", f"{int(lengths[r])} at row {r}", where=where)
    if max_length is not None and (lengths > max_length).any():
        r = int(np.argmax(lengths > max_length))
        raise DatasetError(file, "length", f"episode lengths <= spec.episode_length={max_length}",
                           f"{int(lengths[r])} at row {r}", where=where)
    total = int(lengths.sum())
    if total != num_steps:
        raise DatasetError(file, "length", f"lengths summing to num_steps N={num_steps}",
                           f"sum {total}", where=where)
    if starts is None:
        return
    starts = np.asarray(starts)
    want = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    if len(starts) != len(lengths) or not np.array_equal(starts, want):
        if len(starts) and starts[0] != 0:
            raise DatasetError(file, "start", "start[0] == 0", f"start[0] = {int(starts[0])}", where=where)
        r = int(np.argmax(starts != want))
        raise DatasetError(file, "start", f"contiguous offsets (start[{r}] = start[{r - 1}] + length[{r - 1}] = {int(want[r])})",
                           f"start[{r}] = {int(starts[r])}", where=where)


def validate_steps(arrays: Mapping[str, np.ndarray], spec: EnvSpec, starts, lengths, *,
                   file_for: Callable[[str], str] = step_file, check_values: bool = True,
                   where=None) -> None:
    """Check step/final arrays against the spec and the episode offsets."""
    num_steps, num_episodes = int(np.sum(lengths)), len(lengths)
    expected = expected_arrays(spec, num_steps, num_episodes)
    for name in DISCRETE_ONLY:
        if not spec.discrete and arrays.get(name) is not None:
            raise DatasetError(file_for(name), name, "no available-action mask (continuous actions)",
                               describe_array(arrays[name]), where=where)
    for name, (dims, dtype) in expected.items():
        arr = arrays.get(name)
        if arr is None:
            raise DatasetError(file_for(name), name, f"present: shape {describe_shape(dims)} {dtype.name}",
                               "missing", where=where)
        check_shape_dtype(file_for(name), name, arr.shape, arr.dtype, dims, dtype, where=where)
    if not check_values:
        return
    for name in expected:
        check_finite(file_for(name), name, arrays[name], where=where)
    if spec.discrete:
        _check_action_range(file_for("actions"), spec, arrays["actions"], where=where)
        _check_actions_available(file_for, arrays["actions"], arrays["avail"], starts, where=where)
    _check_flags(file_for, arrays, last_step_mask(starts, lengths, num_steps), where=where)


def episode_returns(reward: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Team return per episode, summed in float64."""
    return np.add.reduceat(np.asarray(reward, dtype=np.float64), np.asarray(starts, np.int64))


def check_list_column(file, name, values: np.ndarray, num_episodes: int, num_agents: int, where=None) -> None:
    if values.ndim != 2 or values.shape != (num_episodes, num_agents):
        raise DatasetError(file, name, f"a list of A={num_agents} strings per episode ([E={num_episodes}, A={num_agents}])",
                           describe_array(values), where=where)
    if values.dtype.kind != "U":
        raise DatasetError(file, name, "unicode strings", f"dtype {values.dtype.name}", where=where)


class Labels(NamedTuple):
    """An [E, A] table of strings held as `names[codes]`: a small integer per entry and each
    distinct string once. `write_dataset(_chunks)` takes it for `agent_ids`, `behaviour` and
    `policy_ids` (a table of millions of episodes that repeats a few checkpoint or level
    names then holds no string per entry), and `read_episode_table` gives the list columns
    back in this form."""

    names: np.ndarray  # [K] unicode
    codes: np.ndarray  # [E, A] integers in [0, K)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)

    def strings(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows start..stop as an [e, A] unicode array."""
        return self.names[self.codes[start:stop]]

    @classmethod
    def of(cls, values) -> Labels:
        """The labels of an [E, A] string array (or of `Labels`) with the names `np.unique`
        gives: sorted, each used at least once."""
        if isinstance(values, Labels):
            codes = np.asarray(values.codes)
            used = np.flatnonzero(np.bincount(codes.reshape(-1), minlength=len(values.names)))
            names = np.asarray(values.names)[used]
            order = np.argsort(names, kind="stable")
            remap = np.zeros(len(values.names), np.int32)
            remap[used[order]] = np.arange(len(used), dtype=np.int32)
            return cls(names[order], remap[codes])
        values = np.asarray(values)
        names, codes = np.unique(values, return_inverse=True)
        return cls(names, codes.reshape(values.shape).astype(np.int32))


class _OneTimeIds(NamedTuple):
    """`default_agent_ids`, made a group of rows at a time when the table is written."""

    num_episodes: int
    num_agents: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.num_episodes, self.num_agents

    def strings(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.num_episodes if stop is None else min(stop, self.num_episodes)
        ep = np.char.add("e", np.arange(start, stop).astype(str))[:, None]
        sl = np.char.add("_s", np.arange(self.num_agents).astype(str))[None, :]
        return np.char.add(ep, sl).astype(str)


# ---------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------


class Dataset:
    """A loaded teamsift dataset.

    Attributes:
        path: the dataset directory.
        meta: the parsed meta.json.
        spec: the `EnvSpec` stored in meta.json.
        episodes: dict of numpy columns of episodes.parquet: `episode`, `start`,
            `length` (int64 [E]), `return` and `score_<name>` (float64 [E]), and the
            list columns `agent_ids` (+ `behaviour`, `policy_ids` when present) as
            unicode arrays [E, A].
        steps: dict name -> array (memory-mapped read-only when loaded with mmap=True):
            obs, state, actions, reward, terminated, truncated, final_obs, final_state
            and, for discrete actions, avail and final_avail.
    """

    def __init__(self, path: Path, meta: dict, spec: EnvSpec, episodes: dict, steps: dict):
        self.path = Path(path)
        self.meta = meta
        self.spec = spec
        self.episodes = episodes
        self.steps = steps
        self._episode_index: np.ndarray | None = None

    # -- sizes and columns -------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return int(self.meta["num_episodes"])

    @property
    def num_steps(self) -> int:
        return int(self.meta["num_steps"])

    @property
    def num_agents(self) -> int:
        return self.spec.num_agents

    @property
    def discrete(self) -> bool:
        return bool(self.spec.discrete)

    @property
    def discount(self) -> float:
        return float(self.meta["discount"])

    @property
    def score_names(self) -> tuple[str, ...]:
        """Names of the `score_<name>` columns (the team return is the `return` column)."""
        return tuple(self.meta["scores"])

    @property
    def starts(self) -> np.ndarray:
        return self.episodes["start"]

    @property
    def lengths(self) -> np.ndarray:
        return self.episodes["length"]

    @property
    def returns(self) -> np.ndarray:
        return self.episodes["return"]

    def score(self, name: str) -> np.ndarray:
        """Episode scores [E]: `"return"` or one of `score_names`."""
        if name == "return":
            return self.episodes["return"]
        if name not in self.score_names:
            raise KeyError(f"no score {name!r}; known: return, {', '.join(self.score_names)}")
        return self.episodes[SCORE_PREFIX + name]

    def episode_scores(self, score: str | None = None) -> np.ndarray:
        """The DVF of every episode as float64 [E]: the named score column, or the team
        return (None or "return"); an unknown name is a ValueError naming the file."""
        if score is None or score == "return":
            return np.asarray(self.returns, np.float64)
        if score not in self.score_names:
            raise ValueError(f"{self.path / EPISODES_FILE}: no score {score!r}; expected 'return' or one of "
                             f"{list(self.score_names)}")
        return np.asarray(self.score(score), np.float64)

    @property
    def episode_index(self) -> np.ndarray:
        """int64 [N]: the episode (row of `episodes`) each step belongs to."""
        if self._episode_index is None:
            self._episode_index = np.repeat(np.arange(self.num_episodes, dtype=np.int64), self.lengths)
        return self._episode_index

    def episode_slice(self, e: int) -> slice:
        s = int(self.starts[e])
        return slice(s, s + int(self.lengths[e]))

    def episode(self, e: int) -> dict[str, np.ndarray]:
        """Views (no copies) of one episode's step rows, plus its final_* rows."""
        sl = self.episode_slice(e)
        out = {k: v[sl] for k, v in self.steps.items() if not k.startswith("final_")}
        out.update({k: v[e] for k, v in self.steps.items() if k.startswith("final_")})
        return out

    # -- views (see teamsift.data.views) -------------------------------------------------
    def transitions(self):
        from teamsift.data.views import Transitions

        return Transitions(self)

    def agent_trajectories(self):
        from teamsift.data.views import AgentTrajectories

        return AgentTrajectories(self)

    def sequences(self, seq_len: int | None = None, stride: int | None = None):
        from teamsift.data.views import Sequences

        return Sequences(self, seq_len=seq_len, stride=stride)

    def __repr__(self) -> str:
        kind = "discrete" if self.discrete else "continuous"
        return (f"Dataset({str(self.path)!r}, env_id={self.spec.env_id!r}, episodes={self.num_episodes}, "
                f"steps={self.num_steps}, agents={self.num_agents}, {kind})")


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


def _read_meta(root: Path) -> tuple[dict, EnvSpec]:
    path = root / META_FILE
    if not path.is_file():
        raise DatasetError(META_FILE, "meta", "a file", "missing" if not path.exists() else "not a file", where=root)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - any read/parse failure is a bad file
        raise DatasetError(META_FILE, "meta", "a UTF-8 JSON object", short_exc(exc), where=root) from None
    if not isinstance(meta, dict):
        raise DatasetError(META_FILE, "meta", "a JSON object", f"a JSON {type(meta).__name__}", where=root)
    if meta.get("format") != FORMAT_NAME:
        raise DatasetError(META_FILE, "format", repr(FORMAT_NAME), repr(meta.get("format", "<missing>")), where=root)
    version = meta.get("format_version", "<missing>")
    if not _is_int(version) or version not in SUPPORTED_VERSIONS:
        raise DatasetError(META_FILE, "format_version",
                           f"one of {list(SUPPORTED_VERSIONS)} (this teamsift reads format version {FORMAT_VERSION})",
                           repr(version), where=root)
    for key, types in META_KEYS.items():
        if key not in meta:
            raise DatasetError(META_FILE, key, f"a value of type {'/'.join(t.__name__ for t in types)}",
                               "missing", where=root)
        value = meta[key]
        if not isinstance(value, types) or (int in types and float not in types and isinstance(value, bool)):
            raise DatasetError(META_FILE, key, f"a value of type {'/'.join(t.__name__ for t in types)}",
                               f"{type(value).__name__} {value!r:.60}", where=root)
    _check_meta_values(meta, META_FILE, where=root)
    try:
        spec = EnvSpec.from_dict(meta["spec"])
    except Exception as exc:  # noqa: BLE001
        fields = ", ".join(f.name for f in dataclasses.fields(EnvSpec))
        raise DatasetError(META_FILE, "spec", f"an EnvSpec dict with fields {fields}", short_exc(exc), where=root) from None
    check_spec(spec, META_FILE, where=root)
    if spec.env_id != meta["env_id"]:
        raise DatasetError(META_FILE, "env_id", f"the spec's env_id {spec.env_id!r}", repr(meta["env_id"]), where=root)
    return meta, spec


def _check_meta_values(meta: dict, file: str, where=None) -> None:
    d = meta["discount"]
    if isinstance(d, bool) or not math.isfinite(d) or not 0.0 <= d <= 1.0:
        raise DatasetError(file, "discount", "a number in [0, 1]", repr(d), where=where)
    if meta["num_episodes"] < 1:
        raise DatasetError(file, "num_episodes", "an integer >= 1", repr(meta["num_episodes"]), where=where)
    if meta["num_steps"] < meta["num_episodes"]:
        raise DatasetError(file, "num_steps", f"an integer >= num_episodes={meta['num_episodes']}",
                           repr(meta["num_steps"]), where=where)
    names = meta["scores"]
    for name in names:
        if not isinstance(name, str) or not name or "/" in name:
            raise DatasetError(file, "scores", "a list of non-empty score names", repr(names), where=where)
    if len(set(names)) != len(names):
        raise DatasetError(file, "scores", "distinct score names", repr(names), where=where)


def _is_string_type(t) -> bool:
    import pyarrow as pa

    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _read_episodes(root: Path, meta: dict, spec: EnvSpec, *, labels: bool = False) -> dict[str, Any]:
    """The checked columns of episodes.parquet, read a group of rows at a time (so that no
    whole Arrow table is held); the list columns as [E, A] unicode arrays, or as `Labels`
    with `labels=True`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    f = EPISODES_FILE
    path = root / f
    if not path.is_file():
        raise DatasetError(f, "episodes", "a Parquet file", "missing" if not path.exists() else "not a file", where=root)
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except Exception as exc:  # noqa: BLE001 - garbage, truncation, wrong magic...
        raise DatasetError(f, "episodes", "a readable Parquet file", short_exc(exc), where=root) from None
    num_episodes, a = meta["num_episodes"], spec.num_agents
    if parquet.metadata.num_rows != num_episodes:
        raise DatasetError(f, "episodes", f"num_episodes={num_episodes} rows (meta.json)",
                           f"{parquet.metadata.num_rows} rows", where=root)

    names = meta["scores"]
    scalar = {"episode": pa.int64(), "start": pa.int64(), "length": pa.int64(), "return": pa.float64()}
    scalar.update({SCORE_PREFIX + s: pa.float64() for s in names})
    extra_scores = [c for c in schema.names if c.startswith(SCORE_PREFIX) and c[len(SCORE_PREFIX):] not in names]
    if extra_scores:
        raise DatasetError(f, extra_scores[0], f"only the score columns listed in meta.json scores={names}",
                           f"column {extra_scores[0]!r}", where=root)
    for name, typ in scalar.items():
        if name not in schema.names:
            raise DatasetError(f, name, f"a {typ} column", "missing", where=root)
        if schema.field(name).type != typ:
            raise DatasetError(f, name, f"a {typ} column", f"type {schema.field(name).type}", where=root)
    lists = []
    for name in LIST_COLUMNS:
        if name not in schema.names:
            if name in OPTIONAL_LIST_COLUMNS:
                continue
            raise DatasetError(f, name, "a list<string> column", "missing", where=root)
        t = schema.field(name).type
        if not ((pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_string_type(t.value_type)):
            raise DatasetError(f, name, "a list<string> column", f"type {t}", where=root)
        lists.append(name)

    def first_null(col) -> int:
        return int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))

    # Filled in place a batch at a time: no list of parts to concatenate (which would hold the
    # column twice).
    cols: dict[str, Any] = {name: np.empty(num_episodes, typ.to_pandas_dtype()) for name, typ in scalar.items()}
    tables = {name: _LabelTable(num_episodes * a) for name in lists}
    row = 0  # of the batch's first row
    batches = parquet.iter_batches(batch_size=EPISODES_PER_ROW_GROUP, columns=[*scalar, *lists])
    while True:
        try:
            batch = next(batches, None)
        except Exception as exc:  # noqa: BLE001 - a damaged page
            raise DatasetError(f, "episodes", "a readable Parquet file", short_exc(exc), where=root) from None
        if batch is None or row + batch.num_rows > num_episodes:
            break
        for name in scalar:
            col = batch.column(name)
            if col.null_count:
                raise DatasetError(f, name, "no nulls", f"null at row {row + first_null(col)}", where=root)
            cols[name][row:row + batch.num_rows] = col.to_numpy()
        for name in lists:
            col = batch.column(name)
            if col.null_count:
                raise DatasetError(f, name, f"a list of A={a} strings", f"null at row {row + first_null(col)}",
                                   where=root)
            lens = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            if (lens != a).any():
                r = int(np.argmax(lens != a))
                raise DatasetError(f, name, f"a list of A={a} strings per episode",
                                   f"{int(lens[r])} strings at row {row + r}", where=root)
            flat = col.flatten()
            if flat.null_count:
                raise DatasetError(f, name, f"a list of A={a} strings",
                                   f"a null string at row {row + first_null(flat) // a}", where=root)
            # Through a dictionary: only the distinct strings become Python objects, not every one
            # (a table of checkpoint or level names has a few dozen among millions of entries).
            encoded = pc.dictionary_encode(flat)
            tables[name].add(row * a, encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False))
        row += batch.num_rows
    if row != num_episodes or batch is not None:  # the row groups disagree with the file's footer
        raise DatasetError(f, "episodes", f"num_episodes={num_episodes} rows (meta.json)", "rows that could not be read",
                           where=root)

    for name, table in tables.items():
        column = table.labels(a)
        cols[name] = column if labels else column.strings()
    episode = cols["episode"]
    if (episode < 0).any() or len(np.unique(episode)) != len(episode):
        raise DatasetError(f, "episode", "distinct non-negative episode ids", f"{episode[:8].tolist()}...", where=root)
    check_offsets(f, cols["start"], cols["length"], meta["num_steps"], spec.episode_length, where=root)
    for name in scalar:
        check_finite(f, name, cols[name], where=root)
    return cols


class _LabelTable:
    """`Labels` of `size` entries, filled a batch of dictionary-encoded strings at a time,
    with one code per distinct string across batches."""

    def __init__(self, size: int):
        self.index: dict[str, int] = {}
        self.codes = np.zeros(size, np.int32)

    def add(self, first: int, distinct: list[str], indices: np.ndarray) -> None:
        mapping = np.asarray([self.index.setdefault(s, len(self.index)) for s in distinct], np.int32)
        if len(mapping):
            self.codes[first:first + len(indices)] = mapping[indices]

    def labels(self, num_agents: int) -> Labels:
        names = np.asarray(list(self.index), dtype=str) if self.index else np.zeros(0, "U1")
        return Labels(names, self.codes.reshape(-1, num_agents))


def read_episode_table(path: str | os.PathLike) -> tuple[dict, EnvSpec, dict[str, Any]]:
    """(meta, spec, columns) of a dataset's meta.json and episodes.parquet, checked as
    `load_dataset` checks them, without opening the step arrays; the list columns come as
    `Labels`, so a table of millions of episodes holds no string per entry."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(str(root), "path", "a dataset directory", "missing" if not root.exists() else "not a directory")
    meta, spec = _read_meta(root)
    return meta, spec, _read_episodes(root, meta, spec, labels=True)


def _npy_header(path: Path, file: str, field: str, where) -> tuple[tuple, np.dtype, int]:
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, _fortran, dtype = fmt.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _fortran, dtype = fmt.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            offset = fh.tell()
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(file, field, "a valid .npy file", short_exc(exc), where=where) from None
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise DatasetError(file, field, "a numeric or bool array", "an object (pickled) array", where=where)
    return tuple(shape), dtype, offset


def _open_npy(root: Path, name: str, dims, want: np.dtype, mmap: bool) -> np.ndarray:
    file = step_file(name)
    path = root / file
    if not path.is_file():
        raise DatasetError(file, name, f"present: shape {describe_shape(dims)} {want.name}",
                           "missing" if not path.exists() else "not a file", where=root)
    shape, dtype, offset = _npy_header(path, file, name, root)
    check_shape_dtype(file, name, shape, dtype, dims, want, where=root)
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = path.stat().st_size
    if have != need:
        what = "truncated: " if have < need else "trailing bytes: "
        raise DatasetError(file, name, f"{need} bytes (header + {describe_shape(list(shape))} {dtype.name})",
                           f"{what}{have} bytes", where=root)
    try:
        if mmap and need > offset:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(file, name, "a readable .npy file", short_exc(exc), where=root) from None
    check_shape_dtype(file, name, arr.shape, arr.dtype, dims, want, where=root)
    return arr


def load_dataset(path: str | os.PathLike, mmap: bool = True, *, check_values: bool = True) -> Dataset:
    """Open and validate a teamsift dataset directory.

    Args:
        path: the dataset directory.
        mmap: memory-map the step arrays read-only (default) instead of reading them.
        check_values: also stream through the arrays to check finiteness, action
            ranges, flags and returns (default). With False only the metadata, the
            episode table and the array headers/sizes are checked (fast for huge data).

    Raises:
        DatasetError: naming the file, the field and what was expected vs found.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(str(root), "path", "a dataset directory", "missing" if not root.exists() else "not a directory")
    meta, spec = _read_meta(root)
    episodes = _read_episodes(root, meta, spec)
    n, e = meta["num_steps"], meta["num_episodes"]
    expected = expected_arrays(spec, n, e)
    for name in DISCRETE_ONLY:
        if not spec.discrete and (root / step_file(name)).exists():
            raise DatasetError(step_file(name), name, "no available-action mask (continuous actions)", "a file", where=root)
    steps = {name: _open_npy(root, name, dims, dtype, mmap) for name, (dims, dtype) in expected.items()}
    if check_values:
        validate_steps(steps, spec, episodes["start"], episodes["length"], check_values=True, where=root)
        got = episode_returns(steps["reward"], episodes["start"])
        release(steps["reward"])
        bad = ~np.isclose(episodes["return"], got, rtol=1e-4, atol=1e-4)
        if bad.any():
            r = int(np.argmax(bad))
            raise DatasetError(EPISODES_FILE, "return", f"the sum of steps/reward.npy over the episode ({got[r]:.6g})",
                               f"{episodes['return'][r]:.6g} at row {r}", where=root)
    return Dataset(root, meta, spec, episodes, steps)


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _jsonable(file: str, field: str, value) -> Any:
    try:
        return json.loads(json.dumps(value, default=_json_default, allow_nan=False))
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(file, field, "a JSON-serialisable dict (finite numbers)", short_exc(exc)) from None


def coerce_array(file: str, field: str, value, want: np.dtype) -> np.ndarray:
    """Convert an input to the stored dtype when that loses no meaning.

    float32 targets take any real integer/float input; int32 takes integer input whose
    values fit; bool takes bool input only. Anything else (objects, strings, complex)
    is refused.
    """
    try:
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(file, field, f"an array convertible to {want.name}", short_exc(exc)) from None
    kind = arr.dtype.kind
    if arr.dtype == want:
        return arr
    ok = (want.kind == "f" and kind in "fiu") or (want.kind == "i" and kind in "iu") or (want.kind == "b" and kind == "b")
    if not ok:
        raise DatasetError(file, field, f"{want.name} (or a type convertible without loss)", f"dtype {arr.dtype.name}")
    if want.kind == "i" and arr.size:
        info = np.iinfo(want)
        lo, hi = arr.min(), arr.max()
        if lo < info.min or hi > info.max:
            raise DatasetError(file, field, f"values fitting {want.name}", f"range [{lo}, {hi}]")
    return arr.astype(want)


def _string_table(file: str, field: str, value, num_episodes: int, num_agents: int):
    if isinstance(value, Labels):
        names, codes = np.asarray(value.names), np.asarray(value.codes)
        if names.ndim != 1 or (names.size and names.dtype.kind != "U"):
            raise DatasetError(file, field, "Labels.names: a 1-D array of strings", describe_array(names))
        if codes.dtype.kind not in "iu" or codes.shape != (num_episodes, num_agents):
            raise DatasetError(file, field, f"Labels.codes: integers [E={num_episodes}, A={num_agents}]",
                               describe_array(codes))
        if codes.size and (codes.min() < 0 or codes.max() >= len(names)):
            raise DatasetError(file, field, f"Labels.codes in [0, {len(names)}) (indices into its names)",
                               f"range [{codes.min()}, {codes.max()}]")
        return Labels(names.astype(str), codes)
    arr = np.asarray(value)
    if arr.dtype.kind == "O" and arr.size and all(isinstance(x, str) for x in arr.ravel()):
        arr = arr.astype(str)
    check_list_column(file, field, arr, num_episodes, num_agents)
    return arr


def default_agent_ids(num_episodes: int, num_agents: int) -> np.ndarray:
    """One-time ids "e{episode}_s{slot}": every (episode, slot) is its own individual."""
    return _OneTimeIds(num_episodes, num_agents).strings()


def write_dataset(
    out_dir: str | os.PathLike,
    *,
    spec: EnvSpec,
    obs,
    state,
    actions,
    reward,
    terminated,
    truncated,
    episode_lengths,
    final_obs,
    final_state,
    avail=None,
    final_avail=None,
    scores: Mapping[str, Any] | None = None,
    agent_ids=None,
    behaviour=None,
    policy_ids=None,
    env_kwargs: Mapping[str, Any] | None = None,
    discount: float = 0.99,
    provenance: Mapping[str, Any] | None = None,
    notes: str = "",
    overwrite: bool = False,
) -> Path:
    """Validate and atomically write a teamsift dataset; return its path.

    Arrays are concatenated over episodes (N = sum(episode_lengths) rows; final_* have
    one row per episode). Inputs are converted to the stored dtypes where that loses
    nothing (e.g. float64 obs -> float32, int64 actions -> int32). For discrete
    actions a missing `avail` / `final_avail` means "every action available".
    `agent_ids` defaults to one-time ids "e{episode}_s{slot}" (an anonymised dataset:
    no individual is assumed to appear twice). `scores` maps names to [E] arrays,
    stored as `score_<name>` columns; the `return` column is computed from `reward`.

    Everything is validated (the loader's checks) before anything is written. The data
    go to a temporary sibling directory that is renamed into place only when complete:
    a failure leaves no partial dataset behind, and an existing `out_dir` is replaced
    only with overwrite=True, only once the new dataset is complete, and only if it is
    a teamsift dataset (or an empty directory).

    Raises:
        DatasetError: an input is malformed (the message names the target file/field).
        FileExistsError: `out_dir` exists and overwrite is False (or it is not a dataset).
    """
    out = Path(out_dir).absolute()
    check_output_dir(out, overwrite)
    check_spec(spec)

    try:
        lengths = np.asarray(episode_lengths)
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(EPISODES_FILE, "length", "an integer array [E]", short_exc(exc)) from None
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu":
        raise DatasetError(EPISODES_FILE, "length", "an integer array [E] (episode_lengths)", describe_array(lengths))
    lengths = lengths.astype(np.int64)
    num_episodes = len(lengths)
    check_offsets(EPISODES_FILE, None, lengths, int(lengths.sum()), spec.episode_length)
    num_steps = int(lengths.sum())
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    given = dict(obs=obs, state=state, actions=actions, reward=reward, terminated=terminated, truncated=truncated,
                 final_obs=final_obs, final_state=final_state, avail=avail, final_avail=final_avail)
    arrays = _checked_steps(spec, given, starts, lengths)
    expected = expected_arrays(spec, num_steps, num_episodes)
    returns = episode_returns(arrays["reward"], starts)
    columns, meta = _table_and_meta(spec, lengths, returns, scores, agent_ids, behaviour, policy_ids, env_kwargs,
                                    discount, provenance, notes)

    def write(tmp: Path) -> None:
        (tmp / STEPS_DIR).mkdir()
        for name in expected:
            _write_npy(tmp / step_file(name), arrays[name])
        _write_episodes(tmp / EPISODES_FILE, columns)
        _write_text(tmp / META_FILE, json.dumps(meta, indent=2, allow_nan=False) + "\n")

    return _atomic_write(out, overwrite, write)


def _checked_steps(spec: EnvSpec, given: Mapping[str, Any], starts, lengths, where=None) -> dict[str, np.ndarray]:
    """The step and final arrays of episodes `lengths` in their stored dtypes, validated."""
    expected = expected_arrays(spec, int(np.sum(lengths)), len(lengths))
    arrays: dict[str, np.ndarray] = {}
    for name, value in given.items():
        if value is None:
            continue
        if name in DISCRETE_ONLY and not spec.discrete:
            raise DatasetError(step_file(name), name, "None (continuous actions have no available-action mask)",
                               describe_array(np.asarray(value)), where=where)
        arrays[name] = coerce_array(step_file(name), name, value, expected[name][1])
    if spec.discrete:
        for name in DISCRETE_ONLY:
            if name not in arrays:
                arrays[name] = np.ones(_shape_of(expected[name][0]), dtype=bool)
    validate_steps(arrays, spec, starts, lengths, check_values=True, where=where)
    return arrays


def _table_and_meta(spec: EnvSpec, lengths, returns, scores, agent_ids, behaviour, policy_ids, env_kwargs, discount,
                    provenance, notes) -> tuple[dict[str, np.ndarray], dict]:
    """The episode table's columns and meta.json's content, validated."""
    a = spec.num_agents
    num_episodes, num_steps = len(lengths), int(np.sum(lengths))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    columns: dict[str, np.ndarray] = {
        "episode": np.arange(num_episodes, dtype=np.int64),
        "start": starts,
        "length": lengths,
        "return": returns,
    }
    check_finite(EPISODES_FILE, "return", columns["return"])
    score_names: list[str] = []
    for name, value in (scores or {}).items():
        if not isinstance(name, str) or not name or "/" in name:
            raise DatasetError(EPISODES_FILE, f"score_{name}", "a non-empty score name without '/'", repr(name))
        col = SCORE_PREFIX + name
        arr = coerce_array(EPISODES_FILE, col, value, np.dtype(np.float64))
        if arr.shape != (num_episodes,):
            raise DatasetError(EPISODES_FILE, col, f"shape [E={num_episodes}] float64", describe_array(arr))
        check_finite(EPISODES_FILE, col, arr)
        columns[col] = arr
        score_names.append(name)
    columns["agent_ids"] = (_OneTimeIds(num_episodes, a) if agent_ids is None
                            else _string_table(EPISODES_FILE, "agent_ids", agent_ids, num_episodes, a))
    for name, value in (("behaviour", behaviour), ("policy_ids", policy_ids)):
        if value is not None:
            columns[name] = _string_table(EPISODES_FILE, name, value, num_episodes, a)

    if not isinstance(notes, str):
        raise DatasetError(META_FILE, "notes", "a string", type(notes).__name__)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "env_id": spec.env_id,
        "env_kwargs": _jsonable(META_FILE, "env_kwargs", dict(env_kwargs or {})),
        "spec": _jsonable(META_FILE, "spec", spec.to_dict()),
        "discount": discount,
        "num_episodes": num_episodes,
        "num_steps": num_steps,
        "scores": score_names,
        "provenance": _jsonable(META_FILE, "provenance", dict(provenance or {})),
        "notes": notes,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if isinstance(discount, (np.floating, np.integer)):
        meta["discount"] = discount.item()
    if not isinstance(meta["discount"], (int, float)):
        raise DatasetError(META_FILE, "discount", "a number in [0, 1]", repr(discount))
    _check_meta_values(meta, META_FILE)
    return columns, meta


def write_dataset_chunks(
    out_dir: str | os.PathLike,
    chunks: Iterable[Mapping[str, Any]],
    *,
    spec: EnvSpec,
    agent_ids=None,
    behaviour=None,
    policy_ids=None,
    env_kwargs: Mapping[str, Any] | None = None,
    discount: float = 0.99,
    provenance: Mapping[str, Any] | None = None,
    notes: str = "",
    overwrite: bool = False,
) -> Path:
    """`write_dataset` for data that arrive in pieces: `chunks` yields whole episodes at a
    time, each a mapping with `write_dataset`'s array arguments for those episodes
    (`episode_lengths`, the step and final arrays, `scores`). The dataset written is the
    one `write_dataset` writes from all chunks concatenated; only one chunk is held in
    memory at a time (plus the episode table). `agent_ids`, `behaviour` and `policy_ids`
    cover every episode ([E, A]).

    Each chunk is validated as it comes and appended to the step files of a temporary
    sibling directory, which is renamed into place once the last chunk and the episode
    table are written: as with `write_dataset`, a failure (of the data or of whatever
    produces the chunks) leaves no partial dataset, and an existing `out_dir` is replaced
    only with `overwrite=True`.
    """
    out = Path(out_dir).absolute()
    check_output_dir(out, overwrite)
    check_spec(spec)

    def write(tmp: Path) -> None:
        (tmp / STEPS_DIR).mkdir()
        expected = expected_arrays(spec, 0, 0)
        files = {name: _NpyAppender(tmp / step_file(name), dtype, _shape_of(dims)[1:])
                 for name, (dims, dtype) in expected.items()}
        lengths, returns, scores = [], [], {}
        try:
            for chunk in chunks:
                first = int(sum(len(x) for x in lengths))
                where = f"chunk of episodes {first}..."
                chunk_lengths = np.asarray(chunk["episode_lengths"])
                if chunk_lengths.ndim != 1 or chunk_lengths.dtype.kind not in "iu" or len(chunk_lengths) == 0:
                    raise DatasetError(EPISODES_FILE, "length", "a non-empty integer array [e] per chunk",
                                       describe_array(chunk_lengths), where=where)
                chunk_lengths = chunk_lengths.astype(np.int64)
                check_offsets(EPISODES_FILE, None, chunk_lengths, int(chunk_lengths.sum()), spec.episode_length,
                              where=where)
                starts = np.concatenate([[0], np.cumsum(chunk_lengths)[:-1]]).astype(np.int64)
                given = {name: chunk.get(name) for name in expected}
                arrays = _checked_steps(spec, given, starts, chunk_lengths, where=where)
                for name, handle in files.items():
                    handle.append(arrays[name])
                lengths.append(chunk_lengths)
                returns.append(episode_returns(arrays["reward"], starts))
                for name, value in (chunk.get("scores") or {}).items():
                    scores.setdefault(name, []).append(np.asarray(value))
        finally:
            for handle in files.values():
                handle.close()
        if not lengths:
            raise DatasetError(EPISODES_FILE, "length", "at least one episode", "0 episodes")
        all_lengths = np.concatenate(lengths)
        columns, meta = _table_and_meta(spec, all_lengths, np.concatenate(returns),
                                        {name: np.concatenate(parts) for name, parts in scores.items()},
                                        agent_ids, behaviour, policy_ids, env_kwargs, discount, provenance, notes)
        _write_episodes(tmp / EPISODES_FILE, columns)
        _write_text(tmp / META_FILE, json.dumps(meta, indent=2, allow_nan=False) + "\n")

    return _atomic_write(out, overwrite, write)


class _NpyAppender:
    """A .npy file written a block of rows at a time: a fixed-size header is reserved first
    and filled in with the final shape on `close`, so the rows need not be known (or held)
    up front. The result is an ordinary version 1.0 .npy file."""

    HEADER_BYTES = 256  # magic, version, length and the header dict, padded: room for any shape

    def __init__(self, path: Path, dtype: np.dtype, row_shape: tuple[int, ...]):
        self.dtype, self.row_shape, self.rows = np.dtype(dtype), tuple(row_shape), 0
        self.handle = open(path, "wb")
        self.handle.write(b"\0" * self.HEADER_BYTES)

    def append(self, arr: np.ndarray) -> None:
        self.handle.write(np.ascontiguousarray(arr, self.dtype).data)
        self.rows += len(arr)

    def close(self) -> None:
        if self.handle.closed:
            return
        described = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                     "shape": (self.rows, *self.row_shape)}
        text = repr(described)
        size = self.HEADER_BYTES - 10  # after the magic string, the version and the length field
        header = b"\x93NUMPY\x01\x00" + size.to_bytes(2, "little") + (text.ljust(size - 1) + "\n").encode("latin1")
        self.handle.seek(0)
        self.handle.write(header)
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()


def _write_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


#: Episodes per row group of episodes.parquet: the table is converted to Arrow and written one
#: group at a time, so writing it holds one group's Arrow buffers, not the whole table's
#: (docs/benchmarks.md, peak memory).
EPISODES_PER_ROW_GROUP = 8_192


def _write_episodes(path: Path, columns: Mapping[str, np.ndarray]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def group(start: int):
        data = {}
        for name, col in columns.items():
            stop = start + EPISODES_PER_ROW_GROUP
            col = col.strings(start, stop) if isinstance(col, (Labels, _OneTimeIds)) else col[start:stop]
            if name in LIST_COLUMNS:  # [e, A] strings: A per episode, converted without a Python object each
                offsets = pa.array(np.arange(0, col.size + 1, max(1, col.shape[1]), dtype=np.int32))
                data[name] = pa.ListArray.from_arrays(offsets, pa.array(col.reshape(-1), type=pa.string()))
            else:
                data[name] = pa.array(col)
        return pa.table(data)

    num_episodes = len(columns["episode"])
    first = group(0)
    with pq.ParquetWriter(path, first.schema) as writer:
        writer.write_table(first)
        del first
        for start in range(EPISODES_PER_ROW_GROUP, num_episodes, EPISODES_PER_ROW_GROUP):
            writer.write_table(group(start))


def check_output_dir(out_dir: str | os.PathLike, overwrite: bool,
                     hint: str = "pass overwrite=True to replace it") -> None:
    """Raise `FileExistsError` if writing a dataset to `out_dir` would replace something:
    anything without `overwrite` (the message ends with `hint`), and even with it anything but
    a teamsift dataset (or an empty directory). Commands call this before any work, and
    `write_dataset` again before writing."""
    out = Path(out_dir)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{out} already exists; {hint}")
        _check_replaceable(out)


def _check_replaceable(out: Path) -> None:
    """Only an existing teamsift dataset (or an empty directory) may be overwritten."""
    if out.is_symlink() or not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; refusing to overwrite it")
    if not any(out.iterdir()):
        return
    try:
        meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
        ok = isinstance(meta, dict) and meta.get("format") == FORMAT_NAME
    except Exception:  # noqa: BLE001
        ok = False
    if not ok:
        raise FileExistsError(f"{out} exists and is not a teamsift dataset; refusing to overwrite it")


def _atomic_write(out: Path, overwrite: bool, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` on a fresh sibling temp dir, then rename it to `out`."""
    write_directory(out, write, overwrite=overwrite, check=_check_replaceable)
    return out


# --- fingerprint ---------------------------------------------------------------------------

FINGERPRINT_BLOCK = 1 << 16  # bytes read at each sampled position of a step array
FINGERPRINT_BLOCKS = 16


def dataset_fingerprint(dataset: Dataset) -> str:
    """A short content fingerprint of a dataset directory, recorded by every run: SHA-256
    over meta.json and episodes.parquet in full and, for each step array, its size and
    `FINGERPRINT_BLOCKS` evenly spaced blocks of `FINGERPRINT_BLOCK` bytes (plus its first
    and last block): it changes when any file is replaced, resized or regenerated, and
    costs the same for 1 MB as for 100 GB of steps."""
    import hashlib

    root = Path(dataset.path)
    digest = hashlib.sha256()
    for name in (META_FILE, EPISODES_FILE):
        digest.update(name.encode())
        digest.update((root / name).read_bytes())
    for path in sorted((root / STEPS_DIR).glob("*.npy")):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        positions = sorted({0, max(0, size - FINGERPRINT_BLOCK),
                            *(i * max(0, size - FINGERPRINT_BLOCK) // FINGERPRINT_BLOCKS
                              for i in range(FINGERPRINT_BLOCKS))})
        with open(path, "rb") as handle:
            for position in positions:
                handle.seek(position)
                digest.update(handle.read(FINGERPRINT_BLOCK))
    return digest.hexdigest()[:16]
