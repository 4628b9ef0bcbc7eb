"""Packed episodes, for dataset generation: a fixed number of environment slots, each of
which starts the next episode of a queue once its current episode has ended, so that
steps are spent only on episodes still running (`teamsift.evaluate.rollout` runs every
episode to `episode_length` and masks what comes after its end).

Episode g's randomness is the one `rollout` gives it when the episodes are run in blocks
of `block` with block b under key fold_in(key, b) (what `teamsift.collect.collect` does):
its key is split(fold_in(key, g // block), block)[g % block], its reset and loop keys are
split(that key), and step t uses split(loop_key, episode_length)[t]. Under JAX's
partitionable threefry (the default) split(k, n)[i] == fold_in(k, i), which is how those
keys are made here when an episode starts. So an episode does not depend on the slot that
plays it or on when it starts, and the episodes are those `rollout` returns.

The slots are split into G groups, one per device when there are several (each group
takes every G-th episode of the queue, so no step needs another device's slots). The
episodes come back to the host in order, a batch at a time, already packed as a dataset
stores them (`packed_episodes`); how much is held at once depends on the number of slots
and on `episode_length`, not on the number of episodes.
"""

from __future__ import annotations

import functools
from typing import Any, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from teamsift.devices import batch_layout, batch_size_for
from teamsift.envs.base import Env
from teamsift.nets.policy import act_batch, plan_batch

#: Step fields as a dataset stores them, and the fields of an episode's end.
STEP_FIELDS = ("obs", "state", "avail", "actions", "reward", "terminated", "truncated")
FINAL_FIELDS = ("final_obs", "final_state", "final_avail")


class Slots(NamedTuple):
    """What every slot is playing; leading axes [G, m] (groups, slots per group)."""

    episode: jax.Array  # int32: the episode played (>= num_episodes: none, the slot idles)
    t: jax.Array  # int32: its next step
    ended: jax.Array  # bool: the episode has ended (or never started): the slot takes the next one
    loop_key: jax.Array  # the episode's loop key
    obs: Any
    state: Any
    avail: Any
    env_state: Any
    policy_carry: Any
    plan: Any  # `plan_batch` of the slots' assignment rows, per group
    rewards: jax.Array  # [G, m, T] the episode's rewards so far (for its scores)
    infos: Any  # [G, m, T, ...] its infos so far
    started: jax.Array  # [G] int32: how many episodes each group has taken from the queue


def _vmap2(fn):
    """`fn` over the leading [G, m] axes of its arguments, as one vmap over G·m: XLA makes
    slower programs of two nested vmaps for some environments (SMAX's step among them)."""
    def over_slots(*args):
        lead = jax.tree.leaves(args)[0].shape[:2]
        out = jax.vmap(fn)(*jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), args))
        return jax.tree.map(lambda x: x.reshape(lead + x.shape[1:]), out)
    return over_slots


def _select(mask, new, old):
    """Per slot [G, m]: `new` where mask, else `old` (any trailing axes)."""
    def pick(n, o):
        return jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - mask.ndim)), n, o)
    return jax.tree.map(pick, new, old)


