"""Where a run's data and seeds live: on the device, or streamed from the host; over a mesh.

    device   the learner's arrays are copied to every device once (the default)
    stream   the arrays stay in the dataset's memory-maps; for every update the engine draws
             the items on the device, a background thread gathers their rows into a page
             (`teamsift.data.pages`), and pages go to the devices one block of updates
             ahead of the training, so the device does not wait while the disk keeps up
    auto     device when the arrays take at most `RunConfig.device_memory_fraction` of the
             device's memory (host memory on a CPU), stream otherwise

Both placements draw with the same keys and the same sampler code, so a run gives the same
batches, and the same result, in either. The seeds (and, with `data_parallel`, each seed's
batch) are laid over a mesh of every device (`teamsift.devices.seed_data_mesh`); with
several processes every array is a global array built from each process' own share.
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from teamsift.data.pages import Pager
from teamsift.data.samplers import on_host
from teamsift.devices import SEED_AXIS

#: Host memory a block of streamed pages may take (all seeds), which sets the block length.
STREAM_BLOCK_BYTES = 4 * 2**20


# --- global arrays from each process' data -----------------------------------------------------

def put(tree, sharding):
    """`tree` (host or device arrays, the same on every process) as arrays laid out by
    `sharding`; with several processes each process supplies only its addressable shards."""
    if sharding is None:
        return jax.device_put(tree)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x):
        if _is_key(x):
            return jax.random.wrap_key_data(one(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        x = np.asarray(x) if not isinstance(x, jax.Array) or x.is_fully_addressable else x
        if isinstance(x, jax.Array):
            return x
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(one, tree)


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_host(tree):
    """Numpy copies of (possibly sharded, possibly other processes') arrays, on every process
    (typed PRNG keys stay keys, on this process' device)."""
    def one(x):
        if _is_key(x):
            return jax.random.wrap_key_data(one(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)


def replicated(mesh):
    return None if mesh is None else NamedSharding(mesh, PartitionSpec())


def seed_sharded(mesh):
    return None if mesh is None else NamedSharding(mesh, PartitionSpec(SEED_AXIS))


# --- the data ------------------------------------------------------------------------------------

def device_memory_bytes() -> int:
    """What one device can hold: its memory limit, or the host's memory on a CPU."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def nbytes(tree) -> int:
    return int(sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(tree)))


class Data(NamedTuple):
    """A run's data, placed."""

    placement: str  # "device" | "stream"
    arrays: dict  # what the programs read: every array (device) or the global ones (stream)
    pager: Pager | None  # stream: builds pages from the host arrays
    bytes: int  # of the learner's arrays (host)


def prepare(learner, dataset, inputs: dict, weight: np.ndarray | None, placement: str, fraction: float,
            mesh) -> Data:
    """The learner's arrays (prepared on the host, from the memory-maps), placed."""
    if learner.prepare is None:
        return Data("device", {}, None, 0)
    with on_host():
        host = dict(learner.prepare(dataset, inputs))
    if weight is not None:
        host["weight"] = weight if "weight" not in host else np.asarray(host["weight"]) * weight
    size = nbytes(host)
    if placement == "auto":
        placement = "device" if size <= fraction * device_memory_bytes() else "stream"
    if placement == "device" or learner.unit is None:
        if "episode_start" in host and "episode_index" not in host:  # the row → episode map gathers read
            host["episode_index"] = dataset.episode_index.astype(np.int32)
        return Data("device", put(host, replicated(mesh)), None, size)
    pager = Pager({k: _host(v) for k, v in host.items()}, dataset.starts, dataset.lengths, learner.unit,
                  learner.span)
    arrays = put({k: host[k] for k in pager.layout.globals}, replicated(mesh))
    return Data("stream", arrays, pager, size)


def _host(x):
    if isinstance(x, jax.Array):
        return to_host(x)
    return x


def check_stream(learner, sampler) -> None:
    if sampler.adaptive:
        raise ValueError(f"--data-placement stream: sampler {sampler.name!r} changes its priorities at every "
                         f"update on the device, so batches cannot be drawn ahead; use --data-placement device")
    if learner.unit is None:
        raise ValueError(f"--data-placement stream: {learner.name} reads no dataset")


# --- streaming -----------------------------------------------------------------------------------

class Stream:
    """Runs updates done … stop on streamed pages, one block of updates ahead.

    The main thread launches block k + 1's draws on the device before block k trains (so
    every process launches its programs in the same order), a host thread reads the items
    back and gathers their pages while block k trains, and the pages go to the devices
    seed-sharded. Each process gathers the pages of its own seeds only."""

    def __init__(self, data: Data, draw, train, seeds: int, items_per_update: int, capacity: int, mesh):
        self.pager, self.arrays = data.pager, data.arrays
        self.draw, self.train, self.seeds, self.mesh = draw, train, seeds, mesh
        self.block = block_length(data.pager, seeds, items_per_update, capacity)
        self.sharding = seed_sharded(mesh)
        self.local = local_seeds(self.sharding, seeds)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="teamsift-pages")

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def _pages(self, drawn):
        items = jax.tree.map(lambda x: to_host(x)[self.local], drawn)  # [this process' seeds, block, ...]
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), items)
        page, local = self.pager.page(flat)  # gives large maps' pages back as it reads
        lead = (len(self.local), self.block)
        unflat = lambda x: x.reshape(lead + x.shape[1:])  # noqa: E731
        return jax.tree.map(unflat, page), jax.tree.map(unflat, local)

    def _put(self, tree):
        if jax.process_count() == 1:
            return jax.device_put(tree, self.sharding)
        position = {seed: n for n, seed in enumerate(self.local)}

        def one(x):
            def shard(index):
                seeds = range(self.seeds)[index[0]]
                return x[[position[s] for s in seeds]][(slice(None),) + tuple(index[1:])]

            return jax.make_array_from_callback((self.seeds,) + x.shape[1:], self.sharding, shard)

        return jax.tree.map(one, tree)

    def run(self, carry, update_keys, done: int, stop: int, sampler_arrays):
        """(carry, metrics [S, stop − done, ...] as host arrays)."""
        starts = list(range(done, stop, self.block))
        draw = lambda start: self.draw(update_keys, np.int32(start), sampler_arrays)  # noqa: E731
        pending = self.pool.submit(self._pages, draw(starts[0]))
        outputs = []
        for n, start in enumerate(starts):
            page, local = pending.result()
            if n + 1 < len(starts):
                pending = self.pool.submit(self._pages, draw(starts[n + 1]))
            count = min(self.block, stop - start)
            carry, metrics = self.train(carry, update_keys, np.int32(start), np.int32(count), self.arrays,
                                        sampler_arrays, self._put(page), self._put(local))
            outputs.append((count, metrics))
        host = [jax.tree.map(lambda x, c=count: to_host(x)[:, :c], metrics) for count, metrics in outputs]
        return carry, jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *host)


def local_seeds(sharding, seeds: int) -> list[int]:
    """The seeds whose shards live on this process' devices (all of them with one process)."""
    if sharding is None or jax.process_count() == 1:
        return list(range(seeds))
    found = set()
    for index in sharding.addressable_devices_indices_map((seeds,)).values():
        found.update(range(seeds)[index[0]])
    return sorted(found)


def block_length(pager: Pager, seeds: int, items_per_update: int, capacity: int) -> int:
    """Updates per streamed block: as many as fit in `STREAM_BLOCK_BYTES` of pages (≥ 1,
    ≤ the engine's chunk capacity)."""
    per_update = max(1, seeds * pager.page_bytes(items_per_update))
    return int(max(1, min(capacity, STREAM_BLOCK_BYTES // per_update)))


def items_per_update(learner, num_agents: int) -> int:
    per_draw = learner.batch_size * (num_agents if learner.unit == "trajectory" else 1)
    return per_draw * (learner.draws or 1)


def memory_record(data: Data) -> dict[str, Any]:
    return {"data_placement": data.placement, "data_bytes": data.bytes}
