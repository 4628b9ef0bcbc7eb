"""`fit`: the one training loop every learner runs through.

    seed keys    (k_init[s], k_update[s]) = split(key, (seeds, 2))
    state[s]     = learner.init(k_init[s], arrays[, start[s]])            vmapped over seeds
    for update i = 0 … updates − 1:                                        chunks of lax loops under jit
        key_i       = fold_in(k_update[s], i)
        items       = sampler.draw(key_i, learner.batch_size)              the run's sampler, not the learner
        state[s], metrics[s] = learner.update(state[s], key_i, arrays, items)
    at every log point: the mean of each metric over the interval → metrics.csv, TensorBoard
    at every evaluation point and at the end: each seed's policy in the environment
    at every checkpoint point and at the end: orbax checkpoint of (state, sampler state, logs)

Update i always uses fold_in(k_update[s], i), so the result does not depend on how the
updates are chunked, and a run resumed from a checkpoint ends exactly where the
uninterrupted run ends. The update of a learner compiles once: every chunk runs the same
program (a loop with a dynamic trip count over a fixed-size metrics buffer), whatever the
chunk lengths the log, evaluation and checkpoint intervals make. Every evaluation of seed s
uses the key fold_in(eval_key, s): common random numbers, so an evaluation curve compares
policies on the same episodes' randomness.

Where the data and the seeds live changes none of this (`teamsift.engine.placement`): the
seeds (and, with `data_parallel`, each seed's batch) are laid over a mesh of every device of
every process, and with `data_placement="stream"` the items are drawn on the device ahead of
the updates, their rows are gathered on the host into pages, and the update reads its batch
from its page — the same batch, so the same result.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from rich.progress import TextColumn

from teamsift.data.samplers import Uniform, item_space
from teamsift.devices import DATA_AXIS, SEED_AXIS, seed_data_mesh
from teamsift.engine import placement
from teamsift.engine.learner import Learner
from teamsift.engine.run import (
    EVALUATIONS_FILE, METRICS_FILE, EventWriters, RunConfig, RunDir, json_ready, marl_eval, metrics_csv, versions,
)
from teamsift.fileio import atomic_write_text
from teamsift.progress import progress_bar


# --- the compiled programs -----------------------------------------------------------------------

def draw_items(learner: Learner, sampler, sampler_arrays, sampler_state, key):
    """The items of one update: one batch of `learner.batch_size` (or `learner.draws`
    batches, from split keys) drawn by the sampler with the update's key."""
    if learner.unit is None:
        return None

    def one(k):
        return sampler.draw(sampler_arrays, sampler_state, k, learner.batch_size, learner.unit)

    return one(key) if learner.draws is None else jax.vmap(one)(jax.random.split(key, learner.draws))


def _data_parallel(learner: Learner, items, mesh):
    """Lay a batch's item axis over the mesh's data axis: every device of the axis computes
    its share of the batch, and the gradients (means over the batch) are summed across it."""
    if items is None or mesh is None or mesh.shape[DATA_AXIS] == 1:
        return items
    axis = 0 if learner.draws is None else 1

    def constrain(x):
        spec = [None] * x.ndim
        spec[axis] = DATA_AXIS
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(*spec)))

    return jax.tree.map(constrain, items)


def _step_fn(learner: Learner, sampler, mesh=None):
    """One update of one seed: (carry, key, i, arrays, sampler arrays[, items]) → (carry, metrics).
    Without `items` the update draws its own (the on-device placement)."""

    def step(carry, key, i, arrays, sampler_arrays, items=None):
        state, sampler_state = carry
        if items is None:
            items = draw_items(learner, sampler, sampler_arrays, sampler_state, key)
            items = _data_parallel(learner, items, mesh)
        out = (learner.update(state, key, arrays, items, i) if learner.takes_step
               else learner.update(state, key, arrays, items))
        if learner.proximity:
            state, metrics, feedback = out
            if sampler.adaptive:
                sampler_state, extra = sampler.feedback(sampler_state, feedback.items, feedback.distance, i)
                metrics = {**metrics, **extra}
        else:
            state, metrics = out
        return (state, sampler_state), metrics

    return step