def _episode_keys(key, episode, block: int):
    """Per slot [G, m], episode g's key: split(fold_in(key, g // block), block)[g % block] (see the module doc)."""
    return _vmap2(lambda g: jax.random.fold_in(jax.random.fold_in(key, g // block), g % block))(episode)


def _start(env: Env, policy, key, assignment, num_episodes: int, block: int, slots: Slots) -> Slots:
    """Every ended slot takes the next episode of its group's queue (or idles past the end)."""
    groups = slots.ended.shape[0]
    need = slots.ended
    order = jnp.cumsum(need, axis=1) - need  # the rank of each needing slot in its group
    episode = (slots.started[:, None] + order) * groups + jnp.arange(groups)[:, None]
    episode = jnp.where(need, episode, slots.episode)
    real = jnp.minimum(episode, num_episodes - 1)
    pair = _vmap2(jax.random.split)(_episode_keys(key, real, block))  # as rollout: reset, loop = split(key)
    first = _vmap2(env.reset)(pair[..., 0])
    fresh_carry = _vmap2(lambda _: policy.initial_carry())(jnp.zeros(slots.ended.shape))
    rows = None if assignment is None else assignment[real]  # [G, m, A]
    plan = slots.plan if rows is None else jax.vmap(lambda r: plan_batch(policy, r))(rows)
    new = slots._replace(
        episode=episode,
        t=jnp.where(need, 0, slots.t),
        ended=jnp.where(need, episode >= num_episodes, slots.ended),
        loop_key=_select(need, pair[..., 1], slots.loop_key),
        obs=_select(need, first.obs, slots.obs),
        state=_select(need, first.state, slots.state),
        avail=_select(need, first.avail, slots.avail),
        env_state=_select(need, first.env_state, slots.env_state),
        policy_carry=_select(need, fresh_carry, slots.policy_carry),
        plan=plan,
        rewards=jnp.where(need[..., None], 0.0, slots.rewards),
        infos=_select(need, jax.tree.map(jnp.zeros_like, slots.infos), slots.infos),
        started=slots.started + jnp.sum(need, axis=1, dtype=jnp.int32),
    )
    return new


def _step(env: Env, policy, slots: Slots):
    """One step of every slot; returns (slots, what a dataset keeps of it)."""
    length = env.spec.episode_length
    step_key = _vmap2(jax.random.fold_in)(slots.loop_key, slots.t)
    pair = _vmap2(jax.random.split)(step_key)  # as rollout: act, env = split(step key)
    actions, policy_carry = jax.vmap(functools.partial(act_batch, policy))(
        slots.plan, pair[..., 0], slots.obs, slots.avail, slots.policy_carry)
    out = _vmap2(env.step)(pair[..., 1], slots.env_state, actions)
    cut = slots.t == length - 1  # the last step there is: the episode is truncated here
    last = out.done | cut
    now = jnp.arange(length) == slots.t[..., None]  # [G, m, T]
    rewards = jnp.where(now, out.reward[..., None], slots.rewards)
    infos = jax.tree.map(lambda h, x: jnp.where(now.reshape(now.shape + (1,) * (x.ndim - 2)), x[:, :, None], h),
                         slots.infos, out.info)
    happened = jnp.arange(length) <= slots.t[..., None]
    scores = _vmap2(env.scores)(rewards, infos, happened)
    terminated = out.info["terminated"]
    record = {
        "episode": slots.episode, "t": slots.t, "valid": ~slots.ended, "last": ~slots.ended & last,
        "obs": slots.obs, "state": slots.state, "avail": slots.avail, "actions": actions,
        "reward": out.reward, "terminated": terminated,
        "truncated": (out.info["truncated"] & ~terminated) | (cut & ~out.done),
        "final_obs": out.obs, "final_state": out.state, "final_avail": out.avail, "scores": scores,
    }
    # Slots whose episode has ended keep stepping (their records are marked invalid) until
    # the next refill gives them a new episode.
    slots = slots._replace(t=slots.t + 1, ended=slots.ended | last, obs=out.obs, state=out.state, avail=out.avail,
                           env_state=out.env_state, policy_carry=policy_carry, rewards=rewards, infos=infos)
    return slots, record


@functools.partial(jax.jit, static_argnames=("env", "num_episodes", "block", "steps", "refill_every", "sharding"))
def _segment(env: Env, policy, key, assignment, slots: Slots, num_episodes: int, block: int, steps: int,
             refill_every: int, sharding=None):
    """`steps` steps of every slot, ended slots refilled every `refill_every` steps."""
    def constrain(tree):
        return tree if sharding is None else jax.lax.with_sharding_constraint(tree, sharding)

    groups = slots.ended.shape[0]

    def body(slots, index):
        # Once the queue is empty a refill would only give slots nothing to play: skip its
        # resets (the tail of a run, while the last episodes end, costs less).
        queued = jnp.any(slots.started * groups + jnp.arange(groups) < num_episodes)

        def play(slots):
            refill = jnp.any(slots.ended) & queued & (index % refill_every == 0)
            slots = jax.lax.cond(refill, lambda s: _start(env, policy, key, assignment, num_episodes, block, s),
                                 lambda s: s, slots)
            return _step(env, policy, constrain(slots))

        def rest(slots):  # every episode has ended: the segment's remaining steps record nothing
            shapes = jax.eval_shape(play, slots)[1]
            return slots, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        # The last episode can end anywhere in a segment: without this the segment's remaining
        # steps would step every slot for nothing.
        return jax.lax.cond(jnp.all(slots.ended) & ~queued, rest, play, slots)

    slots, records = jax.lax.scan(body, constrain(slots), jnp.arange(steps))
    finished = jnp.all(slots.ended) & jnp.all(slots.started * groups + jnp.arange(groups) >= num_episodes)
    return slots, records, finished


@functools.partial(jax.jit, static_argnames=("env", "groups", "per_group"))
def _empty_slots(env: Env, policy, key, assignment, groups: int, per_group: int) -> Slots:
    """Slots that have all ended (so the first refill starts the first episodes)."""
    shape = (groups, per_group)
    first = _vmap2(env.reset)(jnp.broadcast_to(jax.random.split(key, 1)[0], shape))
    info = jax.eval_shape(lambda k: env.step(k, env.reset(k).env_state, _zero_actions(env)).info,
                          jax.random.key(0))
    length = env.spec.episode_length
    rows = None if assignment is None else jnp.zeros(shape + assignment.shape[1:], jnp.int32)
    plan = None if rows is None else jax.vmap(lambda r: plan_batch(policy, r))(rows)
    return Slots(
        episode=jnp.full(shape, -1, jnp.int32), t=jnp.zeros(shape, jnp.int32), ended=jnp.ones(shape, bool),
        loop_key=jnp.broadcast_to(key, shape), obs=first.obs, state=first.state, avail=first.avail,
        env_state=first.env_state,
        policy_carry=_vmap2(lambda _: policy.initial_carry())(jnp.zeros(shape)),
        plan=plan, rewards=jnp.zeros(shape + (length,), jnp.float32),
        infos=jax.tree.map(lambda x: jnp.zeros(shape + (length,) + x.shape, x.dtype), info),
        started=jnp.zeros(groups, jnp.int32))


def _zero_actions(env: Env):
    spec = env.spec
    if spec.discrete:
        return jnp.zeros(spec.num_agents, jnp.int32)
    return jnp.zeros(spec.action_shape, jnp.float32)


def record_bytes(env: Env) -> int:
    """Bytes one slot's step adds to a segment's records (steps and episode ends)."""
    spec = env.spec
    floats = 2 * (spec.num_agents * spec.obs_dim + spec.state_dim) + spec.num_agents * spec.num_actions + 8
    flags = 2 * spec.num_agents * spec.num_actions if spec.discrete else 0
    return 4 * floats + flags + 16


def packed_episodes(env: Env, policy, key: jax.Array, num_episodes: int, *, block: int,
                    assignment: np.ndarray | None = None, slots: int = 1024, refill_every: int = 1,
                    segment_bytes: int = 64 * 2**20) -> Iterator[dict]:
    """Play `num_episodes` episodes of `policy` in `slots` environments at once and yield
    them in order, in batches of whole episodes packed as a dataset stores them:
    {"first_episode", "episode_lengths" [e], step fields [n, …] (n = the batch's steps),
    final fields [e, …], "scores" {name: [e]}}.

    `assignment` [E, A] picks the policy of each slot per episode (a `PolicyBank` or
    `CheckpointBank`). `block` fixes each episode's key (see the module doc): with the
    same `block` the episodes are those of `rollout` run block by block, whatever `slots`,
    `refill_every` and `segment_bytes` are. `refill_every` > 1 starts new episodes only
    every that many steps (a reset for every slot then costs less, at the price of slots
    idling until then). Each jitted segment records about `segment_bytes` of steps.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    groups = batch_size_for(1)  # one group per device (1 on one device)
    per_group = -(-min(slots, num_episodes) // groups)
    total = groups * per_group
    # At most one episode length per segment: the last segment, which runs while the last
    # episodes end, then wastes less.
    steps = max(1, min(env.spec.episode_length, segment_bytes // max(1, total * record_bytes(env))))
    steps = max(refill_every, steps - steps % refill_every)
    sharding = batch_layout(groups) if groups > 1 else None
    assignment = None if assignment is None else jnp.asarray(assignment, jnp.int32)
    if sharding is not None:
        # Inputs committed to one device (a restored checkpoint, a device_put) would clash
        # with the groups' devices: replicate them on the mesh first.
        replicated = NamedSharding(sharding.mesh, PartitionSpec())
        policy, key, assignment = jax.device_put((policy, key, assignment), replicated)
    state = _empty_slots(env, policy, key, assignment, groups=groups, per_group=per_group)
    run = functools.partial(_segment, env, policy, key, assignment, num_episodes=num_episodes, block=block,
                            steps=steps, refill_every=refill_every, sharding=sharding)
    collector = _InOrder(num_episodes, env.spec.episode_length)
    pending = run(state)
    while True:
        state, records, finished = pending
        more = not bool(finished)
        if more:  # dispatched now, so it runs while the host sorts the records of this segment
            pending = run(state)
        collector.add(jax.tree.map(np.asarray, records))
        yield from collector.ready()
        if not more:
            break
    if collector.next_episode != num_episodes:  # every episode ends by `episode_length`: a bug if not
        raise RuntimeError(f"packed rollout ended with {collector.next_episode} of {num_episodes} episodes")


class _InOrder:
    """Gathers the steps and ends of episodes as segments report them (out of order) and
    hands out the episodes in order once every earlier episode has ended."""

    def __init__(self, num_episodes: int, episode_length: int):
        self.length = episode_length
        self.next_episode = 0  # every episode before it has been handed out
        self.ended = np.zeros(num_episodes, bool)
        self.steps: list[dict] = []  # step rows of episodes not handed out yet
        self.ends: list[dict] = []  # their final rows

    def add(self, records: dict) -> None:
        valid = records["valid"]
        last = records["last"]
        rows = {name: records[name][valid] for name in ("episode", "t", *STEP_FIELDS) if records[name] is not None}
        ends = {name: records[name][last] for name in ("episode", "t", *FINAL_FIELDS) if records[name] is not None}
        ends["scores"] = {name: value[last] for name, value in records["scores"].items()}
        self.steps.append(rows)
        self.ends.append(ends)
        self.ended[ends["episode"]] = True

    def ready(self) -> Iterator[dict]:
        stop = self.next_episode
        while stop < len(self.ended) and self.ended[stop]:
            stop += 1
        if stop == self.next_episode:
            return
        steps, self.steps = _split(concat_parts(self.steps), stop)
        ends, self.ends = _split(concat_parts(self.ends), stop)
        step_order = np.argsort(steps["episode"].astype(np.int64) * self.length + steps["t"], kind="stable")
        end_order = np.argsort(ends["episode"], kind="stable")
        batch = {name: value[step_order] for name, value in steps.items() if name in STEP_FIELDS}
        batch.update({name: value[end_order] for name, value in ends.items() if name in FINAL_FIELDS})
        batch["episode_lengths"] = (ends["t"][end_order] + 1).astype(np.int64)
        batch["scores"] = {name: np.asarray(value[end_order], np.float64) for name, value in ends["scores"].items()}
        batch["first_episode"] = self.next_episode
        self.next_episode = stop
        yield batch


def concat_parts(parts: Sequence[dict]) -> dict:
    """Host arrays of several parts (nested dicts of arrays with the same keys) joined along
    their first axis."""
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def _split(rows: dict, stop: int) -> tuple[dict, list[dict]]:
    """(rows of episodes before `stop`, [the rest])."""
    before = rows["episode"] < stop
    take = jax.tree.map(lambda x: x[before], rows)
    keep = jax.tree.map(lambda x: x[~before], rows)
    return take, [keep]


__all__ = ["FINAL_FIELDS", "STEP_FIELDS", "Slots", "concat_parts", "packed_episodes", "record_bytes"]
