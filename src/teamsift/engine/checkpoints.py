"""Checkpoints of a run (orbax-checkpoint): the training state with its seed axis, the
sampler's state, the logs so far and the learner's snapshots, one directory per update.

Orbax writes a checkpoint into a temporary directory and renames it once every file is
complete, so a process killed while writing leaves the previous checkpoint intact; the
incomplete one is never listed (and orbax removes it on the next save). Saves are
asynchronous: `save` copies the state to host memory and returns, the files are written in
the background while the next chunk trains, and a save waits for the one before it (and
`close` for the last).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpoints:
    """A run's checkpoints. With several processes every process reads them, and only the
    `writer` (the primary process) writes: the state it saves is the whole state, gathered
    from every process, so a checkpoint is written once."""

    def __init__(self, directory: Path, keep: int, writer: bool = True):
        self.directory = Path(directory).absolute()
        extra = {"create": True}
        if jax.process_count() > 1:  # each process on its own: no barriers with the others
            process = jax.process_index()
            extra = {"create": False, "read_only": not writer,
                     "multiprocessing_options": ocp.options.MultiprocessingOptions(
                         primary_host=process, active_processes={process},
                         barrier_sync_key_prefix=f"teamsift-{process}")}
            if writer:
                self.directory.mkdir(parents=True, exist_ok=True)
        with _quiet(not writer):  # a reader's manager warns that it will not write: it is meant not to
            options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True, **extra)
            self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def save(self, update: int, carry: Any, progress: dict, snapshots: Any | None) -> None:
        # own host copies: the next chunk reuses the state's device buffers (donated) while
        # these are written
        carry = jax.tree.map(lambda x: np.array(x, copy=True), _storable(carry))
        items = {"carry": ocp.args.StandardSave(carry), "progress": ocp.args.JsonSave(progress)}
        if snapshots is not None:
            items["snapshots"] = ocp.args.StandardSave(snapshots)
        self.manager.wait_until_finished()  # one write at a time
        self.manager.save(update, args=ocp.args.Composite(**items), force=True)

    def wait(self) -> None:
        """Until the last checkpoint is on disk."""
        self.manager.wait_until_finished()

    def restore(self, update: int, abstract_carry: Any) -> tuple[Any, dict, Any | None]:
        has_snapshots = (self.directory / str(update) / "snapshots").is_dir()
        items = {"carry": ocp.args.StandardRestore(_storable(abstract_carry)), "progress": ocp.args.JsonRestore()}
        if has_snapshots:
            items["snapshots"] = ocp.args.StandardRestore()
        restored = self.manager.restore(update, args=ocp.args.Composite(**items))
        carry = _restored(restored["carry"], abstract_carry)
        snapshots = jax.tree.map(np.asarray, restored["snapshots"]) if has_snapshots else None
        return carry, dict(restored["progress"]), snapshots

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


@contextlib.contextmanager
def _quiet(quiet: bool):
    logger = logging.getLogger("absl")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _storable(tree):
    """Typed PRNG keys as their raw key data (orbax stores plain arrays)."""
    def convert(x):
        if _is_key(x):
            if isinstance(x, jax.ShapeDtypeStruct):
                data = jax.eval_shape(jax.random.key_data, x)
                return jax.ShapeDtypeStruct(data.shape, data.dtype)
            return jax.random.key_data(x)
        return x

    return jax.tree.map(convert, tree)


def _restored(tree, abstract):
    """Device arrays again (saved from host copies, orbax restores numpy arrays), typed keys as keys."""
    return jax.tree.map(lambda x, a: jax.random.wrap_key_data(x) if _is_key(a) else jax.numpy.asarray(x, a.dtype),
                        tree, abstract)
