"""Evaluate a joint policy: mean, std and 95% interval of the team return and every score."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from teamsift.envs.base import Env
from teamsift.evaluate.rollout import rollout_to_host

Z95 = 1.959963984540054


@dataclasses.dataclass(frozen=True)
class ScoreSummary:
    mean: float
    std: float
    ci95_low: float
    ci95_high: float
    n: int

    @classmethod
    def of(cls, values) -> "ScoreSummary":
        values = np.asarray(values, dtype=np.float64)
        n = values.size
        mean = float(values.mean())
        std = float(values.std(ddof=1)) if n > 1 else 0.0
        half = Z95 * std / math.sqrt(n) if n > 1 else 0.0
        return cls(mean, std, mean - half, mean + half, n)

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f} (95% CI {self.ci95_low:.3f} … {self.ci95_high:.3f}, n={self.n})"


@dataclasses.dataclass(frozen=True)
class EvalResult:
    env_id: str
    num_episodes: int
    scores: dict[str, ScoreSummary]
    per_episode: dict[str, np.ndarray] = dataclasses.field(repr=False)
    mean_length: float = 0.0

    @property
    def team_return(self) -> ScoreSummary:
        return self.scores["return"]

    def to_dict(self) -> dict:
        return {
            "env_id": self.env_id,
            "num_episodes": self.num_episodes,
            "mean_length": self.mean_length,
            "scores": {name: dataclasses.asdict(s) for name, s in self.scores.items()},
        }


def evaluate(env: Env, policy, key: jax.Array, num_episodes: int = 100, chunk: int = 1024,
             assignment=None) -> EvalResult:
    """Roll out `policy` for `num_episodes` episodes (in jitted chunks) and summarise every score.

    `assignment` [num_episodes, A] (for a `PolicyBank` / `CheckpointBank`) says which
    policy plays each slot in each episode.
    """
    per_episode: dict[str, list] = {}
    lengths = []
    remaining, chunk_index = num_episodes, 0
    while remaining > 0:
        size = min(chunk, remaining)
        done = num_episodes - remaining
        part = None if assignment is None else jnp.asarray(assignment)[done:done + size]
        # Over several devices, each chunk is split between them (padded to a multiple of their number).
        episodes = rollout_to_host(env, policy, jax.random.fold_in(key, chunk_index), size, record=False,
                                   assignment=part)
        for name, values in episodes.scores.items():
            per_episode.setdefault(name, []).append(values)
        lengths.append(episodes.valid.sum(axis=1))
        remaining -= size
        chunk_index += 1
    arrays = {name: np.concatenate(parts) for name, parts in per_episode.items()}
    return EvalResult(
        env_id=env.spec.env_id,
        num_episodes=num_episodes,
        scores={name: ScoreSummary.of(values) for name, values in arrays.items()},
        per_episode=arrays,
        mean_length=float(np.concatenate(lengths).mean()),
    )
