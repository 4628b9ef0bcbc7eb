"""Exchange Values (Select to Perfect, ICLR 2024; methods.md §1).

A population N of n individuals acts in groups of fixed size k; a desirability score
v(G) (a DVF of the whole episode) says how well group G did. The Exchange Value of
individual i is the expected change of the score when i is exchanged for a randomly
chosen other individual:

    EV_i(k) = E_{C ⊆ N∖{i}, |C|=k−1} E_{j ∉ C∪{i}} [ v(C ∪ {i}) − v(C ∪ {j}) ]
            = mean score of k-groups containing i − mean score of k-groups not containing i
            = n/(n−k) · ( mean score of k-groups containing i − mean score of all k-groups )

Three estimators share one vectorised group-by (`membership_contrast`):

* `exact_ev`   — every k-group is scored once by a simulator (small n);
* `sampled_ev` — uniformly random k-groups are scored by a simulator (e.g. 120
  individuals in groups of 10, ≈10¹⁴ possible groups), with standard errors;
* `dataset_ev` — the groups and scores recorded in a dataset:
  EV̂_i = mean{v_m : i ∈ G_m} − mean{v_m : i ∉ G_m}, with the Welch standard error
  sqrt(s₁²/n₁ + s₀²/n₀) from the two sample variances.

Edge cases of the dataset estimator (documented choices):

* membership is a set: an individual listed in several slots of one episode counts
  once for that episode (duplicates are dropped per episode before counting);
* an individual present in *every* episode has no "not containing" sample: its value
  and standard error are NaN;
* an individual present in exactly one episode (or absent from exactly one) has a
  value but no sample variance on that side: its standard error is +inf;
* an individual of the population that never appears (only possible in
  `sampled_ev`) has value and standard error NaN and count 0.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any, Callable

import jax
import numpy as np

#: `exact_ev` refuses to enumerate more groups than this unless told otherwise.
MAX_EXACT_GROUPS = 2_000_000
#: `sample_groups` draws at most this many uniform numbers per jitted batch.
_SAMPLE_BATCH_ELEMENTS = 1 << 24


# ---------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------


def json_float(x: float) -> float | None:
    """A float for JSON output: NaN and ±inf become None (JSON has no such numbers)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _ranking_order(values: np.ndarray) -> np.ndarray:
    """Indices of `values` best first (highest value first, NaN last, ties by index)."""
    keyed = np.where(np.isnan(values), -np.inf, values)
    nan_last = np.isnan(values)
    return np.lexsort((np.arange(len(values)), -keyed, nan_last))


@dataclasses.dataclass(frozen=True, eq=False)
class EVResult:
    """Per-individual values with standard errors.

    Attributes:
        ids: individual ids [n] (strings or ints, as given; `arange(n)` for simulators).
        values: the estimate per individual [n] (NaN where undefined, see module doc).
        stderr: its standard error [n] (0 for exact values, +inf where only one sample
            backs one side of the contrast, NaN where the value is NaN).
        counts: number of groups/episodes each individual appeared in [n].
        method: "exact", "sampled", "dataset", "shapley-exact", "shapley-sampled", …
        score: name of the score (DVF) the values refer to, when known.
    """

    ids: np.ndarray
    values: np.ndarray
    stderr: np.ndarray
    counts: np.ndarray
    method: str = "dataset"
    score: str | None = None

    def __post_init__(self):
        n = len(self.ids)
        for name in ("values", "stderr", "counts"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"EVResult.{name}: expected length {n} (one per id), got {len(getattr(self, name))}")

    def __len__(self) -> int:
        return len(self.ids)

    def ranking(self) -> np.ndarray:
        """Ids ordered best first (highest value first; undefined values last)."""
        return self.ids[_ranking_order(self.values)]

    def to_mapping(self) -> dict:
        """id -> value."""
        return dict(zip(self.ids.tolist(), self.values.tolist()))

    def values_for(self, ids) -> np.ndarray:
        """Values aligned with `ids` (NaN for ids this result does not know)."""
        lookup = self.to_mapping()
        return np.asarray([lookup.get(i, np.nan) for i in np.asarray(ids).tolist()], dtype=np.float64)

    def to_table(self) -> list[dict]:
        """One row per individual, best first: rank, id, value, stderr, count (JSON-safe)."""
        order = _ranking_order(self.values)
        return [
            {"rank": r + 1, "id": self.ids[i].item(), "value": json_float(self.values[i]),
             "stderr": json_float(self.stderr[i]), "count": int(self.counts[i])}
            for r, i in enumerate(order)
        ]

    def as_dict(self) -> dict:
        """Column-wise JSON-safe dict (non-finite numbers become None)."""
        return {
            "method": self.method,
            "score": self.score,
            "ids": self.ids.tolist(),
            "values": [json_float(v) for v in self.values],
            "stderr": [json_float(v) for v in self.stderr],
            "counts": [int(c) for c in self.counts],
        }


