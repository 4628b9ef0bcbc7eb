"""One-step two-agent polynomial games (PJAP paper; methods.md §2).

Each agent picks one continuous action in [−1, 1] (x for agent 0, y for agent 1); the
episode ends after that single step with team reward R(x, y):

    sign        R = x · y                                    (agree on a sign)
    twin_peaks  R = −A(x² + y²) − B(xy)² + C·xy, A=1, B=4, C=5
                optima at ±(0.61, 0.61) with R = 0.5625; R(−0.5, 0.5) = −2
    coupled     R = −s·(x − y)² + x·y  (ours: coupling strength s, default 1)
    decoupled   R = −(x − 1)² − (y − 1)²  (ours: no interaction; optimum 0 at (1, 1))

Observations carry no information (a constant 1 per agent): the games test whether a
learner can coordinate the joint action from data alone. Actions outside [−1, 1] are
clipped before the reward is computed.
"""

from __future__ import annotations

import jax.numpy as jnp

from teamsift.envs.base import Env, EnvSpec, Reset, Step, step_info


def sign_reward(x, y):
    return x * y


def twin_peaks_reward(x, y, a=1.0, b=4.0, c=5.0):
    return -a * (x**2 + y**2) - b * (x * y) ** 2 + c * x * y


def coupled_reward(x, y, s=1.0):
    return -s * (x - y) ** 2 + x * y


def decoupled_reward(x, y):
    return -((x - 1.0) ** 2) - (y - 1.0) ** 2


def make_poly(game: str = "sign", coupling: float = 1.0) -> Env:
    rewards = {
        "sign": sign_reward,
        "twin_peaks": twin_peaks_reward,
        "coupled": lambda x, y: coupled_reward(x, y, coupling),
        "decoupled": decoupled_reward,
    }
    if game not in rewards:
        raise ValueError(f"poly: unknown game {game!r}; expected one of {sorted(rewards)}")
    reward_fn = rewards[game]
    obs = jnp.ones((2, 1), jnp.float32)
    state = jnp.ones((1,), jnp.float32)

    def reset(key):
        del key
        return Reset(obs, state, None, jnp.int32(0))

    def step(key, env_state, actions):
        del key
        joint = jnp.clip(actions[:, 0], -1.0, 1.0)
        reward = reward_fn(joint[0], joint[1]).astype(jnp.float32)
        done = jnp.bool_(True)
        return Step(obs, state, None, reward, done, step_info(True, False), env_state + 1)

    spec = EnvSpec(
        env_id=f"poly_{game}",
        agents=("agent_0", "agent_1"),
        agent_types=("player", "player"),
        obs_dim=1,
        obs_widths=(1, 1),
        state_dim=1,
        discrete=False,
        num_actions=1,
        action_dims=(1, 1),
        episode_length=1,
        description=f"one-step polynomial game '{game}', actions in [-1, 1]",
    )
    return Env(spec=spec, reset=reset, step=step)
