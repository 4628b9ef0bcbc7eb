"""Datasets of mixed quality with ground truth, from policy pools or scripted populations.

* `generate_from_spec`: SIT's agent-wise imbalanced datasets. Each episode draws a term
  of the composition spec (exact proportions), and each slot draws its individual policy
  uniformly from the pool of its level. Every episode stores, per slot, the level
  (`behaviour`) and the checkpoint that acted (`policy_ids`, also the `agent_ids`: a
  checkpoint is one fixed individual).
* `generate_population`: Exchange-Value data. A population of P individuals (each a
  fixed behaviour policy of known level) plays in groups of K; `agent_ids` record who
  played, or one-time ids with `anonymise=True` (as in the human Overcooked data), in
  which case the true individual stays in `policy_ids` as ground truth.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from teamsift.collect.composition import LEVELS, Composition, parse
from teamsift.collect.pools import PoolSet
from teamsift.collect.rollouts import collect
from teamsift.data.format import Labels
from teamsift.envs.base import Env


def draw_assignment(composition: Composition, pools: PoolSet, key: jax.Array, num_episodes: int):
    """Per episode and slot: the checkpoint that plays it, and its level. Returns
    (assignment [E, A] checkpoint indices, levels [E, A] as `Labels` over `LEVELS`,
    terms [E])."""
    pools.require({level for term in composition.levels for level in term})
    term_key, draw_key = jax.random.split(key)
    terms = composition.draw_terms(term_key, num_episodes)
    term_levels = np.asarray([[LEVELS.index(level) for level in term] for term in composition.levels], np.int8)
    levels = term_levels[terms]  # [E, A] indices into LEVELS
    assignment = np.zeros(levels.shape, np.int32)
    for index in np.unique(levels):  # each level's draw has its own key: the order does not matter
        members = pools.members(LEVELS[index])
        where = levels == index
        picks = jax.random.randint(jax.random.fold_in(draw_key, int(index)), (int(where.sum()),), 0, len(members))
        assignment[where] = members[np.asarray(picks)]
    return assignment, Labels(np.asarray(LEVELS), levels), terms


def checkpoint_ids(assignment: np.ndarray) -> Labels:
    """The id of the checkpoint behind each slot ("ckpt7"), as `Labels` over the bank."""
    return Labels(np.char.add("ckpt", np.arange(int(assignment.max()) + 1).astype(str)), assignment)


def generate_from_spec(env: Env, pools: PoolSet, spec: str | Composition, num_episodes: int, key: jax.Array,
                       out_dir: str | os.PathLike, *, overwrite: bool = False, progress: bool = False,
                       chunk: int | None = None) -> Path:
    composition = parse(spec, env.spec.num_agents) if isinstance(spec, str) else spec
    if pools.env_id != env.spec.env_id:
        raise ValueError(f"pools are for {pools.env_id}, the environment is {env.spec.env_id}")
    assign_key, rollout_key = jax.random.split(key)
    assignment, levels, terms = draw_assignment(composition, pools, assign_key, num_episodes)
    ids = checkpoint_ids(assignment)
    provenance = {
        "kind": "composition", "spec": composition.text, "episodes_per_term": composition.episode_counts(num_episodes).tolist(),
        "pools": {"env_id": pools.env_id, "cuts": list(pools.cuts), "cut_rule": pools.cut_rule,
                  "checkpoint_returns": [r["mean"] for r in pools.returns], "levels": pools.levels},
    }
    return collect(env, pools.bank(), rollout_key, num_episodes, out_dir, assignment=assignment, agent_ids=ids,
                   behaviour=levels, policy_ids=ids, provenance=provenance, overwrite=overwrite,
                   progress=progress, chunk=chunk)


def balanced_groups(key: jax.Array, population: int, group_size: int, appearances: int) -> np.ndarray:
    """Groups [E, K] in which every individual appears exactly `appearances` times: each
    round shuffles the population and cuts it into P / K groups (so K must divide P)."""
    if population % group_size:
        raise ValueError(f"a balanced design needs the population ({population}) to be a multiple of the group "
                         f"size ({group_size}); give a number of episodes instead for uniformly random groups")
    rounds = [np.asarray(jax.random.permutation(jax.random.fold_in(key, r), population)) for r in range(appearances)]
    return np.concatenate(rounds).reshape(-1, group_size)


def random_groups(key: jax.Array, population: int, group_size: int, num_episodes: int) -> np.ndarray:
    """Groups [E, K]: K distinct individuals drawn uniformly per episode."""
    keys = jax.random.split(key, num_episodes)
    draw = jax.vmap(lambda k: jax.random.permutation(k, population)[:group_size])
    return np.asarray(draw(keys))


def generate_population(env: Env, bank, individual_policy: Sequence[int], individual_level: Sequence[str],
                        key: jax.Array, out_dir: str | os.PathLike, *, num_episodes: int | None = None,
                        appearances: int | None = None, anonymise: bool = False, overwrite: bool = False,
                        progress: bool = False, provenance: dict | None = None) -> Path:
    """Groups of K = env.num_agents drawn from a population; individual j plays with policy
    `individual_policy[j]` of `bank` (a PolicyBank or CheckpointBank) and has level
    `individual_level[j]`. Give `appearances` (each individual plays exactly that many
    episodes) or `num_episodes` (uniformly random groups)."""
    population = len(individual_policy)
    group_size = env.spec.num_agents
    if population < group_size:
        raise ValueError(f"population {population} is smaller than the group size {group_size}")
    if (appearances is None) == (num_episodes is None):
        raise ValueError("give exactly one of appearances and num_episodes")
    group_key, seat_key, rollout_key = jax.random.split(key, 3)
    if appearances is not None:
        groups = balanced_groups(group_key, population, group_size, appearances)
    else:
        groups = random_groups(group_key, population, group_size, num_episodes)
    # Seat the members of each group in random slots.
    seats = jax.vmap(lambda k: jax.random.permutation(k, group_size))(jax.random.split(seat_key, len(groups)))
    groups = np.take_along_axis(groups, np.asarray(seats), axis=1)
    individual_policy = np.asarray(individual_policy, np.int32)
    names = np.asarray([f"ind{j:0{len(str(population - 1))}d}" for j in range(population)])
    who = Labels(names, groups)
    agent_ids = who
    if anonymise:
        episode_ids = np.arange(len(groups))[:, None].astype(str)
        agent_ids = np.char.add(np.char.add(np.char.add("anon", episode_ids), "_"), np.arange(group_size).astype(str))
    info = {"kind": "population", "population": population, "group_size": group_size, "anonymised": anonymise,
            "appearances": appearances, "levels": {str(n): str(l) for n, l in zip(names, individual_level)},
            **(provenance or {})}
    return collect(env, bank, rollout_key, len(groups), out_dir, assignment=individual_policy[groups],
                   agent_ids=agent_ids, behaviour=Labels(np.asarray(individual_level), groups), policy_ids=who,
                   provenance=info, overwrite=overwrite, progress=progress)


def cycle_levels(population: int, levels: Sequence[str]) -> list[str]:
    """Levels of a population, assigned in turn (so their proportions are as even as can be)."""
    return [levels[j % len(levels)] for j in range(population)]


def pool_population(pools: PoolSet, population: int, key: jax.Array,
                    levels: Sequence[str] = ("random", "medium", "expert")):
    """A population drawn from pools: individual j gets level `levels[j mod L]` and a
    checkpoint drawn uniformly from that level's pool. Returns (bank, policy index per
    individual, level per individual)."""
    pools.require(levels)
    individual_level = cycle_levels(population, levels)
    keys = jax.random.split(key, population)
    policy = [int(pools.members(level)[int(jax.random.randint(k, (), 0, len(pools.members(level))))])
              for level, k in zip(individual_level, keys)]
    return pools.bank(), policy, individual_level


def scripted_population(env: Env, population: int, kinds: Sequence[str]):
    """A population of scripted individuals (e.g. commons consumption types), kind j mod L.
    Returns (bank, policy index per individual, level = kind per individual)."""
    from teamsift.collect import behaviours
    from teamsift.nets import PolicyBank

    policies = [behaviours.resolve(f"scripted:{kind}", env)[0] for kind in kinds]
    individual_level = cycle_levels(population, list(kinds))
    return PolicyBank(tuple(policies)), [list(kinds).index(l) for l in individual_level], individual_level


def expert_dataset(env: Env, pools: PoolSet, transitions: int, key: jax.Array, out_dir: str | os.PathLike, *,
                   overwrite: bool = False, progress: bool = False) -> Path:
    """About `transitions` steps of expert play (every slot from the expert pool): the mean
    episode length is measured on a probe of 64 episodes, then enough episodes are drawn."""
    from teamsift.evaluate import evaluate

    composition = parse("100%[all e]", env.spec.num_agents)
    probe_key, data_key = jax.random.split(key)
    probe_assignment, _, _ = draw_assignment(composition, pools, probe_key, 64)
    mean_length = evaluate(env, pools.bank(), probe_key, 64, assignment=probe_assignment).mean_length
    num_episodes = max(1, int(np.ceil(transitions / max(mean_length, 1.0))))
    return generate_from_spec(env, pools, composition, num_episodes, data_key, out_dir, overwrite=overwrite,
                              progress=progress)


def implied_return(env: Env, pools: PoolSet, spec: str | Composition, key: jax.Array, episodes: int = 400):
    """The team return a composition implies: each term evaluated on its own (slots drawn
    from their pools), weighted by the term's share. Returns (mean, standard error)."""
    from teamsift.evaluate import evaluate

    composition = parse(spec, env.spec.num_agents) if isinstance(spec, str) else spec
    mean, variance = 0.0, 0.0
    for term, weight in enumerate(composition.weights):
        single = Composition((1.0,), (composition.levels[term],), composition.short(term))
        assignment, _, _ = draw_assignment(single, pools, jax.random.fold_in(key, 2 * term), episodes)
        result = evaluate(env, pools.bank(), jax.random.fold_in(key, 2 * term + 1), episodes,
                          assignment=assignment).team_return
        mean += weight * result.mean
        variance += (weight * result.std) ** 2 / episodes
    return mean, float(np.sqrt(variance))
