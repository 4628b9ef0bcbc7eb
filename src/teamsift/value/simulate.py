"""Simulators for exact and sampled Exchange Values: score groups of individuals by
rolling their joint policy out in the environment (methods.md §1, "Exact EV … with a
simulator").

    scorer = group_scorer(env, bank, individual_policy, key, episodes_per_group=4, score="v_final")
    result = exact_ev(population, env.spec.num_agents, scorer)

Individual j plays with policy `individual_policy[j]` of `bank` (a `PolicyBank` or
`CheckpointBank`, as made by `teamsift.collect.datasets.scripted_population` or
`pool_population`). Group member t sits in slot t. All groups of one call are rolled out
in one jitted `teamsift.evaluate.rollout` call (assignment [G·episodes, k]); only when
G·episodes exceeds `max_episodes_per_call` are they cut into equal chunks (the last
padded, so the compiled program is reused).
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import jax
import numpy as np

from teamsift.envs.base import Env
from teamsift.evaluate.rollout import rollout, rollout_to_host


def _check_groups(groups, group_size: int, population: int) -> np.ndarray:
    groups = np.asarray(groups)
    if groups.ndim != 2 or groups.shape[1] != group_size or groups.dtype.kind not in "iu" or len(groups) == 0:
        raise ValueError(f"groups: expected a non-empty integer array [G, {group_size}] (the environment's group "
                         f"size), got shape {groups.shape} dtype {groups.dtype}")
    if groups.min() < 0 or groups.max() >= population:
        raise ValueError(f"groups: expected individual indices in [0, {population}), "
                         f"got values in [{groups.min()}, {groups.max()}]")
    return groups


def _rollout_scores(env: Env, bank, key: jax.Array, assignment: np.ndarray, score: str,
                    max_episodes_per_call: int) -> np.ndarray:
    """Score of every row of `assignment` [M, k], one episode each."""
    total = len(assignment)
    if total <= max_episodes_per_call:
        episodes = rollout_to_host(env, bank, key, total, record=False, assignment=assignment)
        return np.asarray(episodes.scores[score], dtype=np.float64)
    parts = []
    for index, lo in enumerate(range(0, total, max_episodes_per_call)):
        rows = np.arange(lo, lo + max_episodes_per_call) % total  # the last chunk wraps round
        episodes = rollout(env, bank, jax.random.fold_in(key, index), max_episodes_per_call, record=False,
                           assignment=assignment[rows])
        parts.append(np.asarray(episodes.scores[score], dtype=np.float64)[: min(max_episodes_per_call, total - lo)])
    return np.concatenate(parts)


def group_scorer(env: Env, bank, individual_policy: Sequence[int], key: jax.Array, episodes_per_group: int = 1,
                 score: str = "return", *, max_episodes_per_call: int = 8192) -> Callable[[np.ndarray], np.ndarray]:
    """A `score_groups(groups int[G, k]) -> float[G]` for `exact_ev` / `sampled_ev`: the mean
    of `score` over `episodes_per_group` episodes of each group's joint policy.

    Call c of the returned function uses `fold_in(key, c)`, so repeated calls draw fresh
    episodes and a sequence of calls is reproducible from `key`.
    """
    if score not in env.spec.scores:
        raise ValueError(f"score: expected one of {list(env.spec.scores)} for {env.spec.env_id}, got {score!r}")
    if not isinstance(episodes_per_group, (int, np.integer)) or episodes_per_group < 1:
        raise ValueError(f"episodes_per_group: expected an integer >= 1, got {episodes_per_group!r}")
    if max_episodes_per_call < 1:
        raise ValueError(f"max_episodes_per_call: expected an integer >= 1, got {max_episodes_per_call!r}")
    policy_of = np.asarray(individual_policy, dtype=np.int32)
    if policy_of.ndim != 1 or len(policy_of) < 1:
        raise ValueError(f"individual_policy: expected a 1-D list of policy indices, got shape {policy_of.shape}")
    group_size = env.spec.num_agents
    calls = itertools.count()

    def score_groups(groups) -> np.ndarray:
        groups = _check_groups(groups, group_size, len(policy_of))
        assignment = np.repeat(policy_of[groups], episodes_per_group, axis=0)  # [G·e, k]
        call_key = jax.random.fold_in(key, next(calls))
        scores = _rollout_scores(env, bank, call_key, assignment, score, max_episodes_per_call)
        return scores.reshape(len(groups), episodes_per_group).mean(axis=1)

    return score_groups
