"""Functional JAX environments behind one interface (see `teamsift.envs.base`).

    >>> from teamsift import envs
    >>> env = envs.make("CN_3ls3l")
    >>> reset = env.reset(jax.random.key(0))
"""

from teamsift.envs.base import Env, EnvSpec, Reset, Step, pad_obs, return_score, step_info
from teamsift.envs.registry import EnvEntry, entry, list_envs, make, register

# --- MPE (JaxMARL), discrete actions --------------------------------------------------
register("mpe_spread", "mpe", "teamsift.envs.mpe:make_spread",
         "Cooperative navigation (simple_spread), 3 agents, full observations", num_agents=3)
register("mpe_tag", "mpe", "teamsift.envs.mpe:make_tag",
         "Predator-prey (simple_tag), 3 predators, prey scripted to flee the nearest predator",
         num_predators=3)
register("CN_3ls3l", "mpe", "teamsift.envs.mpe:make_spread",
         "SIT cooperative navigation: 3 seekers, each sees 1 other seeker and 2 landmarks",
         num_agents=3, visible_agents=1, visible_landmarks=2)
register("CN_4ls4l", "mpe", "teamsift.envs.mpe:make_spread",
         "SIT cooperative navigation: 4 seekers, each sees 1 other seeker and 2 landmarks",
         num_agents=4, visible_agents=1, visible_landmarks=2)
register("PP_3p1p", "mpe", "teamsift.envs.mpe:make_tag",
         "SIT predator-prey: 3 predators, each sees 1 other predator and the prey; the prey "
         "flees the nearest predator and is slower than the predators (SIT's prey is a "
         "pretrained policy; JaxMARL's faster prey is almost never caught)",
         num_predators=3, visible_predators=1, prey_max_speed=0.7, prey_accel=2.0)

# --- Overcooked (JaxMARL v1) ------------------------------------------------------------
for _layout in ("cramped_room", "asymmetric_advantages", "coordination_ring",
                "forced_coordination", "counter_circuit"):
    register(f"overcooked_{_layout}", "overcooked", "teamsift.envs.overcooked:make_overcooked",
             f"Overcooked, layout {_layout}, 2 cooks", layout=_layout)

# --- SMAX (JaxMARL) ---------------------------------------------------------------------
for _map in ("3m", "8m", "2s3z", "3s5z", "3s_vs_5z", "10m_vs_11m", "6h_vs_8z", "5m_vs_6m"):
    register(f"smax_{_map}", "smax", "teamsift.envs.smax:make_smax",
             f"SMAX map {_map} (heuristic enemy)", map_name=_map)

# --- MaBrax (JaxMARL + Brax) ------------------------------------------------------------
register("halfcheetah_6x1", "mabrax", "teamsift.envs.mabrax:make_mabrax",
         "HalfCheetah, 6 agents with one joint each (MaMuJoCo 6x1 partition)",
         robot="halfcheetah_6x1")
register("halfcheetah_2x3", "mabrax", "teamsift.envs.mabrax:make_mabrax",
         "HalfCheetah, 2 agents with three joints each (back leg, front leg)",
         robot="halfcheetah_2x3")
register("walker2d_2x3", "mabrax", "teamsift.envs.mabrax:make_mabrax",
         "Walker2d, 2 agents with three joints each (one leg each)", robot="walker2d_2x3")

# --- Our own ----------------------------------------------------------------------------
register("commons", "commons", "teamsift.envs.commons:make_commons",
         "Tragedy of the Commons: a shared logistically regrowing resource pool")
register("poly_sign", "poly", "teamsift.envs.poly:make_poly",
         "One-step polynomial game R = x*y (sign agreement)", game="sign")
register("poly_twin_peaks", "poly", "teamsift.envs.poly:make_poly",
         "One-step polynomial game R = -A(x^2+y^2) - B(xy)^2 + C*xy", game="twin_peaks")
register("poly_coupled", "poly", "teamsift.envs.poly:make_poly",
         "One-step polynomial game R = -s(x-y)^2 + x*y (coupling strength s)", game="coupled")
register("poly_decoupled", "poly", "teamsift.envs.poly:make_poly",
         "One-step polynomial game R = -(x-1)^2 - (y-1)^2 (no interaction)", game="decoupled")

__all__ = [
    "Env", "EnvSpec", "Reset", "Step", "EnvEntry", "make", "list_envs", "entry", "register",
    "pad_obs", "return_score", "step_info",
]
