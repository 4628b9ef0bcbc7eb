"""Every registered environment's `EnvSpec` with its default arguments, written out so that
listing the environments (`teamsift envs`) builds none of them.

`tests/test_env_specs.py` builds every environment and checks that this table equals its
spec; after changing an environment, update its entry here (the test prints the new one).
"""

from __future__ import annotations

from teamsift.envs.base import EnvSpec

#: env_id -> EnvSpec fields (lists for the tuple fields, as `EnvSpec.to_dict()` gives them).
STATIC_SPECS: dict[str, dict] = {
    "mpe_spread": {
        "env_id": "mpe_spread",
        "agents": ["agent_0", "agent_1", "agent_2"],
        "agent_types": ["seeker", "seeker", "seeker"],
        "obs_dim": 18,
        "obs_widths": [18, 18, 18],
        "state_dim": 18,
        "discrete": True,
        "num_actions": 5,
        "action_dims": [5, 5, 5],
        "episode_length": 25,
        "scores": ["return", "collisions"],
        "lower_is_better": ["collisions"],
        "partially_observable": False,
        "description": (
            "Cooperative navigation (JaxMARL simple_spread), 3 seekers, 3 landmarks; full obs. Team "
            "reward per step = -sum_landmarks min_seeker distance - number of colliding seeker pairs."
        ),
    },
    "mpe_tag": {
        "env_id": "mpe_tag",
        "agents": ["adversary_0", "adversary_1", "adversary_2"],
        "agent_types": ["predator", "predator", "predator"],
        "obs_dim": 16,
        "obs_widths": [16, 16, 16],
        "state_dim": 20,
        "discrete": True,
        "num_actions": 5,
        "action_dims": [5, 5, 5],
        "episode_length": 25,
        "scores": ["return", "catches"],
        "lower_is_better": [],
        "partially_observable": False,
        "description": (
            "Predator-prey (JaxMARL simple_tag), 3 predators, 1 scripted prey fleeing the nearest "
            "predator, 2 obstacles; full obs. Team reward per step = 10 x number of predators touching "
            "the prey."
        ),
    },
    "CN_3ls3l": {
        "env_id": "CN_3ls3l",
        "agents": ["agent_0", "agent_1", "agent_2"],
        "agent_types": ["seeker", "seeker", "seeker"],
        "obs_dim": 10,
        "obs_widths": [10, 10, 10],
        "state_dim": 18,
        "discrete": True,
        "num_actions": 5,
        "action_dims": [5, 5, 5],
        "episode_length": 25,
        "scores": ["return", "collisions"],
        "lower_is_better": ["collisions"],
        "partially_observable": True,
        "description": (
            "Cooperative navigation (JaxMARL simple_spread), 3 seekers, 3 landmarks; each seeker sees "
            "its 2 nearest landmarks and 1 nearest seekers. Team reward per step = -sum_landmarks "
            "min_seeker distance - number of colliding seeker pairs."
        ),
    },
    "CN_4ls4l": {
        "env_id": "CN_4ls4l",
        "agents": ["agent_0", "agent_1", "agent_2", "agent_3"],
        "agent_types": ["seeker", "seeker", "seeker", "seeker"],
        "obs_dim": 10,
        "obs_widths": [10, 10, 10, 10],
        "state_dim": 24,
        "discrete": True,
        "num_actions": 5,
        "action_dims": [5, 5, 5, 5],
        "episode_length": 25,
        "scores": ["return", "collisions"],
        "lower_is_better": ["collisions"],
        "partially_observable": True,
        "description": (
            "Cooperative navigation (JaxMARL simple_spread), 4 seekers, 4 landmarks; each seeker sees "
            "its 2 nearest landmarks and 1 nearest seekers. Team reward per step = -sum_landmarks "
            "min_seeker distance - number of colliding seeker pairs."
        ),
    },
    "PP_3p1p": {
        "env_id": "PP_3p1p",
        "agents": ["adversary_0", "adversary_1", "adversary_2"],
        "agent_types": ["predator", "predator", "predator"],
        "obs_dim": 10,
        "obs_widths": [10, 10, 10],
        "state_dim": 20,
        "discrete": True,
        "num_actions": 5,
        "action_dims": [5, 5, 5],
        "episode_length": 25,
        "scores": ["return", "catches"],
        "lower_is_better": [],
        "partially_observable": True,
        "description": (
            "Predator-prey (JaxMARL simple_tag), 3 predators, 1 scripted prey fleeing the nearest "
            "predator, 2 obstacles; each predator sees its 1 nearest predators and the prey (not the "
            "obstacles). Team reward per step = 10 x number of predators touching the prey."
        ),
    },
    "overcooked_cramped_room": {
        "env_id": "overcooked_cramped_room",
        "agents": ["agent_0", "agent_1"],
        "agent_types": ["cook", "cook"],
        "obs_dim": 520,
        "obs_widths": [520, 520],
        "state_dim": 520,
        "discrete": True,
        "num_actions": 6,
        "action_dims": [6, 6],
        "episode_length": 400,
        "scores": ["return", "soups"],
        "lower_is_better": [],
        "partially_observable": False,
        "description": (
            "Overcooked (JaxMARL v1), layout cramped_room (4x5 grid), 2 cooks. Obs = flattened (H,W,26)"
            " JaxMARL grid per cook; state = agent_0's obs (lossless). Team reward = 20 per soup "
            "delivered (shaped reward only in info)."
        ),
    },
    "overcooked_asymmetric_advantages": {
        "env_id": "overcooked_asymmetric_advantages",
        "agents": ["agent_0", "agent_1"],
        "agent_types": ["cook", "cook"],
        "obs_dim": 1170,
        "obs_widths": [1170, 1170],
        "state_dim": 1170,
        "discrete": True,
        "num_actions": 6,
        "action_dims": [6, 6],
        "episode_length": 400,
        "scores": ["return", "soups"],
        "lower_is_better": [],
        "partially_observable": False,
        "description": (
            "Overcooked (JaxMARL v1), layout asymmetric_advantages (5x9 grid), 2 cooks. Obs = flattened"
            " (H,W,26) JaxMARL grid per cook; state = agent_0's obs (lossless). Team reward = 20 per "
            "soup delivered (shaped reward only in info)."
        ),
    },
    "overcooked_coordination_ring": {
        "env_id": "overcooked_coordination_ring",
        "agents": ["agent_0", "agent_1"],
        "agent_types": ["cook", "cook"],
        "obs_dim": 650,
        "obs_widths": [650, 650],
        "state_dim": 650,
        "discrete": True,
        "num_actions": 6,
        "action_dims": [6, 6],
        "episode_length": 400,
        "scores": ["return", "soups"],
        "lower_is_better": [],
        "partially_observable": False,
        "description": (
            "Overcooked (JaxMARL v1), layout coordination_ring (5x5 grid), 2 cooks. Obs = flattened "
            "(H,W,26) JaxMARL grid per cook; state = agent_0's obs (lossless). Team reward = 20 per "
            "soup delivered (shaped reward only in info)."
        ),
    },
    "overcooked_forced_coordination": {
        "env_id": "overcooked_forced_coordination",
        "agents": ["agent_0", "agent_1"],
        "agent_types": ["cook", "cook"],
        "obs_dim": 650,
        "obs_widths": [650, 650],
        "state_dim": 650,
        "discrete": True,
        "num_actions": 6,
        "action_dims": [6, 6],
        "episode_length": 400,
        "scores": ["return", "soups"],
        "lower_is_better": [],
        "partially_observable": False,
        "description": (
            "Overcooked (JaxMARL v1), layout forced_coordination (5x5 grid), 2 cooks. Obs = flattened "
            "(H,W,26) JaxMARL grid per cook; state = agent_0's obs (lossless). Team reward = 20 per "
            "soup delivered (shaped reward only in info)."
        ),
    },
    "overcooked_counter_circuit": {
        "env_id": "overcooked_counter_circuit",
        "agents": ["agent_0", "agent_1"],
        "agent_types": ["cook", "cook"],
        "obs_dim": 1040,
        "obs_widths": [1040, 1040],
        "state_dim": 1040,
        "discrete": True,
        "num_actions": 6,
        "action_dims": [6, 6],
        "episode_length": 400,
        "scores": ["return", "soups"],
        "lower_is_better": [],
        "partially_observable": False,
        "description": (
            "Overcooked (JaxMARL v1), layout counter_circuit (5x8 grid), 2 cooks. Obs = flattened "
            "(H,W,26) JaxMARL grid per cook; state = agent_0's obs (lossless). Team reward = 20 per "
            "soup delivered (shaped reward only in info)."
        ),
    },
    "smax_3m": {
        "env_id": "smax_3m",
        "agents": ["ally_0", "ally_1", "ally_2"],
        "agent_types": ["marine", "marine", "marine"],
        "obs_dim": 75,
        "obs_widths": [75, 75, 75],
        "state_dim": 72,
        "discrete": True,
        "num_actions": 8,
        "action_dims": [8, 8, 8],
        "episode_length": 100,
        "scores": ["return", "win"],
        "lower_is_better": [],
        "partially_observable": True,
        "description": (
            "SMAX 3m: 3 allies vs 3 heuristic enemies. Team reward = allies' shared JaxMARL reward "
            "(normalised enemy health lost + 1 for a win)."
        ),
    },
    "smax_8m": {
        "env_id": "smax_8m",
        "agents": ["ally_0", "ally_1", "ally_2", "ally_3", "ally_4", "ally_5", "ally_6", "ally_7"],
        "agent_types": ["marine", "marine", "marine", "marine", "marine", "marine", "marine", "marine"],
        "obs_dim": 205,
        "obs_widths": [205, 205, 205, 205, 205, 205, 205, 205],
        "state_dim": 192,
        "discrete": True,
        "num_actions": 13,
        "action_dims": [13, 13, 13, 13, 13, 13, 13, 13],
        "episode_length": 100,
        "scores": ["return", "win"],
        "lower_is_better": [],
        "partially_observable": True,
        "description": (
            "SMAX 8m: 8 allies vs 8 heuristic enemies. Team reward = allies' shared JaxMARL reward "
            "(normalised enemy health lost + 1 for a win)."
        ),
    },
    "smax_2s3z": {
        "env_id": "smax_2s3z",
        "agents": ["ally_0", "ally_1", "ally_2", "ally_3", "ally_4"],
        "agent_types": ["stalker", "stalker", "zealot", "zealot", "zealot"],
        "obs_dim": 127,
        "obs_widths": [127, 127, 127, 127, 127],
        "state_dim": 120,
        "discrete": True,
        "num_actions": 10,
        "action_dims": [10, 10, 10, 10, 10],
        "episode_length": 100,
        "scores": ["return", "win"],
        "lower_is_better": [],
        "partially_observable": True,
        "description": (
            "SMAX 2s3z: 5 allies vs 5 heuristic enemies. Team reward = allies' shared JaxMARL reward "
            "(normalised enemy health lost + 1 for a win)."
        ),
    },
    "smax_3s5z": {
        "env_id": "smax_3s5z",
        "agents": ["ally_0", "ally_1", "ally_2", "ally_3", "ally_4", "ally_5", "ally_6", "ally_7"],
        "agent_types": ["stalker", "stalker", "stalker", "zealot", "zealot", "zealot", "zealot", "zealot"],
        "obs_dim": 205,
        "obs_widths": [205, 205, 205, 205, 205, 205, 205, 205],
        "state_dim": 192,
        "discrete": True,
        "num_actions": 13,
        "action_dims": [13, 13, 13, 13, 13, 13, 13, 13],
        "episode_length": 100,
        "scores": ["return", "win"],
        "lower_is_better": [],
        "partially_observable": True,
        "description": (
            "SMAX 3s5z: 8 allies vs 8 heuristic enemies. Team reward = allies' shared JaxMARL reward "
            "(normalised enemy health lost + 1 for a win)."
        ),
    },
    "smax_3s_vs_5z": {
        "env_id": "smax_3s_vs_5z",
        "agents": ["ally_0", "ally_1", "ally_2"],
        "agent_types": ["stalker", "stalker", "stalker"],
        "obs_dim": 101,
        "obs_widths": [101, 101, 101],
        "state_dim": 96,
        "discrete": True,
        "num_actions": 10,
        "action_dims": [10, 10, 10],
        "episode_length": 100,
        "scores": ["return", "win"],
        "lower_is_better": [],
        "partially_observable": True,
        "description": (
            "SMAX 3s_vs_5z: 3 allies vs 5 heuristic enemies. Team reward = allies' shared JaxMARL "
            "reward (normalised enemy health lost + 1 for a win)."
        ),
    },
    "smax_10m_vs_11m": {
        "env_id": "smax_10m_vs_11m",
        "agents": ["ally_0", "ally_1", "ally_2", "ally_3", "ally_4", "ally_5", "ally_6", "ally_7", "ally_8", "ally_9"],
        "agent_types": ["marine", "marine", "marine", "marine", "marine", "marine", "marine", "marine", "marine", "marine"],
        "obs_dim": 270,
        "obs_widths": [270, 270, 270, 270, 270, 270, 270, 270, 270, 270],
        "state_dim": 252,
        "discrete": True,
        "num_actions": 16,
        "action_dims": [16, 16, 16, 16, 16, 16, 16, 16, 16, 16],
        "episode_length": 100,
        "scores": ["return", "win"],
        "lower_is_better": [],
        "partially_observable": True,
        "description": (
            "SMAX 10m_vs_11m: 10 allies vs 11 heuristic enemies. Team reward = allies' shared JaxMARL "
            "reward (normalised enemy health lost + 1 for a win)."
        ),
    },
    "smax_6h_vs_8z": {
        "env_id": "smax_6h_vs_8z",
        "agents": ["ally_0", "ally_1", "ally_2", "ally_3", "ally_4", "ally_5"],
        "agent_types": ["hydralisk", "hydralisk", "hydralisk", "hydralisk", "hydralisk", "hydralisk"],
        "obs_dim": 179,
        "obs_widths": [179, 179, 179, 179, 179, 179],
        "state_dim": 168,
        "discrete": True,
        "num_actions": 13,
        "action_dims": [13, 13, 13, 13, 13, 13],
        "episode_length": 100,
        "scores": ["return", "win"],
        "lower_is_better": [],
        "partially_observable": True,
        "description": (
            "SMAX 6h_vs_8z: 6 allies vs 8 heuristic enemies. Team reward = allies' shared JaxMARL "
            "reward (normalised enemy health lost + 1 for a win)."
        ),
    },
    "smax_5m_vs_6m": {
        "env_id": "smax_5m_vs_6m",
        "agents": ["ally_0", "ally_1", "ally_2", "ally_3", "ally_4"],
        "agent_types": ["marine", "marine", "marine", "marine", "marine"],
        "obs_dim": 140,
        "obs_widths": [140, 140, 140, 140, 140],
        "state_dim": 132,
        "discrete": True,
        "num_actions": 11,
        "action_dims": [11, 11, 11, 11, 11],
        "episode_length": 100,
        "scores": ["return", "win"],
        "lower_is_better": [],
        "partially_observable": True,
        "description": (
            "SMAX 5m_vs_6m: 5 allies vs 6 heuristic enemies. Team reward = allies' shared JaxMARL "
            "reward (normalised enemy health lost + 1 for a win)."
        ),
    },
    "halfcheetah_6x1": {
        "env_id": "halfcheetah_6x1",
        "agents": ["agent_0", "agent_1", "agent_2", "agent_3", "agent_4", "agent_5"],
        "agent_types": ["bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"],
        "obs_dim": 9,
        "obs_widths": [9, 9, 8, 9, 9, 8],
        "state_dim": 17,
        "discrete": False,
        "num_actions": 1,
        "action_dims": [1, 1, 1, 1, 1, 1],
        "episode_length": 1000,
        "scores": ["return"],
        "lower_is_better": [],
        "partially_observable": True,
        "description": (
            "MaBrax halfcheetah_6x1 (Brax halfcheetah, positional backend) with MaMuJoCo's obsk=1 "
            "partition; state = 17-dim global observation; team reward = Brax reward; never terminates "
            "early."
        ),
    },
    "halfcheetah_2x3": {
        "env_id": "halfcheetah_2x3",
        "agents": ["agent_0", "agent_1"],
        "agent_types": ["back_leg", "front_leg"],
        "obs_dim": 12,
        "obs_widths": [12, 12],
        "state_dim": 17,
        "discrete": False,
        "num_actions": 3,
        "action_dims": [3, 3],
        "episode_length": 1000,
        "scores": ["return"],
        "lower_is_better": [],
        "partially_observable": True,
        "description": (
            "MaBrax halfcheetah_2x3 (Brax halfcheetah, positional backend) with MaMuJoCo's obsk=1 "
            "partition; state = 17-dim global observation; team reward = Brax reward; never terminates "
            "early."
        ),
    },
    "walker2d_2x3": {
        "env_id": "walker2d_2x3",
        "agents": ["agent_0", "agent_1"],
        "agent_types": ["right_leg", "left_leg"],
        "obs_dim": 12,
        "obs_widths": [12, 12],
        "state_dim": 17,
        "discrete": False,
        "num_actions": 3,
        "action_dims": [3, 3],
        "episode_length": 1000,
        "scores": ["return"],
        "lower_is_better": [],
        "partially_observable": True,
        "description": (
            "MaBrax walker2d_2x3 (Brax walker2d, positional backend) with MaMuJoCo's obsk=1 partition; "
            "state = 17-dim global observation; team reward = Brax reward; terminates when the walker "
            "falls."
        ),
    },
    "commons": {
        "env_id": "commons",
        "agents": ["agent_0", "agent_1", "agent_2"],
        "agent_types": ["consumer", "consumer", "consumer"],
        "obs_dim": 3,
        "obs_widths": [3, 3, 3],
        "state_dim": 5,
        "discrete": True,
        "num_actions": 6,
        "action_dims": [6, 6, 6],
        "episode_length": 100,
        "scores": ["return", "v_final", "v_total", "v_min"],
        "lower_is_better": [],
        "partially_observable": False,
        "description": (
            "Tragedy of the Commons: pool R_max=90, logistic growth g=0.3, consumption levels 0..5; "
            "team reward = total consumption"
        ),
    },
    "poly_sign": {
        "env_id": "poly_sign",
        "agents": ["agent_0", "agent_1"],
        "agent_types": ["player", "player"],
        "obs_dim": 1,
        "obs_widths": [1, 1],
        "state_dim": 1,
        "discrete": False,
        "num_actions": 1,
        "action_dims": [1, 1],
        "episode_length": 1,
        "scores": ["return"],
        "lower_is_better": [],
        "partially_observable": False,
        "description": "one-step polynomial game 'sign', actions in [-1, 1]",
    },
    "poly_twin_peaks": {
        "env_id": "poly_twin_peaks",
        "agents": ["agent_0", "agent_1"],
        "agent_types": ["player", "player"],
        "obs_dim": 1,
        "obs_widths": [1, 1],
        "state_dim": 1,
        "discrete": False,
        "num_actions": 1,
        "action_dims": [1, 1],
        "episode_length": 1,
        "scores": ["return"],
        "lower_is_better": [],
        "partially_observable": False,
        "description": "one-step polynomial game 'twin_peaks', actions in [-1, 1]",
    },
    "poly_coupled": {
        "env_id": "poly_coupled",
        "agents": ["agent_0", "agent_1"],
        "agent_types": ["player", "player"],
        "obs_dim": 1,
        "obs_widths": [1, 1],
        "state_dim": 1,
        "discrete": False,
        "num_actions": 1,
        "action_dims": [1, 1],
        "episode_length": 1,
        "scores": ["return"],
        "lower_is_better": [],
        "partially_observable": False,
        "description": "one-step polynomial game 'coupled', actions in [-1, 1]",
    },
    "poly_decoupled": {
        "env_id": "poly_decoupled",
        "agents": ["agent_0", "agent_1"],
        "agent_types": ["player", "player"],
        "obs_dim": 1,
        "obs_widths": [1, 1],
        "state_dim": 1,
        "discrete": False,
        "num_actions": 1,
        "action_dims": [1, 1],
        "episode_length": 1,
        "scores": ["return"],
        "lower_is_better": [],
        "partially_observable": False,
        "description": "one-step polynomial game 'decoupled', actions in [-1, 1]",
    },
}


