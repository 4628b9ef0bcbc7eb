"""Learner batches: uniform minibatches of transitions or of whole (padded) episodes, as
pure functions that run inside `jit` on arrays already on the device."""

from __future__ import annotations

import jax
import numpy as np


def sample_rows(key: jax.Array, arrays: dict, batch_size: int) -> dict:
    """Uniform rows (with replacement) of every array in `arrays` (same leading length)."""
    length = next(iter(arrays.values())).shape[0]
    index = jax.random.randint(key, (batch_size,), 0, length)
    return {name: array[index] for name, array in arrays.items()}


def episode_padded(dataset, fields: dict) -> dict:
    """Reshape step arrays [N, …] into episodes [E, T_max, …], zero-padded.

    Adds `mask` [E, T_max] (1 on real steps). A field named `weight` is zeroed on padding,
    so losses weighted by it ignore the padded steps.
    """
    starts = np.asarray(dataset.episodes["start"], np.int64)
    lengths = np.asarray(dataset.episodes["length"], np.int64)
    t_max = int(lengths.max())
    offsets = np.arange(t_max)
    mask = offsets[None, :] < lengths[:, None]
    rows = np.where(mask, starts[:, None] + offsets[None, :], 0)
    out = {}
    for name, array in fields.items():
        padded = np.asarray(array)[rows]
        padded[~mask] = 0
        out[name] = padded
    out["mask"] = mask.astype(np.float32)
    return out
