"""EV2BC: behaviour cloning of the individuals with high Exchange Values
(Select to Perfect, Definition 4.5; methods.md §1).

    1. value every individual from the episode scores (DVF) of the groups it played in:
         EV̂_i = mean{v_m : i ∈ G_m} − mean{v_m : i ∉ G_m}        (dataset estimator)
       or, for anonymised / incomplete data, the EV of its behaviour cluster (EV-Clustering)
    2. keep individual i's decisions with weight w_i:
         threshold     w_i = 1[EV_i > threshold]   (default 0: better than a random exchange)
         top_fraction  w_i = 1 for the best `fraction` of individuals
         weighted      w_i ∝ exp(EV_i / temperature), mean 1
       per_slot=True (ours) applies the rule within each slot (role) instead, to the values
       centred on that slot's mean, v_i − mean_{j in slot} v_j: the value of swapping i for
       a random other individual of the same role. Layouts where roles differ (Overcooked's
       asymmetric_advantages, forced_coordination) then keep data for every role, where a
       global rule may keep one role only and leave the other untrained.
    3. behaviour cloning with the weighted loss  Σ w_i ℓ(π(o_i), a_i) / Σ w_i
       (`teamsift.algos.bc`, every default of BCConfig unchanged)

The selection rules other than the threshold are our choices (methods.md "(ours)").
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import numpy as np

from teamsift.algos import bc
from teamsift.value import selection


@dataclasses.dataclass(frozen=True)
class EV2BCConfig:
    bc: bc.BCConfig = bc.BCConfig()
    valuation: str = "ev"  # ev | ev-cluster
    score: str | None = None  # DVF: a score column of the dataset; None = team return
    rule: str = "threshold"  # threshold | top_fraction | weighted
    threshold: float = 0.0
    fraction: float = 0.5
    temperature: float = 1.0
    num_clusters: int | None = None  # ev-cluster: None chooses the number of clusters
    per_slot: bool = False  # apply the rule per slot (role), to values centred on the slot's mean


def value_individuals(config: EV2BCConfig, dataset, key: jax.Array) -> dict[str, float]:
    """Step 1: a value per individual id (EV, or its cluster's EV)."""
    if config.valuation == "ev":
        from teamsift.value.exchange import dataset_ev_from

        result = dataset_ev_from(dataset, config.score)
        return {str(i): float(v) for i, v in zip(result.ids, result.values)}
    if config.valuation == "ev-cluster":
        from teamsift.value.clustering import ev_cluster

        result = ev_cluster(dataset, key=key, num_clusters=config.num_clusters, score=config.score)
        return {str(i): float(v) for i, v in zip(result.ids, result.values)}
    raise ValueError(f"EV2BCConfig.valuation: expected 'ev' or 'ev-cluster', got {config.valuation!r}")


def rule_weights(config: EV2BCConfig, values: Mapping[str, float], ids=None) -> dict[str, float]:
    """The rule's weight of every individual of `ids` (default: all) with a finite value."""
    ids = np.array(sorted(values if ids is None else ids))
    finite = ids[[np.isfinite(values.get(i, np.nan)) for i in ids.tolist()]] if len(ids) else ids
    weights = selection.individual_weights(finite, np.array([values[i] for i in finite.tolist()]),
                                           rule=config.rule, threshold=config.threshold,
                                           fraction=config.fraction, temperature=config.temperature)
    return dict(zip(finite.tolist(), weights.tolist()))


def role_weights(config: EV2BCConfig, agent_ids: np.ndarray, values: Mapping[str, float]) -> np.ndarray:
    """[E, A] weights with the rule applied per slot to values centred on the slot's mean.
    A slot whose individuals all have one value (nothing to select on) keeps everyone."""
    agent_ids = np.asarray(agent_ids).astype(str)
    out = np.zeros(agent_ids.shape, np.float32)
    for slot in range(agent_ids.shape[1]):
        players = [i for i in np.unique(agent_ids[:, slot]).tolist() if np.isfinite(values.get(i, np.nan))]
        slot_values = np.array([values[i] for i in players])
        if len(players) == 0:
            continue
        if np.ptp(slot_values) == 0:
            weight_of = dict.fromkeys(players, 1.0)
        else:
            weight_of = rule_weights(config, dict(zip(players, slot_values - slot_values.mean())))
        out[:, slot] = selection.slot_weights(agent_ids[:, slot:slot + 1], weight_of)[:, 0]
    return out


def decision_weights(config: EV2BCConfig, dataset, values: Mapping[str, float]) -> np.ndarray:
    """Step 2: [N, A] weights of every agent decision in the dataset."""
    if config.per_slot:
        per_slot = role_weights(config, dataset.episodes["agent_ids"], values)
    else:
        per_slot = selection.slot_weights(dataset.episodes["agent_ids"], rule_weights(config, values))
    if not per_slot.any():
        raise ValueError(f"EV2BC: no individual passes the {config.rule} rule (threshold {config.threshold}); "
                         "lower the threshold or use rule='top_fraction'")
    return selection.step_weights(dataset, per_slot)


def train(config: EV2BCConfig, dataset, key: jax.Array, *, num_seeds: int = 1,
          values: Mapping[str, float] | None = None, progress: bool = True):
    """Value the individuals (unless `values` are given), select, clone. Returns (policy, logs)."""
    value_key, bc_key = jax.random.split(key)
    values = dict(values) if values is not None else value_individuals(config, dataset, value_key)
    weights = decision_weights(config, dataset, values)
    policy, logs = bc.train(config.bc, dataset, bc_key, num_seeds=num_seeds, weights=weights, progress=progress)
    kept = float((weights > 0).mean())
    logs.update(values=values, kept_fraction=kept, config=_config_dict(config))
    return policy, logs


def _config_dict(config: EV2BCConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)