# ---------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------


def _check_population(population: int, group_size: int) -> None:
    if not isinstance(population, (int, np.integer)) or population < 2:
        raise ValueError(f"population: expected an integer >= 2, got {population!r}")
    if not isinstance(group_size, (int, np.integer)) or not 1 <= group_size < population:
        raise ValueError(f"group_size: expected an integer in [1, population={population}), got {group_size!r} "
                         "(with group_size >= population no group leaves anyone out)")


def _check_scores(scores, num_groups: int, name: str = "scores") -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (num_groups,):
        raise ValueError(f"{name}: expected one score per group, shape ({num_groups},), got shape {scores.shape}")
    if not np.isfinite(scores).all():
        bad = int(np.argmax(~np.isfinite(scores)))
        raise ValueError(f"{name}: expected finite scores, got {scores[bad]} at group {bad}")
    return scores


def _score_simulated(score_groups: Callable, groups: np.ndarray) -> np.ndarray:
    scores = score_groups(groups)
    return _check_scores(np.asarray(scores), len(groups), name="score_groups(groups)")


# ---------------------------------------------------------------------------------------
# The shared vectorised group-by
# ---------------------------------------------------------------------------------------


def _episode_members(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(member codes, episode of each) with duplicates inside an episode dropped."""
    num_episodes, width = codes.shape
    rows = np.repeat(np.arange(num_episodes), width)
    if width == 1:
        return codes.ravel(), rows
    ordered = np.sort(codes, axis=1)
    repeated = ordered[:, 1:] == ordered[:, :-1]
    if not repeated.any():
        return ordered.ravel(), rows
    keep = np.concatenate([np.ones((num_episodes, 1), bool), ~repeated], axis=1).ravel()
    return ordered.ravel()[keep], rows[keep]


def _sample_variance(sum_sq: np.ndarray, mean: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Unbiased variance from Σx², mean and n (NaN where n < 2), clipped at 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (sum_sq - n * mean**2) / (n - 1)
    return np.where(n >= 2, np.maximum(var, 0.0), np.nan)


def membership_contrast(codes: np.ndarray, scores: np.ndarray, num_ids: int):
    """EV̂_i = mean{v : i ∈ G} − mean{v : i ∉ G} for codes 0..num_ids−1, all at once.

    `codes` [E, k] int, `scores` [E]. One bincount each for counts, sums and sums of
    squares over the flattened memberships; the "not containing" statistics are the
    totals minus the "containing" ones (`contrast_from_sums`). Scores are centred first
    so that sums of squares lose no precision. Returns (values, stderr, counts).
    """
    centred = scores - scores.mean()
    members, episode = _episode_members(codes)
    x = centred[episode]
    n1 = np.bincount(members, minlength=num_ids)
    s1 = np.bincount(members, weights=x, minlength=num_ids)
    q1 = np.bincount(members, weights=x * x, minlength=num_ids)
    return contrast_from_sums(n1, s1, q1, len(scores), centred.sum(), float(np.dot(centred, centred)))


def contrast_from_sums(n1, s1, q1, episodes: int, total_sum: float, total_sq: float):
    """The dataset estimator from its sufficient statistics (what `membership_contrast`
    and the out-of-core `teamsift.value.tables` both compute):

        n1, s1, q1   per id: episodes containing it, Σx and Σx² over them;
        episodes, total_sum, total_sq   E, Σx and Σx² over all episodes,

    where x = v − c are the scores shifted by one constant c (the mean, so that the sums
    of squares lose no precision). The "not containing" side is the difference:
    n0 = E − n1, s0 = Σx − s1, q0 = Σx² − q1. Then EV̂_i = s1/n1 − s0/n0 (the shift
    cancels), s² = (q − n·mean²)/(n − 1) on each side and SE_i = sqrt(s₁²/n₁ + s₀²/n₀)
    (Welch), with the edge cases of the module doc. Returns (values, stderr, counts).
    """
    n1 = np.asarray(n1).astype(np.float64)
    s1 = np.asarray(s1, np.float64)
    q1 = np.asarray(q1, np.float64)
    n0 = episodes - n1
    s0 = total_sum - s1
    q0 = total_sq - q1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean1 = s1 / n1
        mean0 = s0 / n0
        values = mean1 - mean0
        var1 = _sample_variance(q1, mean1, n1)
        var0 = _sample_variance(q0, mean0, n0)
        stderr = np.sqrt(var1 / n1 + var0 / n0)
    defined = (n1 > 0) & (n0 > 0)
    values = np.where(defined, values, np.nan)
    stderr = np.where(defined, np.where((n1 >= 2) & (n0 >= 2), stderr, np.inf), np.nan)
    return values, stderr, n1.astype(np.int64)


# ---------------------------------------------------------------------------------------
# Exact and sampled EVs from a simulator
# ---------------------------------------------------------------------------------------


def all_groups(population: int, group_size: int) -> np.ndarray:
    """Every k-group of range(population), int64 [C(n, k), k], lexicographic order."""
    _check_population(population, group_size)
    count = math.comb(population, group_size)
    flat = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(population), group_size)),
                       dtype=np.int64, count=count * group_size)
    return flat.reshape(count, group_size)


def exact_ev(population: int, group_size: int, score_groups: Callable[[np.ndarray], Any], *,
             max_groups: int = MAX_EXACT_GROUPS) -> EVResult:
    """Exact Exchange Values by enumerating every k-group (methods.md §1, "Exact EV").

    `score_groups(groups int[G, k]) -> float[G]` is called once, with all
    G = C(n, k) groups. EV_i = mean score of groups containing i − mean score of the
    groups not containing i; `stderr` is 0 (no sampling), `counts` = C(n−1, k−1).
    """
    _check_population(population, group_size)
    count = math.comb(population, group_size)
    if count > max_groups:
        raise ValueError(f"population={population}, group_size={group_size}: {count} groups exceed max_groups="
                         f"{max_groups}; use sampled_ev for populations this large")
    groups = all_groups(population, group_size)
    scores = _score_simulated(score_groups, groups)
    values, _, counts = membership_contrast(groups, scores, population)
    return EVResult(np.arange(population), values, np.zeros(population), counts, method="exact")


def sample_groups(key: jax.Array, population: int, group_size: int, num_groups: int) -> np.ndarray:
    """`num_groups` independent uniformly random k-groups of range(population), int64 [G, k].

    Each group is the k smallest of n i.i.d. uniforms (a uniform k-subset), drawn in
    jitted batches; batch b uses `fold_in(key, b)`.
    """
    _check_population(population, group_size)
    if not isinstance(num_groups, (int, np.integer)) or num_groups < 1:
        raise ValueError(f"num_groups: expected an integer >= 1, got {num_groups!r}")
    batch = max(1, min(num_groups, _SAMPLE_BATCH_ELEMENTS // population))
    parts = []
    for index, lo in enumerate(range(0, num_groups, batch)):
        parts.append(np.asarray(_draw_groups(jax.random.fold_in(key, index), population, group_size, batch)))
    return np.concatenate(parts)[:num_groups].astype(np.int64)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _draw_groups(key: jax.Array, population: int, group_size: int, batch: int) -> jax.Array:
    uniforms = jax.random.uniform(key, (batch, population))
    return jax.lax.top_k(-uniforms, group_size)[1]


def sampled_ev(population: int, group_size: int, score_groups: Callable[[np.ndarray], Any], key: jax.Array,
               num_groups: int) -> EVResult:
    """Exchange Values from `num_groups` uniformly random k-groups scored by a simulator
    (methods.md §1, "Sampled EV"; the paper's 120 individuals in groups of 10).

    `score_groups` is called once with all sampled groups [G, k]. Each individual
    appears in about G·k/n groups; values and Welch standard errors come from the
    dataset estimator over the sampled groups. Individuals never sampled get NaN.
    """
    groups = sample_groups(key, population, group_size, num_groups)
    scores = _score_simulated(score_groups, groups)
    values, stderr, counts = membership_contrast(groups, scores, population)
    return EVResult(np.arange(population), values, stderr, counts, method="sampled")


# ---------------------------------------------------------------------------------------
# The dataset estimator
# ---------------------------------------------------------------------------------------


def index_ids(agent_ids) -> tuple[np.ndarray, np.ndarray]:
    """(unique ids sorted as `np.unique` sorts them, codes [same shape] into them).

    Strings are factorised with pandas when it is installed (hash-based, several times
    faster than sorting millions of strings); the result is the same either way.
    """
    agent_ids = np.asarray(agent_ids)
    if agent_ids.dtype.kind == "O":
        agent_ids = agent_ids.astype(str)
    if agent_ids.dtype.kind in "iu":
        unique, codes = np.unique(agent_ids, return_inverse=True)
        return unique, codes.reshape(agent_ids.shape)
    if agent_ids.dtype.kind not in "US":
        raise ValueError(f"agent_ids: expected strings or integers, got dtype {agent_ids.dtype}")
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is an optional accelerator
        unique, codes = np.unique(agent_ids, return_inverse=True)
        return unique, codes.reshape(agent_ids.shape)
    codes, unique = pandas.factorize(agent_ids.ravel(), sort=False)
    unique = np.asarray(unique, dtype=agent_ids.dtype)
    order = np.argsort(unique, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return unique[order], rank[codes].reshape(agent_ids.shape)


def _check_dataset_inputs(agent_ids, scores) -> tuple[np.ndarray, np.ndarray]:
    agent_ids = np.asarray(agent_ids)
    if agent_ids.ndim != 2 or agent_ids.shape[0] < 1 or agent_ids.shape[1] < 1:
        raise ValueError(f"agent_ids: expected a 2-D array [episodes, group size] with at least one entry, "
                         f"got shape {agent_ids.shape}")
    return agent_ids, _check_scores(scores, agent_ids.shape[0])


def dataset_ev(agent_ids, scores, *, score: str | None = None) -> EVResult:
    """The dataset estimator of Exchange Values (methods.md §1):

        EV̂_i = mean{v_m : i ∈ G_m} − mean{v_m : i ∉ G_m},
        SE_i  = sqrt(s₁²/n₁ + s₀²/n₀)      (Welch; s² the two sample variances).

    `agent_ids` [E, k] (strings or ints) says who played each episode, `scores` [E]
    its score. Vectorised (bincount over the flattened memberships), so millions of
    episodes take seconds. See the module doc for duplicates and undefined cases.
    """
    agent_ids, scores = _check_dataset_inputs(agent_ids, scores)
    ids, codes = index_ids(agent_ids)
    values, stderr, counts = membership_contrast(codes, scores, len(ids))
    return EVResult(ids, values, stderr, counts, method="dataset", score=score)


def dataset_ev_from(dataset, score: str | None = None, *, id_column: str = "agent_ids") -> EVResult:
    """`dataset_ev` on a loaded dataset: groups from `dataset.episodes[id_column]`
    ("agent_ids"; "policy_ids" gives the true individuals of anonymised data) and
    scores from `dataset.episode_scores(score)`."""
    if id_column not in dataset.episodes:
        raise ValueError(f"id_column: the dataset has no episode column {id_column!r} "
                         f"(columns: {sorted(dataset.episodes)})")
    return dataset_ev(dataset.episodes[id_column], dataset.episode_scores(score), score=score or "return")
