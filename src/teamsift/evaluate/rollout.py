"""Vectorised episodes: one `lax.scan` of `episode_length` steps per episode, `vmap`ped
over episodes, all inside one `jit`.

An episode that ends early keeps its last state (it is frozen, not reset) and its later
steps are marked invalid, so every episode has the same fixed shape [T, ...]; `valid`
says which steps happened. The observation after the last valid step is returned as
`final_obs` (and `final_state`, `final_avail`), which is what a dataset stores.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from teamsift.devices import batch_layout, batch_size_for
from teamsift.envs.base import Env


class Episodes(NamedTuple):
    """A batch of episodes, leading axes [E, T] (per-episode fields: [E])."""

    obs: Any  # [E, T, A, O] (None when not recorded)
    state: Any  # [E, T, S]
    avail: Any  # [E, T, A, nA] or None
    actions: Any  # [E, T, A] or [E, T, A, D]
    reward: jax.Array  # [E, T]
    terminated: jax.Array  # [E, T]
    truncated: jax.Array  # [E, T]
    valid: jax.Array  # [E, T] bool: the step happened
    final_obs: Any  # [E, A, O]
    final_state: Any  # [E, S]
    final_avail: Any  # [E, A, nA] or None
    scores: dict  # name -> [E]

    @property
    def lengths(self) -> jax.Array:
        return jnp.sum(self.valid, axis=1)


def _where(cond, new, old):
    return jax.tree.map(lambda n, o: jnp.where(cond, o, n), new, old)


def _run_episode(env: Env, policy, key, record: bool, assignment=None):
    if assignment is not None:
        policy = policy.assign(assignment)
    reset_key, loop_key = jax.random.split(key)
    first = env.reset(reset_key)
    carry = (first.obs, first.state, first.avail, first.env_state, policy.initial_carry(), jnp.bool_(False))

    def body(carry, step_key):
        obs, state, avail, env_state, policy_carry, done = carry
        act_key, env_key = jax.random.split(step_key)
        actions, new_policy_carry = policy.act(act_key, obs, avail, policy_carry)
        out = env.step(env_key, env_state, actions)
        valid = ~done
        new = (out.obs, out.state, out.avail, out.env_state, new_policy_carry)
        old = (obs, state, avail, env_state, policy_carry)
        frozen = _where(done, new, old)
        step_record = {
            "reward": out.reward * valid,
            "terminated": out.info["terminated"] & valid,
            "truncated": out.info["truncated"] & ~out.info["terminated"] & valid,
            "valid": valid,
            "info": out.info,
        }
        if record:
            step_record.update(obs=obs, state=state, avail=avail, actions=actions)
        return (*frozen, done | out.done), step_record

    step_keys = jax.random.split(loop_key, env.spec.episode_length)
    final, steps = jax.lax.scan(body, carry, step_keys)
    # An episode cut by the scan (never done) counts as truncated at its last step.
    steps["truncated"] = steps["truncated"].at[-1].set(steps["truncated"][-1] | ~final[-1])
    scores = env.scores(steps["reward"], steps["info"], steps["valid"])
    return Episodes(
        obs=steps.get("obs"),
        state=steps.get("state"),
        avail=steps.get("avail"),
        actions=steps.get("actions"),
        reward=steps["reward"],
        terminated=steps["terminated"],
        truncated=steps["truncated"],
        valid=steps["valid"],
        final_obs=final[0] if record else None,
        final_state=final[1] if record else None,
        final_avail=final[2] if record else None,
        scores=scores,
    )


@functools.partial(jax.jit, static_argnames=("env", "num_episodes", "record", "sharding"))
def _rollout(env: Env, policy, key: jax.Array, num_episodes: int, record: bool, assignment,
             sharding=None) -> Episodes:
    keys = jax.random.split(key, num_episodes)
    if sharding is not None:  # one slice of the episodes per device; nothing else crosses devices
        keys = jax.lax.with_sharding_constraint(keys, sharding)
        if assignment is not None:
            assignment = jax.lax.with_sharding_constraint(assignment, sharding)
    if assignment is None:
        return jax.vmap(lambda k: _run_episode(env, policy, k, record))(keys)
    return jax.vmap(lambda k, a: _run_episode(env, policy, k, record, a))(keys, assignment)


def rollout(env: Env, policy, key: jax.Array, num_episodes: int, record: bool = True,
            assignment: jax.Array | None = None) -> Episodes:
    """Run `num_episodes` independent episodes of `policy` in `env` (one jitted program).

    With `record=False` only rewards, validity and scores come back (for evaluation).
    `assignment` [E, A] (for a `PolicyBank`) says which policy plays each slot per episode.

    With several devices and `num_episodes` a multiple of their number
    (`teamsift.devices.batch_layout`: every device, or the "data" axis of a mesh set with
    `jax.set_mesh`), the episodes are split evenly over the devices: the policy and key
    are replicated on every device, each device runs its slice of the episodes, and the
    returned arrays are sharded along their episode axis. Episode i's key is the same
    either way. Otherwise everything runs on the default device, as the one-device program.
    """
    sharding = batch_layout(num_episodes)
    if sharding is not None:
        # Inputs committed to one device (a restored checkpoint, a device_put) would clash
        # with the program's devices: lay them on the mesh first (replicated / by episode).
        replicated = NamedSharding(sharding.mesh, PartitionSpec())
        policy, key = jax.device_put((policy, key), replicated)
        if assignment is not None:
            assignment = jax.device_put(assignment, sharding)
    return _rollout(env, policy, key, num_episodes, record, assignment, sharding)


def rollout_to_host(env: Env, policy, key: jax.Array, num_episodes: int, record: bool = True,
                    assignment=None) -> Episodes:
    """`rollout`'s episodes as host (NumPy) arrays, run at a size every device divides.

    With several devices the program runs `batch_size_for(num_episodes)` episodes (the
    next multiple of the device count, so `rollout` splits them over every device; the
    extra episodes repeat the first rows of `assignment`) and the extra ones are dropped
    on the host. Episode i's key, `split(key, n)[i]`, does not depend on n (JAX's
    partitionable threefry, the default), so the episodes kept are those that
    `rollout(..., num_episodes)` returns on one device.
    """
    size = batch_size_for(num_episodes)
    if assignment is not None and size != num_episodes:
        assignment = assignment[np.arange(size) % num_episodes]
    episodes = rollout(env, policy, key, size, record=record, assignment=assignment)
    return jax.tree.map(lambda x: np.asarray(x)[:num_episodes], episodes)
