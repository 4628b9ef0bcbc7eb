"""Scripted behaviour policies with a known quality: ground truth for valuation tests,
demonstrators for imitation tests.

Tragedy of the Commons consumption types (methods.md §1: "sustainable, greedy, erratic"):
    sustainable  takes 2 per step — below the largest sustainable harvest (2.25 per agent)
    adaptive     takes 3 while the pool is above 70% of capacity, 2 above 40%, else 1
    greedy       always takes the most (5): empties the pool within a few steps
    erratic      takes a uniformly random amount (0 … 5)
Observation layout of `commons` (see `teamsift.envs.commons`): [pool / R_max, own last
consumption / c_max, t / T].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from teamsift.nets.policy import FunctionPolicy, PolicyBank, RandomPolicy, slot_policy

COMMONS_TYPES = ("sustainable", "adaptive", "greedy", "erratic")


def _commons_rule(kind: str, max_consumption: int = 5):
    if kind == "sustainable":
        return lambda key, obs, avail: jnp.full(obs.shape[:1], 2, jnp.int32)
    if kind == "adaptive":
        def adaptive(key, obs, avail):
            pool = obs[:, 0]
            return jnp.where(pool > 0.7, 3, jnp.where(pool > 0.4, 2, 1)).astype(jnp.int32)
        return adaptive
    if kind == "greedy":
        return lambda key, obs, avail: jnp.full(obs.shape[:1], max_consumption, jnp.int32)
    if kind == "erratic":
        return lambda key, obs, avail: jax.random.randint(key, obs.shape[:1], 0, max_consumption + 1)
    raise ValueError(f"unknown commons consumption type {kind!r}; expected one of {COMMONS_TYPES}")


_COMMONS_POLICIES: dict[str, FunctionPolicy] = {}


def commons_policy(kind: str) -> FunctionPolicy:
    """Every agent follows the consumption type `kind` (cached: one jit program per kind)."""
    if kind not in _COMMONS_POLICIES:
        _COMMONS_POLICIES[kind] = FunctionPolicy(_commons_rule(kind))
    return _COMMONS_POLICIES[kind]


def commons_team(kinds: tuple[str, ...]) -> PolicyBank:
    """A mixed group: slot i follows consumption type kinds[i]."""
    return slot_policy([commons_policy(kind) for kind in kinds])


def random_policy(spec) -> RandomPolicy:
    return RandomPolicy.for_spec(spec)


# --- MPE ----------------------------------------------------------------------------------
# JaxMARL's discrete MPE actions: 0 stay, 1 −x, 2 +x, 3 −y, 4 +y.

def move_towards(delta: jax.Array, tolerance: float = 0.05) -> jax.Array:
    """Discrete MPE move along the larger component of `delta` [..., 2]; stay when close."""
    dx, dy = delta[..., 0], delta[..., 1]
    along_x = jnp.where(dx > 0, 2, 1)
    along_y = jnp.where(dy > 0, 4, 3)
    move = jnp.where(jnp.abs(dx) >= jnp.abs(dy), along_x, along_y)
    return jnp.where(jnp.hypot(dx, dy) < tolerance, 0, move).astype(jnp.int32)


def _spread_assigned(key, obs, avail):
    """Full-observation spread: seeker i heads for landmark i (relative position at 4+2i)."""
    num_agents = obs.shape[0]
    targets = jnp.stack([obs[i, 4 + 2 * i: 6 + 2 * i] for i in range(num_agents)])
    return move_towards(targets)


def _nearest_target(key, obs, avail):
    """Partially observable CN maps: head for the nearest visible landmark (obs[4:6])."""
    return move_towards(obs[:, 4:6])


def _chase_prey(key, obs, avail):
    """PP_3p1p predators run at the prey (its relative position is at obs[6:8])."""
    return move_towards(obs[:, 6:8])


SCRIPTED_RULES = {
    "mpe_spread": {"assigned": lambda spec: FunctionPolicy(_spread_assigned)},
    "CN_3ls3l": {"nearest": lambda spec: FunctionPolicy(_nearest_target)},
    "CN_4ls4l": {"nearest": lambda spec: FunctionPolicy(_nearest_target)},
    "PP_3p1p": {"chase": lambda spec: FunctionPolicy(_chase_prey)},
}
