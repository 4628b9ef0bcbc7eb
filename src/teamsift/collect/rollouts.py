"""Roll a joint policy out into a teamsift dataset, at the speed of the vectorised environment.

Episodes are generated in jitted chunks (`teamsift.evaluate.rollout`: one scan per
episode, vmapped over the chunk, the chunk split over the devices when there are several),
their valid steps are packed on the host with one boolean index per array, and the result
is written atomically with `teamsift.data.write_dataset`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from teamsift.data import write_dataset
from teamsift.envs.base import Env
from teamsift.evaluate.rollout import Episodes, rollout_to_host
from teamsift.progress import progress_bar

STEP_FIELDS = ("obs", "state", "avail", "actions", "reward", "terminated", "truncated")
FINAL_FIELDS = ("final_obs", "final_state", "final_avail")


def default_chunk(env: Env, budget_bytes: int = 512 * 2**20) -> int:
    """Episodes per jitted chunk so that one chunk's step arrays stay near `budget_bytes`.

    It does not depend on the device count: chunk c's episodes use the key fold_in(key, c),
    so the chunk size decides which episodes a dataset holds, and a dataset is the same on
    one device and on several. Over several devices each chunk runs padded to a multiple of
    their number (`rollout_to_host`), at most devices − 1 episodes more (none for the
    4096 cap and a power-of-two device count)."""
    spec = env.spec
    floats_per_step = spec.num_agents * (spec.obs_dim + spec.num_actions) + spec.state_dim + 4
    per_episode = 4 * floats_per_step * spec.episode_length
    return int(max(1, min(4096, budget_bytes // max(per_episode, 1))))


def pack(episodes: Episodes) -> dict[str, np.ndarray]:
    """Fixed-shape [E, T, …] episodes → concatenated valid steps [N, …] + per-episode fields."""
    valid = np.asarray(episodes.valid)
    packed = {}
    for name in STEP_FIELDS:
        value = getattr(episodes, name)
        if value is not None:
            packed[name] = np.asarray(value)[valid]
    for name in FINAL_FIELDS:
        value = getattr(episodes, name)
        if value is not None:
            packed[name] = np.asarray(value)
    packed["episode_lengths"] = valid.sum(axis=1).astype(np.int64)
    packed["scores"] = {name: np.asarray(v, np.float64) for name, v in episodes.scores.items()}
    return packed


def concatenate(parts: Sequence[dict]) -> dict:
    merged = {name: np.concatenate([p[name] for p in parts]) for name in parts[0] if name != "scores"}
    merged["scores"] = {name: np.concatenate([p["scores"][name] for p in parts]) for name in parts[0]["scores"]}
    return merged


def collect_arrays(env: Env, policy, key: jax.Array, num_episodes: int, *, chunk: int | None = None,
                   assignment: np.ndarray | None = None, progress: bool = False) -> dict:
    """Generate `num_episodes` episodes of `policy` and return them packed (see `pack`).

    `assignment` [E, A] (with a `PolicyBank`) picks the policy of each slot per episode.
    """
    chunk = min(chunk or default_chunk(env), num_episodes)
    num_chunks = math.ceil(num_episodes / chunk)
    parts = []
    with progress_bar(progress) as bar:
        task = bar.add_task(f"collect {env.spec.env_id}", total=num_episodes)
        for index in range(num_chunks):
            size = min(chunk, num_episodes - index * chunk)
            chunk_assignment = None
            if assignment is not None:
                rows = np.arange(index * chunk, index * chunk + chunk) % num_episodes
                chunk_assignment = np.asarray(assignment, np.int32)[rows]
            # The last chunk is padded to full size so it reuses the compiled program; over several
            # devices every chunk is split between them (padded to a multiple of their number).
            episodes = rollout_to_host(env, policy, jax.random.fold_in(key, index), chunk,
                                       assignment=chunk_assignment)
            if size < chunk:
                episodes = jax.tree.map(lambda x: x[:size], episodes)
            parts.append(pack(episodes))
            bar.update(task, advance=size)
    return concatenate(parts)


def collect(
    env: Env,
    policy,
    key: jax.Array,
    num_episodes: int,
    out_dir: str | os.PathLike,
    *,
    assignment: np.ndarray | None = None,
    agent_ids: np.ndarray | None = None,
    behaviour: np.ndarray | None = None,
    policy_ids: np.ndarray | None = None,
    provenance: dict | None = None,
    notes: str = "",
    discount: float = 0.99,
    overwrite: bool = False,
    chunk: int | None = None,
    progress: bool = False,
) -> Path:
    """Roll `policy` out for `num_episodes` episodes and write them as a dataset at `out_dir`.

    `assignment` [E, A] (with a `PolicyBank`) picks the policy of each slot per episode.
    `agent_ids`, `behaviour` and `policy_ids` ([E, A] strings) record who acted in each
    slot; when omitted, `behaviour`/`policy_ids` are not stored and agent ids default to
    one-time ids.
    """
    arrays = collect_arrays(env, policy, key, num_episodes, chunk=chunk, assignment=assignment, progress=progress)
    scores = {name: values for name, values in arrays.pop("scores").items() if name != "return"}
    return write_dataset(
        out_dir,
        spec=env.spec,
        env_kwargs=dict(env.kwargs),
        scores=scores,
        agent_ids=agent_ids,
        behaviour=behaviour,
        policy_ids=policy_ids,
        provenance=provenance,
        notes=notes,
        discount=discount,
        overwrite=overwrite,
        **arrays,
    )
