"""Pieces every offline learner shares: the dataset on device, batch sampling, and the
chunked `lax.scan` driver that trains several seeds as one `vmap`ped program."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

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


def with_overrides(config, assignments: dict[str, Any]):
    """A copy of the frozen config dataclass `config` with fields replaced, nested configs
    addressed with dots: `with_overrides(SITConfig(), {"beta": 1.0, "dper.alpha": 2.0})`.

    Values are checked against the field's current value: ints become floats where the
    field holds a float, lists become tuples where it holds a tuple; anything else of the
    wrong type, or an unknown field, raises a ValueError naming the field."""
    for name, value in assignments.items():
        config = _override(config, name.split("."), value, name)
    return config


def _override(config, path: list[str], value, full_name: str):
    if not dataclasses.is_dataclass(config):
        raise ValueError(f"{full_name}: {type(config).__name__} has no fields to set")
    names = [f.name for f in dataclasses.fields(config)]
    head = path[0]
    if head not in names:
        raise ValueError(f"{full_name}: {type(config).__name__} has no field {head!r}; expected one of {names}")
    current = getattr(config, head)
    if len(path) > 1:
        return dataclasses.replace(config, **{head: _override(current, path[1:], value, full_name)})
    return dataclasses.replace(config, **{head: _coerce(current, value, full_name)})


def _coerce(current, value, full_name: str):
    if isinstance(current, bool) or isinstance(value, bool):
        if isinstance(current, bool) and isinstance(value, bool):
            return value
    elif isinstance(current, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(current, int) and isinstance(value, int):
        return value
    elif isinstance(current, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    elif current is None or isinstance(value, type(current)):
        return value
    raise ValueError(f"{full_name}: expected a value like {current!r} ({type(current).__name__}), "
                     f"got {value!r} ({type(value).__name__})")


def parse_assignment(text: str) -> tuple[str, Any]:
    """'dper.alpha=2' → ("dper.alpha", 2): the value is read as JSON (numbers, true/false,
    lists), and as a plain string when it is not JSON."""
    import json

    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--set {text!r}: expected FIELD=VALUE, e.g. beta=1.0 or dper.alpha=2")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip(), value
