"""Samplers that run inside `jax.jit`.

`to_device(dataset, fields)` copies the needed arrays to the accelerator once, as a
flat dict of jax arrays (a pytree) that also holds the episode bookkeeping:

    episode_index  int32 [N]   episode of every step row
    episode_start  int32 [E]   first row of every episode
    episode_length int32 [E]

`sample_transitions` and `sample_sequences` are pure functions of (key, arrays) with
static sizes, so they can be called inside a jitted/scanned training step; the same
key always gives the same batch. next_obs/next_state/next_avail come from the same
index arithmetic as the numpy views (`teamsift.data.views.gather_steps`): row i+1
inside an episode, final_*[episode] at its last step.
"""

from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from teamsift.data.views import gather_steps

#: Fields `to_device` moves when none are named: everything transitions need.
DEFAULT_FIELDS = ("obs", "state", "avail", "actions", "reward", "terminated", "truncated",
                  "final_obs", "final_state", "final_avail")
INDEX_FIELDS = ("episode_index", "episode_start", "episode_length")


def to_device(dataset, fields: Iterable[str] | None = None, device=None) -> dict[str, jax.Array]:
    """Move step arrays (and the episode index arrays) to a JAX device.

    Args:
        dataset: a loaded `Dataset`.
        fields: step/final field names; None = every field transitions need. Naming
            "obs" (or "state", "avail") without its final_* counterpart is allowed, but
            then the samplers return no next_obs (next_state, next_avail). Fields a
            continuous dataset lacks (avail, final_avail) are skipped when not named
            explicitly.
        device: a `jax.Device` (default: JAX's default device).
    """
    explicit = fields is not None
    fields = tuple(DEFAULT_FIELDS if fields is None else fields)
    out: dict[str, jax.Array] = {}
    for name in fields:
        if name not in dataset.steps:
            if explicit:
                raise KeyError(f"dataset has no field {name!r}; it has {sorted(dataset.steps)}")
            continue
        out[name] = jax.device_put(np.asarray(dataset.steps[name]), device)
    out["episode_index"] = jax.device_put(dataset.episode_index.astype(np.int32), device)
    out["episode_start"] = jax.device_put(dataset.starts.astype(np.int32), device)
    out["episode_length"] = jax.device_put(dataset.lengths.astype(np.int32), device)
    return out


def sample_transitions(key: jax.Array, arrays: dict, batch_size: int) -> dict[str, jax.Array]:
    """Sample `batch_size` transitions uniformly over step rows (with replacement).

    Returns the present fields among obs, state, avail, actions, reward, terminated,
    truncated, done, next_obs, next_state, next_avail, plus is_last, episode, t (step in
    episode) and index (step row). `batch_size` must be static under jit.
    """
    n = arrays["episode_index"].shape[0]
    rows = jax.random.randint(key, (batch_size,), 0, n, dtype=jnp.int32)
    ep = arrays["episode_index"][rows]
    start = arrays["episode_start"][ep]
    last = start + arrays["episode_length"][ep] - 1
    out = gather_steps(jnp, arrays, rows, ep, last)
    out["episode"] = ep
    out["t"] = rows - start
    out["index"] = rows
    return out


def sample_sequences(key: jax.Array, arrays: dict, batch_size: int, seq_len: int,
                     align: str = "step") -> dict[str, jax.Array]:
    """Sample `batch_size` windows of `seq_len` consecutive steps within episodes.

    align="step": the window starts at a step row chosen uniformly over all N rows (so
    every step is equally likely to open a window); align="episode": an episode is
    chosen uniformly and the window starts at its first step (for recurrent agents that
    need the hidden state from t=0). A window never crosses into the next episode:
    steps past the episode's end are padded (zeros; avail True) and `mask` [B, L] is
    False there. Fields are [B, L, ...], as in `sample_transitions`, plus mask,
    episode [B], t [B, L]. `batch_size`, `seq_len` and `align` must be static.
    """
    if align not in ("step", "episode"):
        raise ValueError(f"align must be 'step' or 'episode', got {align!r}")
    if align == "step":
        n = arrays["episode_index"].shape[0]
        first = jax.random.randint(key, (batch_size,), 0, n, dtype=jnp.int32)
        ep = arrays["episode_index"][first]
    else:
        e = arrays["episode_start"].shape[0]
        ep = jax.random.randint(key, (batch_size,), 0, e, dtype=jnp.int32)
        first = arrays["episode_start"][ep]
    start = arrays["episode_start"][ep]
    last = start + arrays["episode_length"][ep] - 1
    offs = jnp.arange(seq_len, dtype=jnp.int32)
    raw = first[:, None] + offs[None, :]
    mask = raw <= last[:, None]
    rows = jnp.minimum(raw, last[:, None])
    epb = jnp.broadcast_to(ep[:, None], rows.shape)
    out = gather_steps(jnp, arrays, rows, epb, jnp.broadcast_to(last[:, None], rows.shape), mask)
    out["mask"] = mask
    out["episode"] = ep
    out["t"] = raw - start[:, None]
    return out
