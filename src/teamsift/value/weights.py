"""Weights from any valuation: how much each agent decision counts when a learner trains.

One output for every valuation, a weight per (episode, slot) [E, A], which the training
engine multiplies into every learner's per-decision loss (`teamsift.engine.fit(...,
weights=...)`). So any valuation drives any learner:

    ev          Exchange Values of the individuals from the episode scores (Select to
                Perfect, Definition 4.5; methods.md §1):
                    EV̂_i = mean{v_m : i ∈ G_m} − mean{v_m : i ∉ G_m}
    ev-cluster  the EV of each individual's behaviour cluster (EV-Clustering: anonymised or
                incomplete data, where every id is seen once)
    ardnem      ARDNEM's trajectory priority p̂_i^k (SIT Stage I), one value per (episode, slot)
    group       the episode's own score (group-BC: a good episode is imitated whole)

and the selection rule turns values into weights (`SelectionConfig`):

    threshold     w = 1[value > threshold]      (default 0: better than a random exchange)
    top_fraction  w = 1 for the best `fraction`
    weighted      w ∝ exp(value / temperature), mean 1   (ours, methods.md "EV-weighted BC")

per_slot=True (ours) applies the rule within each slot (role), to values centred on that
slot's mean — the value of swapping i for a random other individual of the same role — so
layouts whose roles differ (Overcooked's asymmetric_advantages, forced_coordination) keep
data for every role. The named algorithms:

    EV2BC     = behaviour cloning on `ev` weights (rule threshold 0)      Select to Perfect
    group-BC  = behaviour cloning on `group` weights (top half of episodes)   its baseline
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import numpy as np

from teamsift.value import selection

VALUATIONS = ("ev", "ev-cluster", "ardnem", "group")


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    """How a valuation's values become weights (defaults: EV2BC's)."""

    rule: str = "threshold"  # threshold | top_fraction | weighted
    threshold: float = 0.0
    fraction: float = 0.5
    temperature: float = 1.0
    per_slot: bool = False  # apply the rule per slot (role), to values centred on the slot's mean
    score: str | None = None  # the DVF: a score column of the dataset; None = the team return
    num_clusters: int | None = None  # ev-cluster: None chooses the number of clusters
    features: str = "histogram"  # ev-cluster: the behaviour features (`clustering.FeatureConfig.kind`)
    k_rule: str = "one-se"  # ev-cluster: how K is chosen when num_clusters is None (`clustering.ClusterConfig.k_rule`)

    def __post_init__(self):
        if self.rule not in selection.RULES:
            raise ValueError(f"SelectionConfig.rule: expected one of {selection.RULES}, got {self.rule!r}")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"SelectionConfig.fraction: expected a number in (0, 1], got {self.fraction!r}")
        if not self.temperature > 0:
            raise ValueError(f"SelectionConfig.temperature: expected a positive number, got {self.temperature!r}")
        if self.num_clusters is not None and self.num_clusters < 1:
            raise ValueError(f"SelectionConfig.num_clusters: expected None or >= 1, got {self.num_clusters!r}")
        from teamsift.value.clustering import FEATURE_KINDS, K_RULES

        if self.features not in FEATURE_KINDS:
            raise ValueError(f"SelectionConfig.features: expected one of {FEATURE_KINDS}, got {self.features!r}")
        if self.k_rule not in K_RULES:
            raise ValueError(f"SelectionConfig.k_rule: expected one of {K_RULES}, got {self.k_rule!r}")


def individual_values(valuation: str, dataset, key: jax.Array, config: SelectionConfig) -> dict[str, float]:
    """A value per individual id: its Exchange Value, or its cluster's."""
    if valuation == "ev":
        from teamsift.value.exchange import dataset_ev_from

        result = dataset_ev_from(dataset, config.score)
    elif valuation == "ev-cluster":
        from teamsift.value.clustering import ClusterConfig, FeatureConfig, ev_cluster

        result = ev_cluster(dataset, key=key, num_clusters=config.num_clusters, score=config.score,
                            config=ClusterConfig(features=FeatureConfig(kind=config.features), k_rule=config.k_rule))
    else:
        raise ValueError(f"individual values: expected 'ev' or 'ev-cluster', got {valuation!r}")
    return {str(i): float(v) for i, v in zip(result.ids, result.values)}


