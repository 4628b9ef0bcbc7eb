"""Multi-agent MuJoCo through Brax (JaxMARL's MABraxEnv) behind the teamsift interface.

We build JaxMARL's `MABraxEnv` with OUR OWN observation/action partitions, equal to
MaMuJoCo's (Gymnasium-Robotics, default obsk=1: an agent observes qpos and qvel of its
own joints, sorted by joint name, then qpos of the joints one edge away, sorted by name,
then the global root entries rootz, rooty (qpos) and rootx, rootz, rooty (qvel)).
Indices refer to the 17-dim global observation [qpos[1:] (8), qvel (9)], which has the
same layout in Brax as in Gym for both robots (Brax clips walker2d velocities to
[-10, 10], as Gym does in its single-agent observation).

* halfcheetah_6x1: one joint per agent, bthigh, bshin, bfoot, fthigh, fshin, ffoot
  (JaxMARL's built-in 6x1 mapping is MaMuJoCo's shifted by +1, see field-notes.md).
* halfcheetah_2x3: back leg [0,1,2], front leg [3,4,5].
* walker2d_2x3: right leg (thigh, leg, foot) [0,1,2], left leg [3,4,5]; 12 obs dims per
  agent as in MaMuJoCo (JaxMARL's built-in mapping gives 10).

Actions: float32[A, 3] (6x1: D = 1), clipped to [-1, 1]; padded entries are ignored.
State: the full 17-dim global observation. Team reward: Brax's (shared) reward.
The Brax env is created without its EpisodeWrapper/AutoResetWrapper; we count steps in
our env_state. `terminated` is Brax's `done` (walker2d falls: torso height outside
(0.8, 2.0) or torso angle outside (-1, 1); halfcheetah never terminates) and is kept
True once set, so a fallen walker that later re-enters the healthy range stays done.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from teamsift.envs._jaxmarl import import_jaxmarl, quiet_construct
from teamsift.envs.base import Env, EnvSpec, Reset, Step, step_info

# Global observation: 0 rootz, 1 rooty, 2..7 joint qpos (in action order), 8 rootx vel,
# 9 rootz vel, 10 rooty vel, 11..16 joint qvel (in action order).
_GLOBAL = [0, 1, 8, 9, 10]

# MaMuJoCo (obsk=1) partitions: (actuator indices, observation indices) per agent.
PARTITIONS: dict[str, tuple[str, list[tuple[list[int], list[int]]]]] = {
    "halfcheetah_6x1": ("halfcheetah", [
        ([0], [2, 11, 3, 5] + _GLOBAL),         # bthigh; neighbours bshin, fthigh
        ([1], [3, 12, 4, 2] + _GLOBAL),         # bshin; neighbours bfoot, bthigh
        ([2], [4, 13, 3] + _GLOBAL),            # bfoot; neighbour bshin
        ([3], [5, 14, 2, 6] + _GLOBAL),         # fthigh; neighbours bthigh, fshin
        ([4], [6, 15, 7, 5] + _GLOBAL),         # fshin; neighbours ffoot, fthigh
        ([5], [7, 16, 6] + _GLOBAL),            # ffoot; neighbour fshin
    ]),
    "halfcheetah_2x3": ("halfcheetah", [
        ([0, 1, 2], [4, 13, 3, 12, 2, 11, 5] + _GLOBAL),  # back leg; neighbour fthigh
        ([3, 4, 5], [7, 16, 6, 15, 5, 14, 2] + _GLOBAL),  # front leg; neighbour bthigh
    ]),
    "walker2d_2x3": ("walker2d", [
        ([0, 1, 2], [4, 13, 3, 12, 2, 11, 5] + _GLOBAL),  # right leg; neighbour thigh_left
        ([3, 4, 5], [7, 16, 6, 15, 5, 14, 2] + _GLOBAL),  # left leg; neighbour thigh
    ]),
}


def _without_mujoco_log(fn: Callable[[], Any]) -> Any:
    """Run fn with MuJoCo warnings turned into Python warnings.

    MuJoCo's default handler prints them and appends them to ./MUJOCO_LOG.TXT (Brax's
    half_cheetah.xml uses the deprecated `settotalmass`, which warns on every load).
    """
    import mujoco

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda msg: warnings.warn(f"MuJoCo: {msg}", RuntimeWarning, stacklevel=2))
    try:
        return fn()
    finally:
        mujoco.set_mju_user_warning(previous)


class MaBraxState(NamedTuple):
    brax_state: Any
    t: jax.Array  # int32, steps taken
    terminated: jax.Array  # bool, sticky


def make_mabrax(robot: str, episode_length: int = 1000) -> Env:
    """Brax `robot` split among agents as in MaMuJoCo (halfcheetah_6x1, halfcheetah_2x3, walker2d_2x3)."""
    if robot not in PARTITIONS:
        raise ValueError(f"unknown MaBrax robot {robot!r}; known: {sorted(PARTITIONS)}")
    mod = import_jaxmarl("jaxmarl.environments.mabrax.mabrax_env")
    base, parts = PARTITIONS[robot]
    agents = tuple(f"agent_{i}" for i in range(len(parts)))
    act_map = {a: jnp.asarray(act, jnp.int32) for a, (act, _) in zip(agents, parts)}
    obs_map = {a: jnp.asarray(obs, jnp.int32) for a, (_, obs) in zip(agents, parts)}
    # episode_length=None: no Brax EpisodeWrapper; auto_reset=False: no AutoResetWrapper.
    raw = _without_mujoco_log(lambda: quiet_construct(
        mod.MABraxEnv, robot, episode_length=None, auto_reset=False,
        agent_obs_mapping=obs_map, agent_action_mapping=act_map))
    brax_env = raw.env
    ep_len = int(episode_length)
    obs_widths = tuple(len(obs) for _, obs in parts)
    act_dims = tuple(len(act) for act, _ in parts)
    width, d_max = max(obs_widths), max(act_dims)
    n_global = int(brax_env.observation_size)
    n_act = int(brax_env.action_size)
    if sorted(i for act, _ in parts for i in act) != list(range(n_act)):
        raise AssertionError(f"{robot}: action partition does not cover the {n_act} actuators")
    if max(i for _, obs in parts for i in obs) >= n_global:
        raise AssertionError(f"{robot}: observation index beyond the {n_global}-dim global observation")

    # Gather/scatter tables: padded obs index per (agent, slot) and global actuator per (agent, slot).
    obs_idx = np.zeros((len(parts), width), np.int32)
    obs_mask = np.zeros((len(parts), width), bool)
    act_rows = np.concatenate([np.full(len(act), i) for i, (act, _) in enumerate(parts)])
    act_cols = np.concatenate([np.arange(len(act)) for act, _ in parts])
    act_target = np.concatenate([act for act, _ in parts])
    for i, (_, obs) in enumerate(parts):
        obs_idx[i, :len(obs)] = obs
        obs_mask[i, :len(obs)] = True
    order = np.argsort(act_target)  # global actuator j <- actions[act_rows, act_cols][order][j]
    src_rows, src_cols = jnp.asarray(act_rows[order]), jnp.asarray(act_cols[order])
    obs_idx_j, obs_mask_j = jnp.asarray(obs_idx), jnp.asarray(obs_mask)

    def observe(global_obs):
        g = global_obs.astype(jnp.float32)
        return jnp.where(obs_mask_j, g[obs_idx_j], 0.0), g

    def reset(key) -> Reset:
        bs = brax_env.reset(key)
        obs, state = observe(bs.obs)
        return Reset(obs, state, None, MaBraxState(bs, jnp.zeros((), jnp.int32), jnp.zeros((), bool)))

    def step(key, env_state, actions) -> Step:
        del key  # Brax dynamics are deterministic given the state
        a = jnp.clip(jnp.asarray(actions, jnp.float32), -1.0, 1.0)
        bs = brax_env.step(env_state.brax_state, a[src_rows, src_cols])
        t = env_state.t + 1
        terminated = env_state.terminated | (bs.done > 0.5)
        truncated = (t >= ep_len) & ~terminated
        obs, state = observe(bs.obs)
        reward = jnp.asarray(bs.reward, jnp.float32)
        return Step(obs, state, None, reward, terminated | truncated,
                    step_info(terminated, truncated), MaBraxState(bs, t, terminated))

    names = {"halfcheetah_6x1": ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"),
             "halfcheetah_2x3": ("back_leg", "front_leg"),
             "walker2d_2x3": ("right_leg", "left_leg")}[robot]
    spec = EnvSpec(
        env_id=robot,
        agents=agents,
        agent_types=names,
        obs_dim=width,
        obs_widths=obs_widths,
        state_dim=n_global,
        discrete=False,
        num_actions=d_max,
        action_dims=act_dims,
        episode_length=ep_len,
        partially_observable=True,
        description=(
            f"MaBrax {robot} (Brax {base}, positional backend) with MaMuJoCo's obsk=1 partition; "
            "state = 17-dim global observation; team reward = Brax reward"
            + ("; terminates when the walker falls." if base == "walker2d" else "; never terminates early.")
        ),
    )
    return Env(spec=spec, reset=reset, step=step)