def _on_mesh(program, mesh):
    """`program` traced and run with `mesh` set (`jax.set_mesh`), so that the batched
    environments inside an update (MAPPO's, `teamsift.devices.constrain_batch`) lay
    themselves out on the engine's mesh, not on one of their own."""
    if mesh is None:
        return program

    @functools.wraps(program)
    def run(*args):
        with jax.set_mesh(mesh):
            return program(*args)

    return run


def _vmap_seeds(fn, mesh, in_axes):
    """vmap over seeds; on a mesh the seed axis is the mesh's (sharding constraints inside
    the update then name it)."""
    if mesh is None:
        return jax.vmap(fn, in_axes=in_axes)
    return jax.vmap(fn, in_axes=in_axes, spmd_axis_name=SEED_AXIS)


@functools.lru_cache(maxsize=None)
def _init_program(learner: Learner, sampler, mesh=None):
    def init(seed_key, arrays, sampler_arrays, start):
        state = learner.init(seed_key, arrays, start) if learner.needs_start else learner.init(seed_key, arrays)
        return state, sampler.init(sampler_arrays)

    out = None if mesh is None else NamedSharding(mesh, PartitionSpec(SEED_AXIS))
    return _on_mesh(jax.jit(_vmap_seeds(init, mesh, (0, None, None, 0)), out_shardings=out), mesh)


def _metrics_buffer(capacity, one_update):
    shapes = jax.eval_shape(one_update)
    return jax.tree.map(lambda s: jnp.zeros((capacity,) + s.shape, s.dtype), shapes)


@functools.lru_cache(maxsize=None)
def _chunk_program(learner: Learner, sampler, capacity: int, mesh=None):
    """`count` (≤ capacity, dynamic) updates for every seed, metrics into a [capacity] buffer."""
    step = _step_fn(learner, sampler, mesh)

    def run_chunk(carry, update_keys, start, count, arrays, sampler_arrays):
        def one_seed(seed_carry, seed_key):
            buffer = _metrics_buffer(capacity, lambda: step(seed_carry, seed_key, start, arrays, sampler_arrays)[1])

            def body(j, val):
                c, buf = val
                i = start + j
                c, metrics = step(c, jax.random.fold_in(seed_key, i), i, arrays, sampler_arrays)
                buf = jax.tree.map(lambda b, x: jax.lax.dynamic_update_index_in_dim(b, x, j, 0), buf, metrics)
                return c, buf

            return jax.lax.fori_loop(0, count, body, (seed_carry, buffer))

        return _vmap_seeds(one_seed, mesh, (0, 0))(carry, update_keys)

    return _on_mesh(jax.jit(run_chunk, donate_argnums=(0,), out_shardings=_chunk_shardings(mesh)), mesh)


def _chunk_shardings(mesh):
    if mesh is None:
        return None
    return NamedSharding(mesh, PartitionSpec(SEED_AXIS)), NamedSharding(mesh, PartitionSpec())


@functools.lru_cache(maxsize=None)
def _draw_program(learner: Learner, sampler, capacity: int, mesh=None):
    """The streaming placement's draws: the items of updates start … start + capacity − 1
    for every seed ([S, capacity, ...]), from the same keys and the same sampler code as the
    on-device placement's updates, so both train on the same batches."""

    def draws(update_keys, start, sampler_arrays):
        def one_seed(seed_key):
            def one(j):
                return draw_items(learner, sampler, sampler_arrays, None, jax.random.fold_in(seed_key, start + j))

            return jax.vmap(one)(jnp.arange(capacity, dtype=jnp.int32))

        return jax.vmap(one_seed)(update_keys)

    out = None if mesh is None else NamedSharding(mesh, PartitionSpec())
    return _on_mesh(jax.jit(draws, out_shardings=out), mesh)