def static_spec(env_id: str) -> EnvSpec:
    """The spec of `env_id` built with its registered defaults, without building the environment."""
    try:
        fields = STATIC_SPECS[env_id]
    except KeyError:
        raise KeyError(f"no static spec for environment id {env_id!r}; known: {', '.join(sorted(STATIC_SPECS))}") from None
    return EnvSpec.from_dict(fields)


def describe_envs(family: str | None = None, specs: bool = True) -> list[dict]:
    """One row per registered environment (of `family`): id, family, description and, with
    `specs`, its spec's sizes from `STATIC_SPECS` (no environment is built)."""
    from teamsift.envs.registry import list_envs

    rows = []
    for item in list_envs(family):
        row = {"env_id": item.env_id, "family": item.family, "description": item.description}
        if specs:
            spec = static_spec(item.env_id)
            row.update(
                agents=spec.num_agents, agent_types=list(spec.type_names),
                agent_type_counts={name: spec.agent_types.count(name) for name in spec.type_names},
                obs_dim=spec.obs_dim, state_dim=spec.state_dim,
                actions=("discrete " if spec.discrete else "continuous ") + str(spec.num_actions),
                episode_length=spec.episode_length, scores=list(spec.scores),
                partially_observable=spec.partially_observable,
            )
        rows.append(row)
    return rows
