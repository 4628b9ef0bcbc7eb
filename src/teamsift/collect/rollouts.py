"""Roll a joint policy out into a teamsift dataset, at the speed of the vectorised environment.

Episodes are played packed (`teamsift.evaluate.packed`: a fixed number of environment
slots, each starting the next episode as soon as its last one ends, the slots split over
the devices when there are several) and streamed to disk in order as they finish
(`teamsift.data.write_dataset_chunks`, atomic), so memory does not grow with the number of
episodes. Episode g's randomness is fixed by its index and the key-block size (`chunk`):
block b of `chunk` episodes uses the key fold_in(key, b), as when each block was one
`teamsift.evaluate.rollout` call.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

from teamsift.data import write_dataset_chunks
from teamsift.envs.base import Env
from teamsift.evaluate.packed import concat_parts, packed_episodes
from teamsift.evaluate.rollout import Episodes
from teamsift.progress import progress_bar

STEP_FIELDS = ("obs", "state", "avail", "actions", "reward", "terminated", "truncated")
FINAL_FIELDS = ("final_obs", "final_state", "final_avail")


def default_chunk(env: Env, budget_bytes: int = 512 * 2**20) -> int:
    """Episodes per key block (block c's episodes use the key fold_in(key, c)), so the
    block size decides which episodes a dataset holds. It is what an unpacked rollout of
    a block with step arrays near `budget_bytes` would hold (capped at 4096), kept so
    that a seed gives the datasets it always gave; it does not depend on the device count,
    so a dataset is the same on one device and on several."""
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


#: Environment slots played at once at most by default (`teamsift.evaluate.packed_episodes`).
DEFAULT_SLOTS = 1024


def default_slots(num_episodes: int) -> int:
    """Environment slots for `num_episodes` episodes: enough that each plays about 16
    episodes, between 256 and `DEFAULT_SLOTS`. When the queue runs out, every slot still
    steps until the last episodes end (up to an episode length, whatever the others do),
    so more slots than that mostly add idle steps at the end."""
    return int(min(DEFAULT_SLOTS, max(256, num_episodes // 16)))


def collected_chunks(env: Env, policy, key: jax.Array, num_episodes: int, *, chunk: int | None = None,
                     assignment: np.ndarray | None = None, slots: int | None = None, progress: bool = False):
    """Yield `num_episodes` episodes of `policy` in order, a batch of whole episodes at a
    time, packed as `pack` packs them (plus "first_episode").

    `assignment` [E, A] (with a `PolicyBank` or `CheckpointBank`) picks the policy of each
    slot per episode. A `CheckpointBank` is cut down to the checkpoints `assignment` uses
    (known before anything runs), so the networks evaluated per step do not grow with the
    bank.
    """
    chunk = min(chunk or default_chunk(env), num_episodes)
    if assignment is not None:
        assignment = np.asarray(assignment, np.int32)
        if hasattr(policy, "subset"):
            used, assignment = np.unique(assignment, return_inverse=True)
            policy = policy.subset(used)
            assignment = assignment.reshape(num_episodes, -1).astype(np.int32)
    with progress_bar(progress) as bar:
        task = bar.add_task(f"collect {env.spec.env_id}", total=num_episodes)
        for batch in packed_episodes(env, policy, key, num_episodes, block=chunk, assignment=assignment,
                                     slots=slots or default_slots(num_episodes)):
            bar.update(task, advance=len(batch["episode_lengths"]))
            yield batch


def collect_arrays(env: Env, policy, key: jax.Array, num_episodes: int, *, chunk: int | None = None,
                   assignment: np.ndarray | None = None, slots: int | None = None, progress: bool = False) -> dict:
    """Generate `num_episodes` episodes of `policy` and return them packed (see `pack`),
    all in memory. `assignment` [E, A] (with a `PolicyBank`) picks the policy of each slot
    per episode."""
    parts = list(collected_chunks(env, policy, key, num_episodes, chunk=chunk, assignment=assignment,
                                  slots=slots, progress=progress))
    for part in parts:
        del part["first_episode"]
    return concat_parts(parts)


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
    slots: int | None = None,
    progress: bool = False,
) -> Path:
    """Roll `policy` out for `num_episodes` episodes and write them as a dataset at `out_dir`.

    `assignment` [E, A] (with a `PolicyBank`) picks the policy of each slot per episode.
    `agent_ids`, `behaviour` and `policy_ids` ([E, A] strings, or `Labels`) record who acted in each
    slot; when omitted, `behaviour`/`policy_ids` are not stored and agent ids default to
    one-time ids. `chunk` is the key-block size (`default_chunk`), `slots` the number of
    environments played at once; neither changes what is held in memory much, which does
    not grow with `num_episodes` beyond the episode table.
    """

    def chunks():
        for batch in collected_chunks(env, policy, key, num_episodes, chunk=chunk, assignment=assignment,
                                      slots=slots, progress=progress):
            batch.pop("first_episode")
            batch["scores"] = {name: values for name, values in batch["scores"].items() if name != "return"}
            yield batch

    return write_dataset_chunks(
        out_dir,
        chunks(),
        spec=env.spec,
        env_kwargs=dict(env.kwargs),
        agent_ids=agent_ids,
        behaviour=behaviour,
        policy_ids=policy_ids,
        provenance=provenance,
        notes=notes,
        discount=discount,
        overwrite=overwrite,
    )
