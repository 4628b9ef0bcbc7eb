"""Overcooked (JaxMARL v1) behind the teamsift interface.

Two cooks, 6 discrete actions each (JaxMARL's order: 0 up, 1 down, 2 right, 3 left,
4 stay, 5 interact; all always available). `step` calls JaxMARL's `step_env` (no
auto-reset); JaxMARL's own state counts the time step, and JaxMARL's `max_steps` is set
to `episode_length` (its urgency channel depends on it). Episodes never terminate early;
they are truncated at `episode_length`.

* obs: each cook's JaxMARL observation, an (H, W, 26) grid of channels, flattened in C
  order (H*W*26 values, float32).
* state: the flattened observation of agent_0. It encodes the whole game state
  losslessly (both cooks' positions, orientations and held items, pots, loose items,
  urgency); agent_1's observation is the same grid with the two cooks' channels swapped.
* team reward: the shared delivery reward, 20 per soup served (by either cook). The
  shaped reward (onion in pot 3, plate pick-up 3, soup pick-up 5) is NOT part of it;
  `info["shaped_reward"]` holds it per cook (float32[2]), `info["soups"]` the number of
  soups served in the step.
* scores: `return` and `soups` (deliveries in the episode).
"""

from __future__ import annotations

import jax.numpy as jnp

from teamsift.envs._jaxmarl import import_jaxmarl, quiet_construct
from teamsift.envs.base import Env, EnvSpec, Reset, Step, step_info

NUM_OVERCOOKED_ACTIONS = 6
DELIVERY_REWARD = 20.0

# Our (overcooked_ai) layout names -> JaxMARL's names.
LAYOUT_ALIASES = {
    "cramped_room": "cramped_room",
    "asymmetric_advantages": "asymm_advantages",
    "coordination_ring": "coord_ring",
    "forced_coordination": "forced_coord",
    "counter_circuit": "counter_circuit",
}


def _scores(rewards, infos, valid):
    v = valid.astype(jnp.float32)
    return {"return": jnp.sum(rewards * v), "soups": jnp.sum(infos["soups"] * v)}


def make_overcooked(layout: str, episode_length: int = 400) -> Env:
    """JaxMARL Overcooked v1 on `layout` (one of LAYOUT_ALIASES, or a JaxMARL layout name)."""
    mod = import_jaxmarl("jaxmarl.environments.overcooked")
    jm_name = LAYOUT_ALIASES.get(layout, layout)
    if jm_name not in mod.overcooked_layouts:
        raise ValueError(f"unknown Overcooked layout {layout!r}; known: {sorted(LAYOUT_ALIASES)}")
    ep_len = int(episode_length)
    raw = quiet_construct(mod.Overcooked, layout=mod.overcooked_layouts[jm_name], max_steps=ep_len)
    agents = tuple(raw.agents)
    width = int(raw.height * raw.width * 26)
    avail = jnp.ones((len(agents), NUM_OVERCOOKED_ACTIONS), dtype=bool)

    def observe(obs_dict):
        obs = jnp.stack([obs_dict[a].reshape(-1) for a in agents]).astype(jnp.float32)
        return obs, obs[0]

    def reset(key) -> Reset:
        obs_dict, s = raw.reset(key)
        obs, state = observe(obs_dict)
        return Reset(obs, state, avail, s)

    def step(key, env_state, actions) -> Step:
        acts = {a: actions[i] for i, a in enumerate(agents)}
        obs_dict, s, rew, _, info = raw.step_env(key, env_state, acts)
        obs, state = observe(obs_dict)
        reward = jnp.asarray(rew[agents[0]], jnp.float32)
        shaped = jnp.stack([info["shaped_reward"][a] for a in agents]).astype(jnp.float32)
        terminated = jnp.array(False)
        truncated = s.step >= ep_len
        return Step(obs, state, avail, reward, terminated | truncated,
                    step_info(terminated, truncated, soups=reward / DELIVERY_REWARD,
                              shaped_reward=shaped), s)

    spec = EnvSpec(
        env_id=f"overcooked_{layout}",
        agents=agents,
        agent_types=("cook",) * len(agents),
        obs_dim=width,
        obs_widths=(width,) * len(agents),
        state_dim=width,
        discrete=True,
        num_actions=NUM_OVERCOOKED_ACTIONS,
        action_dims=(NUM_OVERCOOKED_ACTIONS,) * len(agents),
        episode_length=ep_len,
        scores=("return", "soups"),
        description=(
            f"Overcooked (JaxMARL v1), layout {layout} ({raw.height}x{raw.width} grid), 2 cooks. "
            "Obs = flattened (H,W,26) JaxMARL grid per cook; state = agent_0's obs (lossless). "
            "Team reward = 20 per soup delivered (shaped reward only in info)."
        ),
    )
    return Env(spec=spec, reset=reset, step=step, scores=_scores)
