"""Pieces every offline learner shares: the dataset on device, batch sampling, and the
chunked `lax.scan` driver that trains several seeds as one `vmap`ped program."""

from __future__ import annotations

import functools
import jax
import jax.numpy as jnp
import numpy as np
from rich.progress import TextColumn

from teamsift.data import to_device
from teamsift.progress import progress_bar


def device_data(dataset, weights: np.ndarray | None = None) -> dict:
    """Move obs, actions, avail (discrete) and per-decision weights [N, A] to the device."""
    spec = dataset.spec
    if weights is None:
        weights = np.ones((dataset.num_steps, spec.num_agents), np.float32)
    weights = np.asarray(weights, np.float32)
    if weights.shape != (dataset.num_steps, spec.num_agents):
        raise ValueError(
            f"weights: expected shape [N={dataset.num_steps}, A={spec.num_agents}], found {list(weights.shape)}"
        )
    fields = ("obs", "actions", "avail") if spec.discrete else ("obs", "actions")
    arrays = to_device(dataset, fields)
    arrays["weight"] = jnp.asarray(weights)
    return arrays


@functools.partial(jax.jit, static_argnames=("update", "num_updates"), donate_argnums=(1,))
def _run_chunk(update, carry, seed_keys, start, data, num_updates: int):
    """`num_updates` scanned updates for every seed (vmapped over the leading seed axis)."""

    def one_seed(seed_carry, seed_key):
        keys = jax.vmap(lambda i: jax.random.fold_in(seed_key, i))(start + jnp.arange(num_updates))
        return jax.lax.scan(lambda c, k: update(c, k, data), seed_carry, keys)

    return jax.vmap(one_seed)(carry, seed_keys)


def run_updates(update, carry, seed_keys, num_updates: int, log_every: int, data, *, progress: bool, label: str):
    """Run `num_updates` updates in jitted chunks of `log_every`, with a progress bar.

    Returns (carry, losses[seeds, num_updates]). The same seed keys give the same result
    whatever the chunk size, because update i always uses fold_in(seed_key, i).
    """
    chunk = max(1, min(log_every, num_updates))
    losses = []
    with progress_bar(progress, TextColumn("loss {task.fields[loss]}")) as bar:
        task = bar.add_task(label, total=num_updates, loss="…")
        done = 0
        while done < num_updates:
            size = min(chunk, num_updates - done)
            carry, chunk_losses = _run_chunk(update, carry, seed_keys, jnp.int32(done), data, size)
            losses.append(np.asarray(chunk_losses))
            done += size
            bar.update(task, completed=done, loss=f"{float(losses[-1][:, -1].mean()):.4f}")
    return carry, np.concatenate(losses, axis=1)


def policy_for_seed(policy, seed: int):
    """Pick one seed's parameters out of a policy trained with num_seeds > 1."""
    return policy.replace(params=jax.tree.map(lambda x: x[seed], policy.params))
