"""Devices and processes: the mesh that vmapped programs lay their batch axes on.

Every batched program in teamsift (the engine's seeds, dataset generation's and
evaluation's episodes, a data-parallel batch) maps one leading axis over the devices
of a `jax.sharding.Mesh`:

    batch_sharding(n)          n episodes (or seeds) split evenly over every device
    constrain_batch(tree, n)   inside a jit: split the leading axis (a sharding constraint)
    gather_batch(tree, n)      inside a jit: the same leaves whole on every device
    batch_layout(n)            batch_sharding(n), or the batch axis of a mesh set with jax.set_mesh
    batch_size_for(n)          n rounded up to a multiple of the device count (padded batches)
    seed_data_mesh(S, B)       the engine's 2-D mesh: seeds × data-parallel batch shards
    initialize(...)            `jax.distributed.initialize` for runs over several hosts

With one device (or an axis the devices do not divide) everything stays on the default
device, so single-device programs are unchanged. On a CPU-only machine
`XLA_FLAGS=--xla_force_host_platform_device_count=4` (set before JAX is imported) gives
four host devices to try the sharded paths.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

#: The engine's mesh axes: independent seeds, and shards of each seed's batch.
SEED_AXIS, DATA_AXIS = "seed", "data"
#: The axis of environment batches (episodes of a rollout).
BATCH_AXIS = "batch"

_ENV = {"coordinator": "TEAMSIFT_COORDINATOR", "num_processes": "TEAMSIFT_NUM_PROCESSES",
        "process_id": "TEAMSIFT_PROCESS_ID"}


def devices() -> list:
    """Every device of the run (all processes' when `jax.distributed` is initialised)."""
    return list(jax.devices())


def batch_sharding(n: int, device_list: Sequence | None = None) -> NamedSharding | None:
    """A sharding that splits a leading axis of `n` over this process' devices, or None when
    there is one device or `n` is not a multiple of their number (then the default device
    runs it). Environment batches stay within a process: each process of a multi-process
    run evaluates on its own devices."""
    device_list = list(device_list or jax.local_devices())
    if len(device_list) < 2 or n % len(device_list):
        return None
    return NamedSharding(Mesh(np.asarray(device_list), (BATCH_AXIS,)), PartitionSpec(BATCH_AXIS))


def put_batch(tree, n: int):
    """`tree`'s leaves (leading axis n) laid out over the devices (`batch_sharding`)."""
    sharding = batch_sharding(n)
    return tree if sharding is None else jax.device_put(tree, sharding)


def _mesh_axis(mesh, n: int) -> str | None:
    """The axis of a caller's mesh a batch of n goes on: "data" (else "batch") when it has
    several devices and divides n."""
    sizes = dict(mesh.shape)
    for axis in (DATA_AXIS, BATCH_AXIS):
        if sizes.get(axis, 1) > 1 and n % sizes[axis] == 0:
            return axis
    return None


def batch_layout(n: int) -> NamedSharding | None:
    """Outside a jitted program: the sharding of a batch of n. Under a mesh set with
    `jax.set_mesh` (a caller laying out its own programs, as the engine's seed × data mesh
    may be), its "data" or "batch" axis (`_mesh_axis`), or None: a layout over other devices
    than the caller's would clash with it. Without one, `batch_sharding(n)`."""
    if jax.sharding.get_abstract_mesh().empty:
        return batch_sharding(n)
    mesh = jax.sharding.get_mesh()
    axis = _mesh_axis(mesh, n)
    return None if axis is None else NamedSharding(mesh, PartitionSpec(axis))


def _traced_layout(n: int):
    """`batch_layout` inside a jitted program: (split, whole) specs, or None."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        sharding = batch_sharding(n)
        return None if sharding is None else (sharding, NamedSharding(sharding.mesh, PartitionSpec()))
    axis = _mesh_axis(mesh, n)
    return None if axis is None else (PartitionSpec(axis), PartitionSpec())


def constrain_batch(tree, n: int):
    """Inside a jitted program: `tree`'s leaves (leading axis n) split over the devices
    (as `batch_layout`; a `jax.lax.with_sharding_constraint`, a hint to XLA's partitioner);
    `tree` itself with one device or when the devices do not divide n. Under `vmap` the
    mapped axis is left to the partitioner."""
    layout = _traced_layout(n)
    return tree if layout is None else jax.lax.with_sharding_constraint(tree, layout[0])


def gather_batch(tree, n: int):
    """Inside a jitted program: `tree`'s leaves whole on every device (replicated), where
    `constrain_batch(·, n)` splits them; `tree` itself where it does not."""
    layout = _traced_layout(n)
    return tree if layout is None else jax.lax.with_sharding_constraint(tree, layout[1])


def batch_size_for(n: int, device_list: Sequence | None = None) -> int:
    """`n` rounded up to a multiple of the device count (`n` itself with one device): the
    size to run a batch of `n` at, padded, so that `batch_sharding` splits it."""
    count = len(list(device_list or jax.local_devices()))
    return n if count < 2 else -(-n // count) * count


def seed_data_mesh(seeds: int, batch: int | None = None, data_parallel: int | None = None,
                   device_list: Sequence | None = None) -> Mesh:
    """The engine's mesh over the devices: axis "seed" of size gcd(devices, seeds), and axis
    "data" over the devices left, when they divide `batch` (else those devices stay idle).

    `data_parallel` forces the data axis' size (it must divide both the device count and the
    batch)."""
    device_list = list(device_list or devices())
    count = len(device_list)
    if data_parallel is not None:
        if data_parallel < 1 or count % data_parallel:
            raise ValueError(f"data_parallel: expected a divisor of the {count} devices, got {data_parallel}")
        if batch is not None and batch % data_parallel:
            raise ValueError(f"data_parallel: expected a divisor of the batch ({batch}), got {data_parallel}")
        seed_size = math.gcd(count // data_parallel, seeds)
        data_size = data_parallel
    else:
        seed_size = math.gcd(count, seeds)
        data_size = count // seed_size
        if batch is None or batch % data_size:
            data_size = 1
    used = np.asarray(device_list[: seed_size * data_size]).reshape(seed_size, data_size)
    return Mesh(used, (SEED_AXIS, DATA_AXIS))


def mesh_record(mesh: Mesh) -> dict:
    """What a run reports about its layout: device count, axis sizes, processes, platform."""
    return {"devices": int(mesh.devices.size), "mesh": {name: int(size) for name, size in mesh.shape.items()},
            "processes": jax.process_count(), "platform": mesh.devices.flat[0].platform}


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """Join a run over several processes (hosts) through `jax.distributed.initialize`.

    Arguments left None come from TEAMSIFT_COORDINATOR / TEAMSIFT_NUM_PROCESSES /
    TEAMSIFT_PROCESS_ID, and then from what JAX detects itself (SLURM, Open MPI, …). Returns
    False (and does nothing) when no coordinator is given or found: a single-process run.
    On CPU the processes exchange arrays through gloo."""
    coordinator = coordinator or os.environ.get(_ENV["coordinator"])
    if num_processes is None and os.environ.get(_ENV["num_processes"]):
        num_processes = int(os.environ[_ENV["num_processes"]])
    if process_id is None and os.environ.get(_ENV["process_id"]):
        process_id = int(os.environ[_ENV["process_id"]])
    slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1") or 1) if "SLURM_JOB_ID" in os.environ else 1
    if coordinator is None and num_processes is None and slurm_tasks < 2:
        return False
    if coordinator is not None and (num_processes is None or process_id is None):
        raise ValueError("--coordinator: also give --num-processes and --process-id "
                         f"(or {_ENV['num_processes']} and {_ENV['process_id']})")
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id: expected 0 … {num_processes - 1}, got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    return True