@functools.lru_cache(maxsize=None)
def _stream_program(learner: Learner, sampler, capacity: int, mesh=None):
    """`count` updates for every seed on streamed pages ([S, capacity, ...] per seed and
    update, with the items that index into them)."""
    step = _step_fn(learner, sampler, mesh)

    def run_chunk(carry, update_keys, start, count, arrays, sampler_arrays, pages, items):
        def one_seed(seed_carry, seed_key, seed_pages, seed_items):
            def at(j):
                page = jax.tree.map(lambda x: x[j], seed_pages)
                return {**arrays, **page}, _data_parallel(learner, jax.tree.map(lambda x: x[j], seed_items), mesh)

            page0, items0 = at(0)
            buffer = _metrics_buffer(capacity, lambda: step(seed_carry, seed_key, start, page0, sampler_arrays,
                                                            items0)[1])

            def body(j, val):
                c, buf = val
                i = start + j
                page, page_items = at(j)
                c, metrics = step(c, jax.random.fold_in(seed_key, i), i, page, sampler_arrays, page_items)
                buf = jax.tree.map(lambda b, x: jax.lax.dynamic_update_index_in_dim(b, x, j, 0), buf, metrics)
                return c, buf

            return jax.lax.fori_loop(0, count, body, (seed_carry, buffer))

        return _vmap_seeds(one_seed, mesh, (0, 0, 0, 0))(carry, update_keys, pages, items)

    return _on_mesh(jax.jit(run_chunk, donate_argnums=(0,), out_shardings=_chunk_shardings(mesh)), mesh)


@functools.lru_cache(maxsize=None)
def _probe_program(learner: Learner):
    return jax.jit(jax.vmap(learner.probe, in_axes=(0, None)))


@functools.lru_cache(maxsize=None)
def _snapshot_program(learner: Learner):
    return jax.jit(jax.vmap(learner.snapshot))


# --- the result ----------------------------------------------------------------------------------

@dataclasses.dataclass
class FitResult:
    """What `fit` returns. Arrays with a seed axis lead with it ([S, ...])."""

    learner: Learner
    state: Any  # final learner state [S, ...]
    arrays: Any = dataclasses.field(repr=False)  # the device arrays it trained on
    updates: int
    seeds: int
    history: dict[str, np.ndarray] = dataclasses.field(repr=False)  # name -> [S, L, ...]; "update" [L]
    last: dict[str, np.ndarray] = dataclasses.field(repr=False)  # name -> [S, ...] at the final update
    evaluations: list[dict] = dataclasses.field(repr=False)  # one row per evaluation point
    snapshots: Any = dataclasses.field(default=None, repr=False)  # learner.snapshot [S, C, ...]
    snapshot_updates: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    sampler_state: Any = dataclasses.field(default=None, repr=False)
    seconds: float = 0.0  # wall time of this call (compilation included)
    train_seconds: float = 0.0  # of which the updates with their logs, evaluations and checkpoints (no set-up)
    earlier_seconds: float = 0.0  # training seconds of the interrupted processes this call resumed (0: a fresh run)
    run_dir: Path | None = None
    resumed_from: int | None = None  # the update a resumed run continued from
    placement: dict = dataclasses.field(default_factory=dict)  # devices, mesh, processes, data placement

    def seed_state(self, seed: int):
        return jax.tree.map(lambda x: x[seed], self.state)

    def policy(self, seed: int = 0):
        """Seed `seed`'s policy (an object `teamsift.evaluate` runs)."""
        if not 0 <= seed < self.seeds:
            raise IndexError(f"seed {seed}: this run trained seeds 0 … {self.seeds - 1}")
        if self.learner.policy is None:
            raise TypeError(f"{self.learner.name} learns no policy (see its module for what it produces)")
        return self.learner.policy(self.seed_state(seed), self.arrays)

    def policies(self) -> list:
        return [self.policy(s) for s in range(self.seeds)]

    def final(self, name: str | None = None) -> np.ndarray:
        """[S]: the metric (default: the learner's headline) at the final update."""
        return np.asarray(self.last[name or self.learner.headline])

    def final_returns(self) -> list[float] | None:
        """Each seed's mean return at the last evaluation (None if there was none)."""
        if not self.evaluations:
            return None
        return [float(np.mean(scores["return"])) for scores in self.evaluations[-1]["seed_scores"]]


