"""Which valuation fits a dataset: the checks `teamsift value` runs before any work.

A valuation from team scores can only tell individuals apart when the data vary who plays
with whom. `advise` reads how individual ids are spread over episodes and slots and

* raises `UnsuitableMethod` (a ValueError) where the method's result would be meaningless
  (e.g. Exchange Values when every id appears in one episode only: nothing to exchange);
* returns warnings (one line each) where the result stands but part of it does not.

`id_layout` is the summary the checks (and the messages) are built from.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Methods whose values come from episode scores (the DVF), not from per-step rewards.
SCORE_METHODS = ("ev", "ev-cluster")


class UnsuitableMethod(ValueError):
    """The method cannot give meaningful values on this dataset (the message says which fits)."""


@dataclasses.dataclass(frozen=True)
class IdLayout:
    """How the individual ids (`agent_ids`) of a dataset are spread over its E episodes.

    Attributes:
        episodes: E.
        ids: the distinct ids, sorted.
        appearances: episodes each id appears in [len(ids)].
        fixed_slots: slots whose id is the same in every episode.
        slots: A.
    """

    episodes: int
    ids: np.ndarray
    appearances: np.ndarray
    fixed_slots: tuple[int, ...]
    slots: int

    @property
    def once(self) -> np.ndarray:
        """Ids that appear in exactly one episode."""
        return self.ids[self.appearances == 1]

    @property
    def everywhere(self) -> np.ndarray:
        """Ids that appear in every episode."""
        return self.ids[self.appearances == self.episodes]

    @property
    def all_once(self) -> bool:
        """No id plays in two episodes (anonymised data)."""
        return bool((self.appearances == 1).all())

    @property
    def all_fixed(self) -> bool:
        """Every slot holds the same id in every episode (with more than one episode)."""
        return self.episodes > 1 and len(self.fixed_slots) == self.slots


def id_layout(dataset) -> IdLayout:
    """Summarise `dataset.episodes["agent_ids"]` [E, A] (see `IdLayout`)."""
    ids = np.asarray(dataset.episodes["agent_ids"]).astype(str)
    e, a = ids.shape
    unique, codes = np.unique(ids, return_inverse=True)
    codes = codes.reshape(e, a)
    present = np.zeros((e, len(unique)), bool)
    present[np.repeat(np.arange(e), a), codes.ravel()] = True  # an id twice in one episode counts once
    fixed = tuple(int(s) for s in range(a) if (codes[:, s] == codes[0, s]).all())
    return IdLayout(episodes=e, ids=unique, appearances=present.sum(axis=0), fixed_slots=fixed, slots=a)


def _examples(ids: np.ndarray, limit: int = 3) -> str:
    shown = ", ".join(map(str, ids[:limit]))
    return shown + (f", … ({len(ids)} in all)" if len(ids) > limit else "")


def advise(dataset, method: str, score: str | None = None) -> list[str]:
    """Check that `method` can value `dataset`; return warnings, raise `UnsuitableMethod`.

    Raises:
        UnsuitableMethod: the values would be meaningless (the message names the method
            that fits).
        ValueError: `score` is not a score of the dataset.
    """
    layout = id_layout(dataset)
    warnings: list[str] = []
    e = layout.episodes
    if method in SCORE_METHODS and layout.all_fixed:
        clusters = " (and its cluster's)" if method == "ev-cluster" else ""
        raise UnsuitableMethod(
            f"{method}: each of the {layout.slots} slots holds the same individual in every episode (fixed slots: "
            f"{_examples(layout.ids)}): no individual is ever absent, so its Exchange Value{clusters} is undefined. Not "
            f"identifiable from the team score: how much each fixed individual, or its slot's role, adds. "
            f"Identifiable: which trajectories of a slot went better, and each slot's share of the per-step team "
            f"reward — --method ardnem. To value individuals, the data must vary who plays with whom")
    if method in SCORE_METHODS:
        scores = dataset.episode_scores(score)
        check_scores(method, e, float(np.min(scores)), float(np.max(scores)), score or "return")
    if method == "ev":
        warnings += ev_warnings(layout)
    if method == "ardnem" and layout.all_fixed:
        warnings.append("ardnem: each slot holds the same individual in every episode (fixed slots): an individual's "
                        "value is the mean priority of its slot's trajectories, which cannot separate the individual "
                        "from its slot's role; compare trajectories within a slot (per-trajectory priorities), not "
                        "individuals across slots")
    return warnings


def check_scores(method: str, episodes: int, lowest: float, highest: float, name: str) -> None:
    """Refuse a score-based method on fewer than two episodes or on a score that is the same
    in every episode (every value would be 0)."""
    if episodes < 2:
        raise UnsuitableMethod(f"{method}: needs at least two episodes to compare, the dataset has {episodes}")
    if lowest == highest:
        raise UnsuitableMethod(f"{method}: the score {name!r} is {lowest:g} in every episode, so every value "
                               f"would be 0; value by another score (--score)")


def ev_warnings(layout: IdLayout) -> list[str]:
    """The Exchange Value checks on how ids spread over episodes: raise `UnsuitableMethod`
    when no value can stand (every id in one episode only, or every id in every episode);
    return one warning per part that cannot (ids in every episode, ids in one episode)."""
    n, e = len(layout.ids), layout.episodes
    if layout.all_once:
        raise UnsuitableMethod(
            f"ev: every individual id appears in one episode only ({n} ids over {e} episodes, anonymised "
            f"data): Exchange Values compare episodes with an individual against episodes without it, and "
            f"here every teammate would get its episode's score — nothing to exchange. Use --method "
            f"ev-cluster (values clusters of similar behaviour, made for anonymised data) or --method ardnem "
            f"(splits the per-step team reward between the agents)")
    if n and len(layout.everywhere) == n:
        raise UnsuitableMethod(
            f"ev: every individual appears in every episode ({_examples(layout.ids)}): no individual is ever "
            f"absent, so every Exchange Value is undefined. To value individuals, the data must vary who plays "
            f"with whom; each slot's share of the per-step team reward is identifiable — --method ardnem")
    warnings = []
    if len(layout.everywhere):
        warnings.append(f"ev: {len(layout.everywhere)} of {n} individuals appear in every episode "
                        f"({_examples(layout.everywhere)}): their Exchange Value is undefined (shown as —)")
    if len(layout.once):
        warnings.append(f"ev: {len(layout.once)} of {n} individuals appear in one episode only "
                        f"({_examples(layout.once)}): each value rests on one episode's score and has no standard "
                        f"error; --method ev-cluster pools them by behaviour")
    return warnings
