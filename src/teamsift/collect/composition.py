"""Composition specs: which behaviour level plays each slot, written as in SIT's Tables 7–9.

    "50%[r,r,m] + 50%[r,r,r]"     half the episodes random-random-medium, half all random
    "[r,m,e]"                      every episode: slot 0 random, slot 1 medium, slot 2 expert
    "99.5%[all r] + 0.5%[all m]"   `all x` fills every slot with level x

Levels: r / random, m / medium, e / expert. Percentages must add up to 100. Each episode
draws one term with these proportions (exact counts, shuffled by a JAX key), and each
slot then draws its individual policy uniformly from its level's pool.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import numpy as np

LEVELS = ("random", "medium", "expert")
_ALIASES = {"r": "random", "m": "medium", "e": "expert", **{level: level for level in LEVELS}}
_TERM = re.compile(r"^\s*(?:(?P<pct>[0-9]*\.?[0-9]+)\s*%)?\s*\[(?P<slots>[^\]]*)\]\s*$")


class SpecError(ValueError):
    """A composition spec that cannot be used; the message says where and why."""


@dataclasses.dataclass(frozen=True)
class Composition:
    weights: tuple[float, ...]  # fractions, summing to 1
    levels: tuple[tuple[str, ...], ...]  # one level per slot, per term
    text: str

    @property
    def num_slots(self) -> int:
        return len(self.levels[0])

    def short(self, term: int) -> str:
        return ",".join(level[0] for level in self.levels[term])

    def episode_counts(self, num_episodes: int) -> np.ndarray:
        """Exact episodes per term: largest remainders of weight · num_episodes."""
        raw = np.asarray(self.weights) * num_episodes
        counts = np.floor(raw).astype(np.int64)
        shortfall = num_episodes - counts.sum()
        counts[np.argsort(-(raw - counts), kind="stable")[:shortfall]] += 1
        return counts

    def draw_terms(self, key: jax.Array, num_episodes: int) -> np.ndarray:
        """Term index of every episode: exact proportions, in a random order."""
        terms = np.repeat(np.arange(len(self.weights)), self.episode_counts(num_episodes))
        return np.asarray(jax.random.permutation(key, terms))


def parse(text: str, num_slots: int | None = None) -> Composition:
    """Parse a composition spec; with `num_slots`, also check every term has that many slots."""
    if not text or not text.strip():
        raise SpecError("composition spec is empty; expected e.g. \"50%[r,r,m] + 50%[r,r,r]\"")
    weights, levels = [], []
    terms = text.split("+")
    for position, term in enumerate(terms, start=1):
        match = _TERM.match(term)
        if not match:
            raise SpecError(f"term {position} {term.strip()!r}: expected 'P%[l1,l2,...]' or '[l1,l2,...]'")
        if match["pct"] is None and len(terms) > 1:
            raise SpecError(f"term {position} {term.strip()!r}: a percentage is needed when there are several terms")
        pct = 100.0 if match["pct"] is None else float(match["pct"])
        if pct <= 0:
            raise SpecError(f"term {position}: percentage must be positive, got {pct:g}%")
        slots = [s.strip() for s in match["slots"].split(",") if s.strip()]
        if len(slots) == 1 and slots[0].startswith("all "):
            if num_slots is None:
                raise SpecError(f"term {position}: 'all' needs the environment's number of slots")
            slots = [slots[0][4:].strip()] * num_slots
        unknown = [s for s in slots if s not in _ALIASES]
        if unknown:
            raise SpecError(f"term {position}: unknown level(s) {unknown}; expected r/m/e or random/medium/expert")
        if not slots:
            raise SpecError(f"term {position}: no slots between the brackets")
        if num_slots is not None and len(slots) != num_slots:
            raise SpecError(f"term {position} has {len(slots)} slots; the environment has {num_slots} agents")
        weights.append(pct)
        levels.append(tuple(_ALIASES[s] for s in slots))
    if len({len(l) for l in levels}) > 1:
        raise SpecError(f"terms have different numbers of slots: {[len(l) for l in levels]}")
    total = sum(weights)
    if abs(total - 100.0) > 1e-6:
        raise SpecError(f"percentages add up to {total:g}%, not 100%")
    return Composition(tuple(w / 100.0 for w in weights), tuple(levels), text.strip())
