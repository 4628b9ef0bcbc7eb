"""Tragedy of the Commons (`commons`): a shared resource pool that regrows logistically.

The dynamics are our choice (methods.md §1, marked "ours"): the paper's summary names
the environment and its three desirability scores but not the equations.

    R_{t+1} = R_t + g · R_t · (1 − R_t / R_max) − Σ_i c_{i,t}

Each agent picks a consumption level from `levels` (a discrete set); if the group asks
for more than the pool holds, everyone gets the same fraction of their request, so
consumption is clipped to what is there. The team reward of a step is the total amount
consumed, so the team return equals `v_total`.

Default numbers (per agent, so groups of 3 and of 10 behave alike): R_max = 30·A,
g = 0.3, levels {0, 1, …, 5}. The largest sustainable total harvest is g·R_max/4 =
2.25·A per step, reached at R = R_max/2: consuming 2 per agent settles the pool at
≈ 0.67·R_max for ever, while consuming 5 per agent empties it within a few steps, and
an empty pool never regrows.

Observation of agent i: [R_t / R_max, c_{i,t−1} / c_max, t / T].
State: [R_t / R_max, c_{1..A,t−1} / c_max, t / T].
Scores (Select to Perfect's DVFs):
    v_final  resources left at the end of the episode
    v_total  total resources consumed by the group
    v_min    the smallest total consumption of any one agent (fairness)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from teamsift.envs.base import Env, EnvSpec, Reset, Step, step_info


class CommonsState(NamedTuple):
    resources: jax.Array  # [] float32
    last_consumption: jax.Array  # [A] float32
    t: jax.Array  # [] int32


def make_commons(
    num_agents: int = 3,
    episode_length: int = 100,
    growth: float = 0.3,
    capacity_per_agent: float = 30.0,
    max_consumption: int = 5,
) -> Env:
    if num_agents < 1:
        raise ValueError(f"commons: num_agents must be >= 1, got {num_agents}")
    capacity = capacity_per_agent * num_agents
    levels = jnp.arange(max_consumption + 1, dtype=jnp.float32)
    num_levels = max_consumption + 1

    def observe(env_state: CommonsState):
        pool = env_state.resources / capacity
        time = env_state.t.astype(jnp.float32) / episode_length
        own = env_state.last_consumption / max_consumption
        obs = jnp.stack([jnp.full((num_agents,), pool), own, jnp.full((num_agents,), time)], axis=1)
        state = jnp.concatenate([pool[None], own, time[None]])
        avail = jnp.ones((num_agents, num_levels), dtype=bool)
        return obs.astype(jnp.float32), state.astype(jnp.float32), avail

    def reset(key):
        del key  # the pool always starts full
        env_state = CommonsState(
            resources=jnp.float32(capacity),
            last_consumption=jnp.zeros((num_agents,), jnp.float32),
            t=jnp.int32(0),
        )
        return Reset(*observe(env_state), env_state)

    def step(key, env_state: CommonsState, actions):
        del key  # deterministic dynamics
        requested = levels[jnp.clip(actions, 0, max_consumption)]
        total_request = jnp.sum(requested)
        share = jnp.where(total_request > env_state.resources,
                          env_state.resources / jnp.maximum(total_request, 1e-8), 1.0)
        consumed = requested * share
        pool = env_state.resources
        regrown = pool + growth * pool * (1.0 - pool / capacity) - jnp.sum(consumed)
        new_state = CommonsState(
            resources=jnp.clip(regrown, 0.0, capacity).astype(jnp.float32),
            last_consumption=consumed.astype(jnp.float32),
            t=env_state.t + 1,
        )
        truncated = new_state.t >= episode_length
        obs, state, avail = observe(new_state)
        info = step_info(False, truncated, resources=new_state.resources, consumption=consumed)
        return Step(obs, state, avail, jnp.sum(consumed).astype(jnp.float32), truncated, info, new_state)

    def scores(rewards, infos, valid):
        valid = valid.astype(jnp.float32)
        consumed_per_agent = jnp.sum(infos["consumption"] * valid[:, None], axis=0)
        last = jnp.maximum(jnp.sum(valid).astype(jnp.int32) - 1, 0)
        return {
            "return": jnp.sum(rewards * valid),
            "v_final": infos["resources"][last],
            "v_total": jnp.sum(consumed_per_agent),
            "v_min": jnp.min(consumed_per_agent),
        }

    spec = EnvSpec(
        env_id="commons",
        agents=tuple(f"agent_{i}" for i in range(num_agents)),
        agent_types=("consumer",) * num_agents,
        obs_dim=3,
        obs_widths=(3,) * num_agents,
        state_dim=num_agents + 2,
        discrete=True,
        num_actions=num_levels,
        action_dims=(num_levels,) * num_agents,
        episode_length=episode_length,
        scores=("return", "v_final", "v_total", "v_min"),
        description=(
            f"Tragedy of the Commons: pool R_max={capacity:g}, logistic growth g={growth:g}, "
            f"consumption levels 0..{max_consumption}; team reward = total consumption"
        ),
    )
    return Env(spec=spec, reset=reset, step=step, scores=scores)