def rule_weights(config: SelectionConfig, values: Mapping[str, float], ids=None) -> dict[str, float]:
    """The rule's weight of every individual of `ids` (default: all) with a finite value."""
    ids = np.array(sorted(values if ids is None else ids))
    finite = ids[[np.isfinite(values.get(i, np.nan)) for i in ids.tolist()]] if len(ids) else ids
    weights = selection.individual_weights(finite, np.array([values[i] for i in finite.tolist()]),
                                           rule=config.rule, threshold=config.threshold,
                                           fraction=config.fraction, temperature=config.temperature)
    return dict(zip(finite.tolist(), weights.tolist()))


def role_weights(config: SelectionConfig, agent_ids: np.ndarray, values: Mapping[str, float]) -> np.ndarray:
    """[E, A] weights with the rule applied per slot to values centred on the slot's mean.
    A slot whose individuals all have one value (nothing to select on) keeps everyone."""
    agent_ids = np.asarray(agent_ids).astype(str)
    out = np.zeros(agent_ids.shape, np.float32)
    for slot in range(agent_ids.shape[1]):
        players = [i for i in np.unique(agent_ids[:, slot]).tolist() if np.isfinite(values.get(i, np.nan))]
        if not players:
            continue
        slot_values = np.array([values[i] for i in players])
        if np.ptp(slot_values) == 0:
            weight_of = dict.fromkeys(players, 1.0)
        else:
            weight_of = rule_weights(config, dict(zip(players, slot_values - slot_values.mean())))
        out[:, slot] = selection.slot_weights(agent_ids[:, slot:slot + 1], weight_of)[:, 0]
    return out


def individual_weights(config: SelectionConfig, dataset, values: Mapping[str, float]) -> np.ndarray:
    """[E, A]: every slot gets the weight its individual's value earns under the rule."""
    if config.per_slot:
        return role_weights(config, dataset.episodes["agent_ids"], values)
    return selection.slot_weights(dataset.episodes["agent_ids"], rule_weights(config, values))


def trajectory_weights(config: SelectionConfig, values: np.ndarray) -> np.ndarray:
    """[E, A] weights of per-(episode, slot) values (ARDNEM's p̂) under the rule, over all
    trajectories or per slot."""
    values = np.asarray(values, np.float64)
    flat_ids = np.arange(values.size)
    if not config.per_slot:
        weights = selection.individual_weights(flat_ids, values.reshape(-1), rule=config.rule,
                                               threshold=config.threshold, fraction=config.fraction,
                                               temperature=config.temperature)
        return weights.reshape(values.shape)
    out = np.zeros(values.shape, np.float32)
    for slot in range(values.shape[1]):
        column = values[:, slot] - values[:, slot].mean()
        out[:, slot] = selection.individual_weights(np.arange(len(column)), column, rule=config.rule,
                                                    threshold=config.threshold, fraction=config.fraction,
                                                    temperature=config.temperature)
    return out


def group_weights(config: SelectionConfig, dataset) -> np.ndarray:
    """[E, A]: 1 for every slot of an episode whose score is in the top `fraction`."""
    keep = selection.top_episodes(dataset.episode_scores(config.score), config.fraction)
    return np.repeat(keep[:, None], dataset.num_agents, axis=1)


@dataclasses.dataclass(frozen=True)
class Weights:
    """A valuation's weights [E, A] and what produced them."""

    valuation: str
    weights: np.ndarray
    values: dict | None = None  # per individual (ev, ev-cluster)

    @property
    def kept_fraction(self) -> float:
        return float((self.weights > 0).mean())

    def summary(self) -> dict:
        out = {"valuation": self.valuation, "kept_fraction": self.kept_fraction}
        if self.values is not None:
            out["values"] = self.values
        return out


def valuation_weights(valuation: str, dataset, key: jax.Array, config: SelectionConfig = SelectionConfig(), *,
                      priorities: np.ndarray | None = None) -> Weights:
    """Weights [E, A] of `valuation` (one of `VALUATIONS`; `priorities` [E, A]: ARDNEM's p̂)."""
    if valuation in ("ev", "ev-cluster"):
        values = individual_values(valuation, dataset, key, config)
        weights = individual_weights(config, dataset, values)
    elif valuation == "group":
        values, weights = None, group_weights(config, dataset)
    elif valuation == "ardnem":
        if priorities is None:
            raise ValueError("weights 'ardnem': needs ARDNEM's trajectory priorities p̂ [E, A] (Stage I)")
        values, weights = None, trajectory_weights(config, priorities)
    else:
        raise ValueError(f"weights: expected one of {VALUATIONS}, got {valuation!r}")
    weights = np.asarray(weights, np.float32)
    if not weights.any():
        raise ValueError(f"weights {valuation!r}: no decision passes the {config.rule} rule (threshold "
                         f"{config.threshold}); lower the threshold or use rule='top_fraction'")
    return Weights(valuation, weights, values)
