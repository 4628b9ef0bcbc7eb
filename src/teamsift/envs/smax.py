"""SMAX (JaxMARL's StarCraft-like micromanagement) behind the teamsift interface.

JaxMARL's `HeuristicEnemySMAX` with `map_name_to_scenario(map_name)`: the allies are
the controlled agents, the enemies follow JaxMARL's built-in heuristic. `step` calls
`step_env` (no auto-reset); JaxMARL's state counts the time step.

* actions: discrete, `5 + num_enemies` per ally (0-3 move, 4 stop, 5+j attack enemy j);
  `avail` = JaxMARL's `get_avail_actions` (a dead ally may only "stop").
* obs: JaxMARL's unit-list observation (all allies share one width).
* state: JaxMARL's `get_world_state` (features of every unit, then unit teams and types).
* team reward: the allies' shared JaxMARL reward (normalised enemy health lost, /num
  enemies, plus 1 for winning).
* terminated: all allies dead or all enemies dead; truncated at `episode_length`
  (default: JaxMARL's SMAX default of 100 steps for every map).
* `info["won"]` is 1.0 once every enemy is dead while an ally lives; score `win` is 1 if
  that happened in the episode.
"""

from __future__ import annotations

import jax.numpy as jnp

from teamsift.envs._jaxmarl import import_jaxmarl, quiet_construct
from teamsift.envs.base import Env, EnvSpec, Reset, Step, step_info

DEFAULT_SMAX_EPISODE_LENGTH = 100
#: The best episode return of every map: each enemy's health, normalised and averaged over
#: the enemies (1 in all), plus JaxMARL's `won_battle_bonus` of 1. SMAC's is 20 (PyMARL
#: rescales it so), so SMAC's scale is this one × 10.
BEST_RETURN = 2.0


def _scores(rewards, infos, valid):
    v = valid.astype(jnp.float32)
    return {"return": jnp.sum(rewards * v), "win": jnp.max(infos["won"] * v, initial=0.0)}


def make_smax(map_name: str, episode_length: int | None = None) -> Env:
    """SMAX map `map_name` (e.g. 3m, 2s3z, 3s_vs_5z) against JaxMARL's heuristic enemy."""
    mod = import_jaxmarl("jaxmarl.environments.smax")
    try:
        scenario = mod.map_name_to_scenario(map_name)
    except KeyError:
        raise ValueError(f"SMAX has no map {map_name!r}") from None
    ep_len = DEFAULT_SMAX_EPISODE_LENGTH if episode_length is None else int(episode_length)
    raw = quiet_construct(mod.HeuristicEnemySMAX, scenario=scenario, max_steps=ep_len)
    agents = tuple(raw.agents)
    n_allies = raw.num_allies
    n_actions = int(raw.num_ally_actions)
    width = int(raw.obs_size)
    type_names = list(raw.unit_type_names)
    agent_types = tuple(type_names[int(t)] for t in scenario.unit_types[:n_allies])

    def observe(obs_dict):
        return jnp.stack([obs_dict[a] for a in agents]).astype(jnp.float32), \
            obs_dict["world_state"].astype(jnp.float32)

    def avail_of(s):
        d = raw.get_avail_actions(s)
        return jnp.stack([d[a] for a in agents]).astype(bool)

    def reset(key) -> Reset:
        obs_dict, s = raw.reset(key)
        obs, state = observe(obs_dict)
        return Reset(obs, state, avail_of(s), s)

    def step(key, env_state, actions) -> Step:
        acts = {a: actions[i] for i, a in enumerate(agents)}
        obs_dict, s, rew, _, _ = raw.step_env(key, env_state, acts)
        obs, state = observe(obs_dict)
        alive = s.state.unit_alive
        allies_alive = jnp.any(alive[:n_allies])
        enemies_alive = jnp.any(alive[n_allies:])
        terminated = ~allies_alive | ~enemies_alive
        truncated = (s.state.step >= ep_len) & ~terminated
        won = (allies_alive & ~enemies_alive).astype(jnp.float32)
        reward = jnp.asarray(rew[agents[0]], jnp.float32)
        return Step(obs, state, avail_of(s), reward, terminated | truncated,
                    step_info(terminated, truncated, won=won), s)

    spec = EnvSpec(
        env_id=f"smax_{map_name}",
        agents=agents,
        agent_types=agent_types,
        obs_dim=width,
        obs_widths=(width,) * n_allies,
        state_dim=int(raw.state_size),
        discrete=True,
        num_actions=n_actions,
        action_dims=(n_actions,) * n_allies,
        episode_length=ep_len,
        scores=("return", "win"),
        partially_observable=True,
        description=(
            f"SMAX {map_name}: {n_allies} allies vs {raw.num_enemies} heuristic enemies. "
            "Team reward = allies' shared JaxMARL reward (normalised enemy health lost + 1 for a win)."
        ),
    )
    return Env(spec=spec, reset=reset, step=step, scores=_scores)
