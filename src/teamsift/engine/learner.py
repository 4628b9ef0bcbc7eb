"""What an algorithm gives the engine: pure functions of a typed state.

    state            = learner.init(seed_key, arrays[, start])     one seed (the engine vmaps seeds)
    state, metrics   = learner.update(state, key, arrays, draw)    one update (jit, scan, vmap)
    policy           = learner.policy(state, arrays)               one seed's policy for `evaluate`

`arrays` is the device pytree `learner.prepare(dataset, inputs)` built once per run;
`draw(key, batch_size)` returns the items of `learner.unit` that the run's sampler picked
(`teamsift.data.samplers`), so the learner never chooses how data is sampled. `metrics`
maps names to scalars (or small vectors): the engine logs their mean over each log
interval. A learner with `proximity` returns a third value, `Feedback(items, distance)`,
the joint-action distance of the items it drew, which an adaptive sampler (PJAP) learns
from. The engine does the rest: keys, seeds, chunks, progress, logs, evaluations,
checkpoints and resumption (`teamsift.engine.fit`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax

Array = jax.Array
Metrics = dict  # name -> scalar (or small vector) jax array


class Feedback(NamedTuple):
    """What a learner with `proximity` reports about the items it drew (PJAP, eq. 1)."""

    items: Array  # [B] the item indices `draw` returned
    distance: Array  # [B] d_τ: mean L1 distance of the target policy's joint action to the data's


@dataclasses.dataclass(frozen=True, eq=False)
class Learner:
    """An algorithm as pure functions (compared by identity: build it once per config, as the
    algorithm modules' cached `learner(...)` factories do, so the engine compiles it once)."""

    name: str
    init: Callable[..., Any]  # (seed key, arrays[, start]) -> state
    update: Callable[..., tuple]  # (state, key, arrays, draw) -> (state, metrics[, Feedback])
    policy: Callable[[Any, Any], Any] | None  # (one seed's state, arrays) -> a policy; None: not a policy learner
    prepare: Callable[..., dict] | None = None  # (dataset, inputs) -> device arrays; None: no dataset
    unit: str | None = None  # what `draw` returns ("step", "episode", "window", "trajectory"); None: no draws
    headline: str = "loss"  # the metric the progress bar and `final_loss` report
    proximity: bool = False  # the update also returns Feedback (PJAP can drive it)
    probe: Callable[[Any, Any], Metrics] | None = None  # (state, arrays) -> diagnostics at every log point
    snapshot: Callable[[Any], Any] | None = None  # state -> params kept at snapshot points (e.g. pool checkpoints)
    needs_start: bool = False  # init takes a per-seed `start` pytree (e.g. a behaviour model trained before)
    config: Any = None  # the hyperparameters (a dataclass), recorded in the run directory
