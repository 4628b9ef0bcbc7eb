"""Dataset generation as `teamsift generate` and `teamsift suite` ask for it: from behaviour
tokens per slot, from a composition spec over pools, from a population of individuals
played in groups, and whole suites. The command line only parses and prints; every
choice made here flows from the given key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from teamsift.collect import behaviours, composition
from teamsift.collect.datasets import (
    expert_dataset, generate_from_spec, generate_population, pool_population, scripted_population,
)
from teamsift.collect.pools import PoolError, load_pools
from teamsift.collect.rollouts import collect
from teamsift.collect.suites import ENV_KWARGS, EXPERT_SUITE, EXPERT_TRANSITIONS, SIT_EPISODES, SIT_SUITE
from teamsift.data.format import Labels, check_output_dir
from teamsift.nets.policy import PolicyBank

SUITES = {"sit": SIT_SUITE, "expert": EXPERT_SUITE}


def make_env(env_id: str, **kwargs):
    """`teamsift.envs.make`, with an unknown id as a ValueError."""
    from teamsift import envs

    try:
        return envs.make(env_id, **kwargs)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def env_and_pools(env_id: str, pools_dir=None):
    pools = load_pools(env_id, pools_dir)
    return make_env(env_id, **pools.env_kwargs), pools


def from_spec(env_id: str, out: str | os.PathLike, spec: str, episodes: int, key: jax.Array, *, pools_dir=None,
              overwrite: bool = False, progress: bool = True) -> Path:
    """Episodes whose slots are drawn from pool levels by a composition spec ("50%[r,r,m] + …")."""
    parsed = composition.parse(spec, make_env(env_id).spec.num_agents)  # refuse a bad spec before any work
    env, pools = env_and_pools(env_id, pools_dir)
    pools.require({level for term in parsed.levels for level in term})
    return generate_from_spec(env, pools, parsed, episodes, key, out, overwrite=overwrite, progress=progress)


def from_population(env_id: str, out: str | os.PathLike, population: int, key: jax.Array, *,
                    group_size: int | None = None, episodes: int | None = None, appearances: int | None = None,
                    levels: Sequence[str] = ("r", "m", "e"),
                    kinds: Sequence[str] = ("sustainable", "adaptive", "greedy", "erratic"), anonymise: bool = False,
                    pools_dir=None, overwrite: bool = False, progress: bool = True) -> Path:
    """A population of individuals (pool checkpoints, or scripted commons kinds) played in
    groups: random groups for `episodes`, or every individual exactly `appearances` times."""
    if (episodes is None) == (appearances is None):
        raise ValueError("--population needs exactly one of --episodes (random groups) and --appearances")
    if env_id == "commons":
        env = make_env(env_id, **({"num_agents": group_size} if group_size else {}))
        bank, policy, individual_level = scripted_population(env, population, list(kinds))
        provenance = {"individuals": "scripted commons kinds"}
    else:
        env, pools = env_and_pools(env_id, pools_dir)
        if group_size not in (None, env.spec.num_agents):
            raise ValueError(f"--group-size: {env_id} has {env.spec.num_agents} agents; groups must be that size")
        level_names = [composition.parse(f"[{level}]", 1).levels[0][0] for level in levels]
        bank, policy, individual_level = pool_population(pools, population, jax.random.fold_in(key, 7), level_names)
        provenance = {"individuals": "checkpoints drawn from pools", "policy_of_individual": list(map(int, policy))}
    return generate_population(env, bank, policy, individual_level, key, out, num_episodes=episodes,
                               appearances=appearances, anonymise=anonymise, overwrite=overwrite, progress=progress,
                               provenance=provenance)


def slot_assignment(key: jax.Array, episodes: int, num_agents: int, num_tokens: int, mix: bool) -> np.ndarray:
    """[E, A] which behaviour token plays each slot: drawn per episode and slot (`mix`), the
    same token everywhere (one token), or token i in slot i (one per slot)."""
    if mix:
        return np.asarray(jax.random.randint(key, (episodes, num_agents), 0, num_tokens))
    if num_tokens == 1:
        return np.zeros((episodes, num_agents), np.int32)
    if num_tokens != num_agents:
        raise ValueError(f"--policy: give 1 behaviour or {num_agents} (one per slot), got {num_tokens}")
    return np.tile(np.arange(num_agents, dtype=np.int32), (episodes, 1))


def from_behaviours(env_id: str, out: str | os.PathLike, tokens: Sequence[str], episodes: int, key: jax.Array, *,
                    mix: bool = False, overwrite: bool = False, progress: bool = True) -> Path:
    """Episodes played by behaviour tokens ('random', 'scripted:<rule>', a policy file of any
    kind), one per slot, one for all, or drawn per slot and episode (`mix`)."""
    env = make_env(env_id)
    tokens = [t.strip() for t in tokens if t.strip()]
    if not mix and len(tokens) not in (1, env.spec.num_agents):
        raise ValueError(f"--policy: give 1 behaviour or {env.spec.num_agents} (one per slot of {env_id}), "
                         f"got {len(tokens)}")
    assignment = slot_assignment(jax.random.fold_in(key, 1), episodes, env.spec.num_agents, len(tokens), mix)
    resolved = [behaviours.resolve(t, env) for t in tokens]
    behaviour = Labels(np.asarray([label for _, label in resolved], dtype=str), assignment)
    provenance = {"command": "generate", "policy": ",".join(tokens), "mix": mix, "episodes": episodes}
    return collect(env, PolicyBank(tuple(p for p, _ in resolved)), jax.random.fold_in(key, 2), episodes, out,
                   assignment=assignment, behaviour=behaviour, policy_ids=behaviour, provenance=provenance,
                   overwrite=overwrite, progress=progress)


def build_suite(name: str, out: str | os.PathLike, seed: int, *, envs: Sequence[str] | None = None,
                episodes: int | None = None, transitions: int | None = None, pools_dir=None,
                overwrite: bool = False, progress: bool = True) -> tuple[dict[str, Path], dict[str, str]]:
    """Every dataset of suite `name` ("sit" or "expert") under `out`: returns ({dataset name:
    path}, {env id: why it was skipped}). Environment i uses the key of seed + i."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; expected one of {', '.join(SUITES)}")
    entries = SUITES[name]
    selected = list(envs) if envs else list(entries)
    unknown = [e for e in selected if e not in entries]
    if unknown:
        raise ValueError(f"--envs: {unknown} not in suite {name!r} ({', '.join(entries)})")
    targets = {f"{env_id}-{quality}": spec for env_id in selected
               for quality, spec in (entries[env_id].items() if name == "sit" else [("expert", entries[env_id])])}
    for target in targets:  # every output before any work: a later one refused would waste the earlier ones
        try:
            check_output_dir(Path(out) / target, overwrite, hint="pass --overwrite to replace it")
        except FileExistsError as exc:
            raise ValueError(str(exc)) from None
    made, missing = {}, {}
    for index, env_id in enumerate(selected):
        try:
            env, pools = env_and_pools(env_id, pools_dir)
        except PoolError as exc:
            missing[env_id] = str(exc)
            continue
        key = jax.random.key(seed + index)
        if name == "sit":
            for quality, spec in entries[env_id].items():
                made[f"{env_id}-{quality}"] = generate_from_spec(
                    env, pools, spec, episodes or SIT_EPISODES, key, Path(out) / f"{env_id}-{quality}",
                    overwrite=overwrite, progress=progress)
        else:
            made[f"{env_id}-expert"] = expert_dataset(env, pools, transitions or EXPERT_TRANSITIONS, key,
                                                      Path(out) / f"{env_id}-expert", overwrite=overwrite,
                                                      progress=progress)
    return made, missing


__all__ = ["ENV_KWARGS", "SUITES", "build_suite", "env_and_pools", "from_behaviours", "from_population", "from_spec",
           "make_env", "slot_assignment"]