# --- the loop ------------------------------------------------------------------------------------

def _sync(name: str) -> None:
    """A barrier across processes (nothing with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _reads_only(fn, state, arrays) -> bool:
    """Whether fn(state, arrays) runs on these arrays (a probe that reads step arrays does not)."""
    try:
        jax.eval_shape(jax.vmap(fn, in_axes=(0, None)), state, arrays)
    except KeyError:
        return False
    return True


def _boundaries(run: RunConfig) -> list[int]:
    return [x for x in (run.log_every, run.eval_every, run.checkpoint_every, run.snapshot_every) if x > 0]


def _next_stop(done: int, run: RunConfig) -> int:
    stops = [((done // every) + 1) * every for every in _boundaries(run)]
    return min([run.updates] + stops)


def _nanmean_rows(chunks: list[tuple[int, dict]]) -> dict[str, np.ndarray]:
    """Mean over updates (axis 1) of concatenated per-update metrics, NaN-aware."""
    out = {}
    for name in chunks[0][1]:
        values = np.concatenate([c[1][name] for c in chunks], axis=1).astype(np.float64)
        with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
            sup.filter(RuntimeWarning)
            out[name] = np.nanmean(values, axis=1)
    return out


def sampler_record(sampler) -> dict:
    """A sampler as the run record describes it: its name and its configuration (the fields
    that make two samplers the same; not arrays such as DPER's priorities)."""
    fields = {f.name: getattr(sampler, f.name) for f in dataclasses.fields(sampler) if f.compare}
    return {"name": sampler.name, **fields}


def step_weights(dataset, weights) -> np.ndarray:
    """Per-(episode, slot) weights [E, A] → per-decision weights [N, A] (float32)."""
    weights = np.asarray(weights, np.float32)
    expected = (dataset.num_episodes, dataset.num_agents)
    if weights.shape != expected:
        raise ValueError(f"weights: expected one per (episode, slot), shape [E={expected[0]}, A={expected[1]}], "
                         f"got {list(weights.shape)}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("weights: expected finite values >= 0")
    if not np.any(weights > 0):
        raise ValueError("weights: every weight is 0, so nothing would be learned")
    return np.repeat(weights, dataset.lengths, axis=0)


def fit(learner: Learner, dataset, key: jax.Array, run: RunConfig, *, sampler=None, weights=None,
        inputs: dict | None = None, start=None, env=None, eval_key: jax.Array | None = None,
        record: dict | None = None) -> FitResult:
    """Train `learner` on `dataset` for `run.updates` updates with `run.seeds` seeds.

    Args:
        sampler: which items batches are drawn from (`teamsift.data.samplers`; default Uniform).
        weights: [E, A] per-(episode, slot) weights of every agent decision in the losses
            (a valuation's selection, e.g. EV2BC's); multiplied into any weight the learner sets.
        inputs: host arrays from earlier stages, for `learner.prepare` (e.g. SIT's r̂, û).
        start: a per-seed pytree (leading seed axis) for `learner.init` (`needs_start`).
        env: evaluate every seed's policy here (with `run.eval_episodes`).
        eval_key: the evaluation key (default: derived from `key`).
        record: what the caller adds to the run record (hyperparameters, stage, command).

    Where the data lives (`run.data_placement`) and how the seeds and batches are laid over
    the devices (`run.data_parallel`) change no result: see `teamsift.engine.placement`.
    """
    began = time.perf_counter()
    sampler = Uniform() if sampler is None else sampler
    if sampler.adaptive and not learner.proximity:
        raise ValueError(f"sampler {sampler.name!r} needs a learner that reports joint-action proximity; "
                         f"{learner.name} does not")
    if learner.needs_start != (start is not None):
        raise ValueError(f"{learner.name}: " + ("init needs `start` (per-seed parameters)" if learner.needs_start
                                                else "takes no `start`"))
    if run.eval_episodes and env is None:
        raise ValueError("RunConfig.eval_episodes: evaluation needs an environment (env=...)")
    if run.eval_episodes and learner.policy is None:
        raise ValueError(f"RunConfig.eval_episodes: {learner.name} learns no policy to evaluate")
    if learner.unit is not None and learner.batch_size < 1:
        raise ValueError(f"{learner.name}: a learner with unit {learner.unit!r} needs batch_size >= 1")
    if run.data_placement == "stream":
        placement.check_stream(learner, sampler)
    mesh = None
    if len(jax.devices()) > 1:
        data_parallel = run.data_parallel
        if learner.unit is None and data_parallel is None:  # an online learner: the devices left over
            count = len(jax.devices())                          # take its environments (its own batch)
            data_parallel = count // math.gcd(count, run.seeds)
        mesh = seed_data_mesh(run.seeds, learner.batch_size or None, data_parallel)
        mesh = None if mesh.devices.size == 1 and jax.process_count() == 1 else mesh
    weight = None if weights is None else step_weights(dataset, weights)
    data = placement.prepare(learner, dataset, inputs or {}, weight,
                             "device" if sampler.adaptive else run.data_placement, run.device_memory_fraction, mesh)
    arrays = data.arrays
    sampler_arrays = None
    if learner.unit is not None:
        window_start = np.asarray(placement.to_host(data.pager.arrays["window_start"] if data.pager
                                                    else arrays["window_start"])) if learner.unit == "window" else None
        sampler_arrays = placement.put(sampler.arrays(item_space(dataset, learner.unit, window_start), dataset),
                                       placement.replicated(mesh))
    seed_keys = placement.put(jax.random.split(key, (run.seeds, 2)), placement.seed_sharded(mesh))
    eval_key = jax.random.fold_in(key, 0x5EED) if eval_key is None else eval_key
    start = jnp.zeros((run.seeds,)) if start is None else start
    carry = _init_program(learner, sampler, mesh)(seed_keys[:, 0], arrays, sampler_arrays,
                                                  placement.put(start, placement.seed_sharded(mesh)))
    # Online and target networks often start equal: give every leaf its own buffer (the chunk
    # program donates the carry, and one buffer cannot be donated twice).
    carry = jax.tree.map(jnp.copy, carry)

    loop = _Loop(learner, sampler, run, dataset, env, eval_key, arrays, sampler_arrays, carry, record, data, mesh)
    done = loop.open()
    capacity = max(1, min([run.updates] + _boundaries(run)))
    stream = None
    if data.placement == "stream":
        items = placement.items_per_update(learner, dataset.num_agents)
        block = placement.block_length(data.pager, run.seeds, items, capacity)
        stream = placement.Stream(data, _draw_program(learner, sampler, block, mesh),
                                  _stream_program(learner, sampler, block, mesh), run.seeds, items, capacity, mesh)
    else:
        program = _chunk_program(learner, sampler, capacity, mesh)
    headline = learner.headline
    try:
        with progress_bar(run.progress and jax.process_index() == 0,
                          TextColumn(f"{headline} {{task.fields[{headline}]}}")) as bar:
            task = bar.add_task(run.label or learner.name, total=run.updates, completed=done, **{headline: "…"})
            loop_started = time.perf_counter()
            while done < run.updates:
                stop = _next_stop(done, run)
                if stream is not None:
                    loop.carry, metrics = stream.run(loop.carry, seed_keys[:, 1], done, stop, sampler_arrays)
                else:
                    loop.carry, metrics = program(loop.carry, seed_keys[:, 1], jnp.int32(done), jnp.int32(stop - done),
                                                  arrays, sampler_arrays)
                    metrics = jax.tree.map(lambda x: placement.to_host(x)[:, : stop - done], metrics)
                done = stop
                loop.after_chunk(done, metrics)
                value = loop.last.get(headline)
                bar.update(task, completed=done,
                           **{headline: "…" if value is None else f"{float(np.nanmean(value)):.4g}"})
            if loop.manager is not None:
                loop.manager.wait()  # the last checkpoint's files
            train_seconds = time.perf_counter() - loop_started
    finally:
        if stream is not None:
            stream.close()
    return loop.finish(time.perf_counter() - began, train_seconds)


class _Loop:
    """The host side of `fit`: logs, evaluations, snapshots, checkpoints and the run record."""

    def __init__(self, learner, sampler, run, dataset, env, eval_key, arrays, sampler_arrays, carry, record,
                 data=None, mesh=None):
        self.learner, self.sampler, self.run = learner, sampler, run
        self.data, self.mesh = data, mesh
        self.primary = jax.process_index() == 0  # the process that writes the run directory
        self.dataset, self.env, self.eval_key = dataset, env, eval_key
        self.arrays, self.sampler_arrays, self.carry = arrays, sampler_arrays, carry
        self.record = record or {}
        self.log_updates: list[int] = []
        self.log_elapsed: list[float] = []
        self.log_rows: list[dict] = []
        self.pending: list[tuple[int, dict]] = []  # per-update metrics since the last log point
        self.last: dict[str, np.ndarray] = {}
        self.evaluations: list[dict] = []
        self.snapshots: list = []
        self.snapshot_updates: list[int] = []
        self.elapsed_before = 0.0  # training seconds of earlier (interrupted) processes
        self.started = time.perf_counter()
        self.resumed_from = None
        self.run_dir = RunDir(run.run_dir) if run.run_dir else None
        self.manager = None
        self.events = None
        self.probe = learner.probe
        if self.probe is not None and data is not None and data.placement == "stream" and not _reads_only(
                self.probe, carry[0], arrays):
            self.probe = None  # it reads step arrays, which a streamed run keeps on the host

    # -- set-up ---------------------------------------------------------------------------------
    def config(self) -> dict:
        import sys

        from teamsift.machine import machine

        hyperparameters = self.record.get("hyperparameters", self.learner.config)
        config = {"learner": self.learner.name, "hyperparameters": json_ready(hyperparameters),
                  "schedule": self.run.schedule(), "sampler": json_ready(self.record.get("sampler", sampler_record(self.sampler))),
                  "weights": json_ready(self.record.get("weights")), "stage": self.record.get("stage"),
                  "command": self.record.get("command", " ".join(sys.argv)), "versions": versions(),
                  "machine": machine(), **{k: json_ready(v) for k, v in self.record.items() if k not in
                                           ("hyperparameters", "sampler", "weights", "stage", "command")}}
        if self.dataset is not None:
            from teamsift.data import dataset_fingerprint

            config["dataset"] = str(self.dataset.path)
            config["dataset_fingerprint"] = dataset_fingerprint(self.dataset)
        config["placement"] = self.placement_record()
        return config

    def placement_record(self) -> dict:
        """Where the run's data and seeds lived (not compared on resume: no result depends on it)."""
        from teamsift.devices import mesh_record

        record = {"devices": 1, "mesh": {}, "processes": jax.process_count(),
                  "platform": jax.devices()[0].platform} if self.mesh is None else mesh_record(self.mesh)
        if self.data is not None:
            record.update(data_placement=self.data.placement, data_bytes=self.data.bytes)
            if not self.probe and self.learner.probe is not None:
                record["probe"] = "off: it reads step arrays, which stay on the host when streaming"
        return record

    def open(self) -> int:
        """Open the run directory; restore the last checkpoint when resuming. Returns the
        number of updates already done."""
        if self.run_dir is None:
            if self.learner.snapshot is not None and self.run.snapshot_every:
                self.take_snapshot(0)
            return 0
        from teamsift.engine.checkpoints import Checkpoints

        if self.primary:
            resume = self.run_dir.open(self.config(), resume=self.run.resume, overwrite=self.run.overwrite)
        _sync("teamsift-run-dir-open")
        if not self.primary:  # the primary process has checked (and written) the directory
            resume = self.run.resume and self.run_dir.read_config() is not None
        self.manager = Checkpoints(self.run_dir.checkpoints, self.run.keep_checkpoints, writer=self.primary)
        done = 0
        if resume and self.manager.latest() is not None:
            done = self.restore(self.manager.latest())
        elif self.learner.snapshot is not None and self.run.snapshot_every:
            self.take_snapshot(0)
        if self.primary:
            self.events = EventWriters(self.run_dir.path, self.run.seeds, purge_step=done if resume else None)
            # metrics.csv holds exactly the logged rows up to here (a resumed run drops what the
            # interrupted one wrote after its last checkpoint); rows are appended as they come.
            text = metrics_csv(self.log_updates, self.log_elapsed, self.log_rows, self.run.seeds) if self.log_rows else ""
            atomic_write_text(self.run_dir.path / METRICS_FILE, text)
        return done

    # -- per chunk ------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def after_chunk(self, done: int, metrics: dict) -> None:
        run = self.run
        self.pending.append((done, metrics))
        self.last = {name: value[:, -1] for name, value in metrics.items()}
        if done % run.log_every == 0 or done == run.updates:
            self.log(done)
        if run.snapshot_every and self.learner.snapshot is not None and done % run.snapshot_every == 0:
            self.take_snapshot(done)
        if self.env is not None and run.eval_episodes and (
                (run.eval_every and done % run.eval_every == 0) or done == run.updates):
            self.evaluate(done)
        if self.manager is not None and ((run.checkpoint_every and done % run.checkpoint_every == 0)
                                         or done == run.updates):
            self.save(done)

    def log(self, done: int) -> None:
        row = _nanmean_rows(self.pending)
        if self.probe is not None:
            probe = _probe_program(self.learner)(self.carry[0], self.arrays)
            row.update({name: placement.to_host(value) for name, value in probe.items()})
        self.pending = []
        self.log_updates.append(done)
        self.log_elapsed.append(self.elapsed())
        self.log_rows.append(row)
        if self.run_dir is not None and self.primary:
            text = metrics_csv([done], [self.log_elapsed[-1]], [row], self.run.seeds)
            path = self.run_dir.path / METRICS_FILE
            with open(path, "a") as handle:
                handle.write(text if path.stat().st_size == 0 else text.split("\n", 1)[1])
            self.events.add(done, row)

    def take_snapshot(self, done: int) -> None:
        params = _snapshot_program(self.learner)(self.carry[0])
        self.snapshots.append(placement.to_host(params))
        self.snapshot_updates.append(done)

    def seed_policy(self, state, seed: int):
        return self.learner.policy(jax.tree.map(lambda x: x[seed], state), self.arrays)

    def evaluate(self, done: int) -> None:
        from teamsift.evaluate import evaluate

        if self.evaluations and self.evaluations[-1]["update"] == done:
            return
        seed_scores = []
        state = self.carry[0] if jax.process_count() == 1 else placement.to_host(self.carry[0])
        for seed in range(self.run.seeds):
            result = evaluate(self.env, self.seed_policy(state, seed), jax.random.fold_in(self.eval_key, seed),
                              self.run.eval_episodes)
            seed_scores.append({name: np.asarray(v, np.float64).tolist() for name, v in result.per_episode.items()})
        self.evaluations.append({"update": done, "elapsed": self.elapsed(), "seed_scores": seed_scores})
        if self.events is not None:
            self.events.add_evaluation(done, [float(np.mean(s["return"])) for s in seed_scores])
        if self.run_dir is not None and self.primary:
            self.write_evaluations()

    def write_evaluations(self) -> None:
        from teamsift.envs.registry import entry

        spec = self.env.spec
        try:
            family = entry(spec.env_id).family
        except KeyError:
            family = spec.env_id
        final = self.evaluations[-1] if self.evaluations and self.evaluations[-1]["update"] == self.run.updates else None
        self.run_dir.write_json(EVALUATIONS_FILE, marl_eval(family, spec.env_id, self.learner.name,
                                                            self.evaluations, final))

    # -- checkpoints ----------------------------------------------------------------------------
    def progress_record(self, done: int) -> dict:
        return json_ready({
            "update": done, "elapsed": self.elapsed(),
            "log": {"updates": self.log_updates, "elapsed": self.log_elapsed,
                    "rows": [{k: v.tolist() for k, v in row.items()} for row in self.log_rows]},
            "pending": [[u, {k: v.tolist() for k, v in m.items()}] for u, m in self.pending],
            "last": {k: v.tolist() for k, v in self.last.items()},
            "evaluations": self.evaluations, "snapshot_updates": self.snapshot_updates,
        })

    def save(self, done: int) -> None:
        snapshots = None
        if self.snapshots:
            snapshots = jax.tree.map(lambda *xs: np.stack(xs, axis=1), *self.snapshots)
        carry = self.carry if jax.process_count() == 1 else placement.to_host(self.carry)  # every process
        if self.primary:
            self.manager.save(done, carry, self.progress_record(done), snapshots)

    def restore(self, step: int) -> int:
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), self.carry)
        carry, progress, snapshots = self.manager.restore(step, abstract)
        self.carry = placement.put(carry, placement.seed_sharded(self.mesh))
        log = progress["log"]
        self.log_updates, self.log_elapsed = list(log["updates"]), list(log["elapsed"])
        self.log_rows = [{k: np.asarray(v, np.float64) for k, v in row.items()} for row in log["rows"]]
        self.pending = [(u, {k: np.asarray(v, np.float64) for k, v in m.items()}) for u, m in progress["pending"]]
        self.last = {k: np.asarray(v) for k, v in progress["last"].items()}
        self.evaluations = progress["evaluations"]
        self.snapshot_updates = list(progress["snapshot_updates"])
        if snapshots is not None:
            count = len(self.snapshot_updates)
            self.snapshots = [jax.tree.map(lambda x: np.asarray(x)[:, c], snapshots) for c in range(count)]
        self.elapsed_before = float(progress["elapsed"])
        self.started = time.perf_counter()
        self.resumed_from = int(progress["update"])
        return int(progress["update"])

    # -- the end --------------------------------------------------------------------------------
    def finish(self, seconds: float, train_seconds: float) -> FitResult:
        run = self.run
        if self.manager is not None and run.updates == 0 and self.manager.latest() is None:
            self.save(0)
        if self.env is not None and run.eval_episodes and not (self.evaluations
                                                              and self.evaluations[-1]["update"] == run.updates):
            self.evaluate(run.updates)
        history = {"update": np.asarray(self.log_updates, np.int64), "elapsed": np.asarray(self.log_elapsed)}
        if self.log_rows:
            for name in self.log_rows[0]:
                history[name] = np.stack([row[name] for row in self.log_rows], axis=1)
        snapshots = None
        if self.snapshots:
            snapshots = jax.tree.map(lambda *xs: np.stack(xs, axis=1), *self.snapshots)
        state = self.carry[0] if jax.process_count() == 1 else placement.to_host(self.carry[0])
        result = FitResult(learner=self.learner, state=state, arrays=self.arrays, updates=run.updates,
                           seeds=run.seeds, history=history, last=self.last, evaluations=self.evaluations,
                           snapshots=snapshots, snapshot_updates=np.asarray(self.snapshot_updates, np.int64),
                           sampler_state=self.carry[1], seconds=seconds, train_seconds=train_seconds,
                           earlier_seconds=self.elapsed_before,
                           run_dir=None if self.run_dir is None else self.run_dir.path,
                           resumed_from=self.resumed_from, placement=self.placement_record())
        if self.run_dir is not None:
            if self.learner.policy is not None and self.primary:
                self.save_policies(result)
            if self.events is not None:
                self.events.close()
            self.manager.close()  # waits for the last checkpoint's files
            _sync("teamsift-run-finished")
        return result

    def save_policies(self, result: FitResult) -> None:
        from teamsift.nets import save_policy

        spec = None if self.dataset is None else self.dataset.spec
        if spec is None and self.env is not None:
            spec = self.env.spec
        extra = {"learner": self.learner.name,
                 "hyperparameters": json_ready(self.record.get("hyperparameters", self.learner.config)),
                 "stage": self.record.get("stage")}
        if self.dataset is not None:
            extra.update(dataset=str(self.dataset.path), env_kwargs=self.dataset.meta.get("env_kwargs", {}))
        elif self.env is not None:
            extra.update(env_kwargs=dict(getattr(self.env, "kwargs", {}) or {}))
        for seed in range(result.seeds):
            save_policy(result.policy(seed), self.run_dir.policy_path(seed), spec=spec, extra={**extra, "seed": seed})
