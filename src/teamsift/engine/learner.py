"""What an algorithm gives the engine: pure functions of a typed state.

    state            = learner.init(seed_key, arrays[, start])     one seed (the engine vmaps seeds)
    state, metrics   = learner.update(state, key, arrays, items)   one update (jit, scan, vmap)
                       learner.update(state, key, arrays, items, step)   with `takes_step`
    policy           = learner.policy(state, arrays)               one seed's policy for `evaluate`

`arrays` is the pytree `learner.prepare(dataset, inputs)` built once per run. `items` are
the `batch_size` items of `learner.unit` that the run's sampler drew with the update's
key (`teamsift.data.samplers`; [draws, batch_size] when the learner asks for `draws`
batches per update), so the learner never chooses how data is sampled: it gathers its
batch from `arrays` at `items` (`gather_transitions`, `gather_episodes`, ...). Because the
engine draws, it can also stream: with `--data-placement stream` `arrays` is a small page
of just the rows the items touch, gathered on the host, and `items` index into it; the
same gathering code gives the same batch (`teamsift.data.pages`).

`metrics` maps names to scalars (or small vectors): the engine logs their mean over each
log interval. A learner with `takes_step` is also given `step`, the run's update number:
one scalar for all seeds, not vmapped, so that periodic work (TD3's delayed actor update,
a target refresh) is a real branch under the seed vmap; a condition on a per-seed counter
would be batched and vmap would compute both branches at every update. A learner with `proximity` returns a third value, `Feedback(items,
distance)`, the joint-action distance of the items it was given, which an adaptive
sampler (PJAP) learns from. The engine does the rest: keys, draws, seeds, devices,
chunks, progress, logs, evaluations, checkpoints and resumption (`teamsift.engine.fit`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax

Array = jax.Array
Metrics = dict  # name -> scalar (or small vector) jax array


class Feedback(NamedTuple):
    """What a learner with `proximity` reports about the items it drew (PJAP, eq. 1)."""

    items: Array  # [B] the item indices the update was given
    distance: Array  # [B] d_τ: mean L1 distance of the target policy's joint action to the data's


@dataclasses.dataclass(frozen=True, eq=False)
class Learner:
    """An algorithm as pure functions (compared by identity: build it once per config, as the
    algorithm modules' cached `learner(...)` factories do, so the engine compiles it once)."""

    name: str
    init: Callable[..., Any]  # (seed key, arrays[, start]) -> state
    update: Callable[..., tuple]  # (state, key, arrays, items) -> (state, metrics[, Feedback])
    policy: Callable[[Any, Any], Any] | None  # (one seed's state, arrays) -> a policy; None: not a policy learner
    prepare: Callable[..., dict] | None = None  # (dataset, inputs) -> device arrays; None: no dataset
    unit: str | None = None  # what items are ("step", "episode", "window", "trajectory"); None: no data
    batch_size: int = 0  # items per draw
    draws: int | None = None  # None: one batch (items [batch_size]); D: D batches (items [D, batch_size])
    span: int | None = None  # unit "window": the steps a window reads from its start row
    takes_step: bool = False  # update also takes the run's update number (the same for every seed)
    headline: str = "loss"  # the metric the progress bar and `final_loss` report
    proximity: bool = False  # the update also returns Feedback (PJAP can drive it)
    probe: Callable[[Any, Any], Metrics] | None = None  # (state, arrays) -> diagnostics at every log point
    snapshot: Callable[[Any], Any] | None = None  # state -> params kept at snapshot points (e.g. pool checkpoints)
    needs_start: bool = False  # init takes a per-seed `start` pytree (e.g. a behaviour model trained before)
    config: Any = None  # the hyperparameters (a dataclass), recorded in the run directory
