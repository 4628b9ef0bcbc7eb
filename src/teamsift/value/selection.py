"""From values to data selection: which agent decisions a filtered imitation learner keeps.

Two granularities, one output: a weight per (step, slot) [N, A] that behaviour cloning
multiplies into its loss (`teamsift.value.weights`, `teamsift.engine.fit(..., weights=...)`).

* per individual (EV2BC, methods.md §1, Definition 4.5 of Select to Perfect): every slot
  an individual played gets that individual's weight —
    threshold     keep individuals whose value is above `threshold` (default 0: better
                  than a random exchange)
    top_fraction  keep the best `fraction` of individuals
    weighted      soft weights softmax(value / temperature), rescaled to mean 1 over the
                  individuals (our choice, methods.md "EV-weighted BC")
* per episode (group-BC): keep every slot of the episodes whose group score is in the
  top `fraction`.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

RULES = ("threshold", "top_fraction", "weighted")


def individual_weights(ids: np.ndarray, values: np.ndarray, *, rule: str = "threshold", threshold: float = 0.0,
                       fraction: float = 0.5, temperature: float = 1.0) -> np.ndarray:
    """A weight per individual (same order as `ids`) from its value under `rule`."""
    values = np.asarray(values, np.float64)
    if values.shape != (len(ids),):
        raise ValueError(f"values: expected one per id ({len(ids)}), found shape {list(values.shape)}")
    if not np.all(np.isfinite(values)):
        raise ValueError("values: every individual's value must be finite")
    if rule == "threshold":
        return (values > threshold).astype(np.float32)
    if rule == "top_fraction":
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction: expected a number in (0, 1], got {fraction}")
        keep = max(1, int(round(fraction * len(values))))
        order = np.argsort(-values, kind="stable")
        weights = np.zeros(len(values), np.float32)
        weights[order[:keep]] = 1.0
        return weights
    if rule == "weighted":
        if temperature <= 0:
            raise ValueError(f"temperature: expected > 0, got {temperature}")
        logits = values / temperature
        soft = np.exp(logits - logits.max())
        return (soft / soft.mean()).astype(np.float32)
    raise ValueError(f"rule: expected one of {RULES}, got {rule!r}")


def slot_weights(agent_ids: np.ndarray, weight_of: Mapping[str, float]) -> np.ndarray:
    """[E, A] weights: each slot gets the weight of the individual who played it
    (individuals without a value get 0: they are not imitated)."""
    agent_ids = np.asarray(agent_ids)
    unique, inverse = np.unique(agent_ids, return_inverse=True)
    lookup = np.array([float(weight_of.get(str(name), 0.0)) for name in unique], np.float32)
    return lookup[inverse.reshape(agent_ids.shape)]


def top_episodes(scores: np.ndarray, fraction: float) -> np.ndarray:
    """[E] 0/1: the episodes whose score is among the top `fraction` (group-BC)."""
    scores = np.asarray(scores, np.float64)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction: expected a number in (0, 1], got {fraction}")
    keep = max(1, int(round(fraction * len(scores))))
    order = np.argsort(-scores, kind="stable")
    selected = np.zeros(len(scores), np.float32)
    selected[order[:keep]] = 1.0
    return selected


def step_weights(dataset, episode_slot_weights: np.ndarray) -> np.ndarray:
    """Broadcast [E, A] weights to every step of their episode: [N, A]."""
    episode_slot_weights = np.asarray(episode_slot_weights, np.float32)
    expected = (dataset.num_episodes, dataset.num_agents)
    if episode_slot_weights.shape != expected:
        raise ValueError(f"weights: expected shape {list(expected)} (episodes, agents), "
                         f"found {list(episode_slot_weights.shape)}")
    return episode_slot_weights[dataset.episode_index]
