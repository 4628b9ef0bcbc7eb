"""EV-Clustering: Exchange Values for incomplete and anonymised data (methods.md §1).

When each individual appears in few episodes, or only once (one-time ids, as in the
human Overcooked trials), its own EV estimate rests on one or two scores. EV-Clustering
groups individuals by their *behaviour* and gives every member the EV of its cluster,
choosing the clustering that **maximises the variance of the cluster EVs across
individuals**: by the law of total variance, Var(EV_i) = Var(E[EV_i | c]) + E[Var(EV_i | c)],
so maximising the between-cluster part minimises the spread of the true contributions
within clusters.

Steps (choices marked "ours" in methods.md, kept configurable):

1. **Behaviour features** per individual (`behaviour_features`), of the kind
   `FeatureConfig.kind` names (ours, methods.md §1; never built from ground truth):
   * ``"histogram"`` (default). Discrete actions: action-frequency histograms
     conditioned on coarse observation bins — the bins are a k-means partition
     (`FeatureConfig.num_obs_bins` centres) of a sample of the agents' observations, each
     dimension scaled by its standard deviation; a bin an individual never visited gets
     its own action distribution over all bins (so where a group drove the environment
     does not masquerade as behaviour). Continuous actions: mean and standard deviation
     of every action and observation dimension (z-scored across individuals).
   * ``"policy-mixture"`` (discrete actions): the responsibilities of a mixture of
     `mixture_components` behaviour-cloning policies, fitted by EM without labels. The
     start is one policy fitted to every decision and each individual's mean "surprise"
     under it, log π(a|o) + H(π(·|o)); each EM round fits one policy per component to all
     decisions weighted by their makers' responsibilities, and an individual's
     responsibilities become the posterior of its whole trajectory, ∝ w_m Π_t π_m(a_t|o_t).
     Policies are cross-fitted (`mixture_folds` folds of episodes): no individual is
     scored by a policy that saw its data. This tells behaviours apart that show only in
     which action follows which observation — where the histograms' coarse bins average
     it away. On anonymised MPE pool populations the histograms cannot tell the levels
     apart (a linear probe of level on them: Spearman 0.06 on CN_3ls3l), so K = 1 is
     chosen; the policy mixture separates the untrained checkpoints from the trained ones
     (benchmarks/results/valuation-cpu.md). Costs seconds to a minute on a CPU: one
     small MLP per component, fold and round.
   * ``"policy-likelihood"`` (discrete actions): the same mixture, but each individual is
     described by the mean log-likelihood per decision of its actions under each policy
     (less their mean over the policies; z-scored). The responsibilities are posteriors
     of whole trajectories and saturate at 0 or 1, so they split the individuals into
     the policies' camps only; the per-decision likelihoods keep how far along the axis
     between the policies an individual acts, and the clusters can cut that axis finely.
2. **Per-individual estimates** EV̂_i from the dataset estimator (`exchange.dataset_ev`).
3. **Cluster EV** (`ClusterConfig.cluster_value`):
   * ``"member_mean"`` (default): the mean of the members' EV̂_i, i.e. the expected EV
     of a random member, with standard error sd(EV̂_i in c)/√n_c (+inf for a singleton).
     Clustering then only averages away noise: with one-time ids every EV̂_i is shrunk
     by the same factor (n−k)/n of the latent population, clustered or not.
   * ``"membership"``: the cluster is treated as one individual — the dataset estimator
     on cluster-level membership, mean{v : G contains a member of c} − mean{v : it
     contains none}. This is exact when a cluster is one latent individual, but for a
     cluster of several latent individuals it overstates their EVs (by the expected
     number of members in a group that has one, ≈1.3 for 4 types in groups of 3) and it
     is undefined once every group holds a member (large clusters, large groups).
   The paper's summary says only that EVs are "computed per cluster"; we default to
   the member mean because it estimates the per-individual EV without that bias.
4. **Partition** for a given number of clusters K: k-means (k-means++ start,
   `restarts` seeds; of the restarts whose inertia is within `restart_slack` of the
   best, the one with the highest variance objective is kept), then
   greedy local moves that raise the objective. The units that move are
   micro-clusters (a finer k-means partition, `micro_clusters`, default max(4K, ⌈√n⌉)),
   each starting in the cluster most of its members got, and only those that
   behaviour places ambiguously (distance from their centre to their own cluster's
   centre ≥ `move_margin` × distance to the nearest other centre), which may move to
   that other cluster. A move thus rests on the mean EV̂ of many behaviourally similar
   individuals, and the objective refines a behavioural partition rather than
   replacing it by a partition by noisy scores (moving single individuals sorts them
   by their own noisy EV̂ and inflates the variance with noise).
5. **Number of clusters** (ours): the K among `candidates` with the lowest held-out
   estimation error. Episodes are split into `holdout_folds` folds (an individual goes
   with its first episode); each fold's individuals get the EV of the cluster of their
   nearest micro-cluster in a partition fitted on the other folds, and the RMSE
   against a target is averaged over folds; the smallest K whose error exceeds the
   lowest by at most one standard error of their fold-paired difference is chosen
   (`ClusterConfig.k_rule="one-se"`, the default), or the K of the lowest error
   (`"lowest"`: when the held-out errors barely differ, as with one-time ids whose
   own estimates are single scores, "one-se" falls back to the fewest clusters).
   The target is the ground truth (`true_values`, e.g. the EVs of the true
   individuals) when given — methods.md's rule — and otherwise the held-out
   individuals' own estimates EV̂_i: their noise is independent of the fitted partition, so E[(EV̂_c − EV̂_i)²] = E[(EV̂_c − EV_i)²] +
   Var(noise_i), the true error plus a constant that does not depend on K. (A penalised
   in-sample objective does not work here: restart selection and local moves make the
   in-sample variance grow with K even on pure noise.)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from teamsift.nets.agent import MLP, masked_logits
from teamsift.value.accuracy import estimation_error
from teamsift.value.exchange import EVResult, json_float, membership_contrast, index_ids

CLUSTER_VALUES = ("member_mean", "membership")
FEATURE_KINDS = ("histogram", "policy-mixture", "policy-likelihood")
K_RULES = ("one-se", "lowest")


# ---------------------------------------------------------------------------------------
# Configuration and results
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """How behaviour features are computed from a dataset (ours, methods.md §1)."""

    kind: str = "histogram"  # "histogram", "policy-mixture" or "policy-likelihood" (module doc, step 1)
    num_obs_bins: int = 4  # histogram: coarse observation bins (k-means centres) for discrete actions
    bin_sample: int = 20_000  # histogram: observation rows used to fit the bins
    bin_iters: int = 30
    chunk_steps: int = 1 << 18  # step rows read from the memory-maps at a time
    standardise: bool | None = None  # z-score features; None: "policy-likelihood" and continuous "histogram" only
    # policy-mixture: a mixture of behaviour-cloning policies fitted by EM, out of fold
    mixture_components: int = 2  # policies in the mixture (the feature width)
    mixture_rounds: int = 3  # EM rounds after the start from the pooled policy
    mixture_folds: int = 2  # cross-fitting folds of episodes: no individual is scored by a policy fitted on it
    policy_hidden: tuple[int, ...] = (64, 64)
    policy_updates: int = 1000  # Adam updates per policy fit
    policy_batch: int = 256
    policy_learning_rate: float = 1e-3
    policy_weight_decay: float = 1e-4

    def __post_init__(self):
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"kind: expected one of {FEATURE_KINDS}, got {self.kind!r}")
        if self.mixture_components < 2 or self.mixture_rounds < 1 or self.mixture_folds < 2:
            raise ValueError(f"mixture_components: expected >= 2, mixture_rounds: >= 1, mixture_folds: >= 2; got "
                             f"{self.mixture_components}, {self.mixture_rounds}, {self.mixture_folds}")
        if self.policy_updates < 1 or self.policy_batch < 1 or not self.policy_learning_rate > 0:
            raise ValueError("policy_updates and policy_batch: expected >= 1; policy_learning_rate: expected > 0")


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """EV-Clustering settings (module doc, steps 3–5)."""

    candidates: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8)  # numbers of clusters tried when K is not given
    restarts: int = 8  # k-means seeds per K
    restart_slack: float = 0.1  # restarts within this relative inertia of the best compete on the objective
    kmeans_iters: int = 50
    micro_clusters: int | None = None  # units of the local moves; None: max(4K, ⌈√n⌉)
    move_margin: float = 0.8  # only micro-clusters with d_own >= margin·d_other may move
    max_moves: int = 10_000  # accepted moves ("member_mean") / evaluated moves ("membership")
    cluster_value: str = "member_mean"  # or "membership"
    holdout_folds: int = 5
    k_rule: str = "one-se"  # K among candidates: "one-se" (smallest within a standard error of the lowest) or "lowest"
    features: FeatureConfig = FeatureConfig()

    def __post_init__(self):
        if self.cluster_value not in CLUSTER_VALUES:
            raise ValueError(f"cluster_value: expected one of {CLUSTER_VALUES}, got {self.cluster_value!r}")
        if self.k_rule not in K_RULES:
            raise ValueError(f"k_rule: expected one of {K_RULES}, got {self.k_rule!r}")
        if not self.candidates or any(int(k) < 1 for k in self.candidates):
            raise ValueError(f"candidates: expected numbers of clusters >= 1, got {self.candidates!r}")
        if self.restarts < 1 or self.kmeans_iters < 1 or self.holdout_folds < 2:
            raise ValueError("restarts and kmeans_iters: expected >= 1; holdout_folds: expected >= 2")


@dataclasses.dataclass(frozen=True, eq=False)
class BehaviourFeatures:
    """Behaviour features per individual: `values[j]` describes `ids[j]`."""

    ids: np.ndarray
    values: np.ndarray  # [n, F]
    names: tuple[str, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class ClusterResult:
    """EV-Clustering output. Clusters are numbered best first (cluster 0 has the
    highest EV); `values[j]`/`stderr[j]` are those of the cluster of `ids[j]`."""

    ids: np.ndarray
    labels: np.ndarray
    values: np.ndarray
    stderr: np.ndarray
    counts: np.ndarray  # episodes each individual appeared in
    cluster_values: np.ndarray
    cluster_stderr: np.ndarray
    cluster_sizes: np.ndarray
    objective: float  # variance across individuals of their cluster's EV
    selection: dict  # {"rule": "given" | "held-out error (…)", "scores": {K: held-out RMSE}}
    cluster_value: str = "member_mean"
    score: str | None = None

    @property
    def num_clusters(self) -> int:
        return len(self.cluster_values)

    def as_ev_result(self) -> EVResult:
        """Per-individual values (each its cluster's EV) as an `EVResult`."""
        return EVResult(self.ids, self.values, self.stderr, self.counts, method=f"ev-clustering/{self.cluster_value}",
                        score=self.score)

    def as_dict(self) -> dict:
        """JSON-safe summary (non-finite numbers become None)."""
        return {
            "method": f"ev-clustering/{self.cluster_value}",
            "score": self.score,
            "num_clusters": self.num_clusters,
            "objective": json_float(self.objective),
            "selection": {"rule": self.selection["rule"],
                          "scores": {str(k): json_float(v) for k, v in self.selection["scores"].items()}},
            "clusters": [{"cluster": c, "value": json_float(v), "stderr": json_float(s), "size": int(n)}
                         for c, (v, s, n) in enumerate(zip(self.cluster_values, self.cluster_stderr,
                                                           self.cluster_sizes))],
            "ids": self.ids.tolist(),
            "labels": self.labels.tolist(),
        }


# ---------------------------------------------------------------------------------------
# Randomness: numpy generators seeded from JAX keys
# ---------------------------------------------------------------------------------------


def numpy_rng(key: jax.Array) -> np.random.Generator:
    """A numpy Generator whose seed is drawn from `key` (every random choice flows from a JAX key)."""
    seed = np.asarray(jax.random.randint(key, (2,), 0, np.iinfo(np.int32).max))
    return np.random.default_rng([int(s) for s in seed])


# ---------------------------------------------------------------------------------------
# k-means
# ---------------------------------------------------------------------------------------


def _squared_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return np.maximum(d, 0.0)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [x[rng.integers(len(x))]]
    closest = _squared_distances(x, centres[0][None])[:, 0]
    for _ in range(1, k):
        total = closest.sum()
        index = rng.choice(len(x), p=closest / total) if total > 0 else rng.integers(len(x))
        centres.append(x[index])
        closest = np.minimum(closest, _squared_distances(x, x[index][None])[:, 0])
    return np.stack(centres)


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means from a k-means++ start. Returns (labels [n], centres [k, F]); an
    emptied cluster keeps its previous centre."""
    x = np.asarray(x, dtype=np.float64)
    if not 1 <= k <= len(x):
        raise ValueError(f"num_clusters: expected 1 <= K <= {len(x)} (the number of points), got {k}")
    centres = _kmeans_pp(x, k, rng)
    labels = np.full(len(x), -1)
    for _ in range(iters):
        new_labels = np.argmin(_squared_distances(x, centres), axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        sizes = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, x)
        centres = np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None], centres)
    return labels, centres


# ---------------------------------------------------------------------------------------
# Behaviour features
# ---------------------------------------------------------------------------------------


def _steps_in_chunks(dataset, chunk: int):
    episode_index = dataset.episode_index
    for lo in range(0, dataset.num_steps, chunk):
        hi = min(lo + chunk, dataset.num_steps)
        yield lo, hi, episode_index[lo:hi]


def _fit_obs_bins(dataset, rng: np.random.Generator, config: FeatureConfig):
    """k-means centres of a sample of per-agent observations (scaled per dimension)."""
    obs = dataset.steps["obs"]
    num_rows = dataset.num_steps * dataset.num_agents
    size = min(config.bin_sample, num_rows)
    rows = np.sort(rng.choice(num_rows, size=size, replace=False))
    sample = np.asarray(obs[rows // dataset.num_agents, rows % dataset.num_agents], dtype=np.float64)
    scale = sample.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    bins = min(config.num_obs_bins, size)
    _, centres = kmeans(sample / scale, bins, rng, config.bin_iters)
    return centres, scale


def _discrete_features(dataset, codes: np.ndarray, num_ids: int, rng, config: FeatureConfig):
    centres, scale = _fit_obs_bins(dataset, rng, config)
    bins, actions_n = len(centres), dataset.spec.num_actions
    counts = np.zeros(num_ids * bins * actions_n, dtype=np.float64)
    for lo, hi, episodes in _steps_in_chunks(dataset, config.chunk_steps):
        obs = np.asarray(dataset.steps["obs"][lo:hi], dtype=np.float64) / scale  # [c, A, O]
        flat = obs.reshape(-1, obs.shape[-1])
        obs_bin = np.argmin(_squared_distances(flat, centres), axis=1)
        who = codes[episodes].ravel()  # [c·A]
        action = np.asarray(dataset.steps["actions"][lo:hi]).ravel()
        counts += np.bincount((who * bins + obs_bin) * actions_n + action, minlength=counts.size)
    counts = counts.reshape(num_ids, bins, actions_n)
    own = counts.sum(axis=1)  # [n, nA]: the individual's actions over all bins
    own = own / np.maximum(own.sum(axis=1, keepdims=True), 1.0)
    visits = counts.sum(axis=2, keepdims=True)
    histograms = np.where(visits > 0, counts / np.maximum(visits, 1.0), own[:, None, :])
    names = tuple(f"bin{b}:action{a}" for b in range(bins) for a in range(actions_n))
    return histograms.reshape(num_ids, -1), names


def _grouped_moments(codes_flat: np.ndarray, values: np.ndarray, num_ids: int, sums, squares) -> None:
    for d in range(values.shape[1]):
        sums[:, d] += np.bincount(codes_flat, weights=values[:, d], minlength=num_ids)
        squares[:, d] += np.bincount(codes_flat, weights=values[:, d] ** 2, minlength=num_ids)


def _continuous_features(dataset, codes: np.ndarray, num_ids: int, config: FeatureConfig):
    spec = dataset.spec
    width = spec.num_actions + spec.obs_dim
    sums, squares = np.zeros((num_ids, width)), np.zeros((num_ids, width))
    steps = np.zeros(num_ids)
    for lo, hi, episodes in _steps_in_chunks(dataset, config.chunk_steps):
        actions = np.asarray(dataset.steps["actions"][lo:hi], dtype=np.float64)  # [c, A, D]
        obs = np.asarray(dataset.steps["obs"][lo:hi], dtype=np.float64)  # [c, A, O]
        both = np.concatenate([actions, obs], axis=2).reshape(-1, width)
        who = codes[episodes].ravel()
        steps += np.bincount(who, minlength=num_ids)
        _grouped_moments(who, both, num_ids, sums, squares)
    mean = sums / np.maximum(steps, 1.0)[:, None]
    std = np.sqrt(np.maximum(squares / np.maximum(steps, 1.0)[:, None] - mean**2, 0.0))
    names = tuple([f"action{d}" for d in range(spec.num_actions)] + [f"obs{o}" for o in range(spec.obs_dim)])
    return np.concatenate([mean, std], axis=1), tuple(f"mean:{n}" for n in names) + tuple(f"std:{n}" for n in names)


# Policy-mixture features (module doc, step 1): a mixture of behaviour-cloning policies.


def _policy_rows(dataset, codes: np.ndarray):
    """Every agent decision as a row: standardised observation, action, available
    actions, the individual who made it (index into the ids) and its episode."""
    obs = np.asarray(dataset.steps["obs"], dtype=np.float32)
    obs = obs.reshape(-1, obs.shape[-1])
    scale = obs.std(axis=0)
    obs = (obs - obs.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    actions = np.asarray(dataset.steps["actions"]).reshape(-1).astype(np.int32)
    num_actions = dataset.spec.num_actions
    if "avail" in dataset.steps:
        avail = np.asarray(dataset.steps["avail"]).reshape(-1, num_actions).astype(bool)
    else:
        avail = np.ones((len(actions), num_actions), dtype=bool)
    owner = codes[dataset.episode_index].reshape(-1)
    episode = np.repeat(dataset.episode_index, dataset.num_agents)
    return obs, actions, avail, owner, episode


@functools.partial(jax.jit, static_argnames=("hidden", "updates", "batch", "learning_rate", "weight_decay"))
def _fit_policies(keys, weights, obs, actions, avail, *, hidden, updates, batch, learning_rate, weight_decay):
    """Behaviour cloning of one policy per row of `weights` [P, rows] (vmapped): Adam on
    the negative log-likelihood of the actions, each row weighted (weights of mean 1),
    minibatches drawn uniformly. Returns the parameters, stacked over P."""
    module = MLP(hidden, avail.shape[1])
    optimiser = optax.adamw(learning_rate, weight_decay=weight_decay)

    def fit_one(key, weight):
        init_key, batch_key = jax.random.split(key)
        params = module.init(init_key, obs[:1])

        def loss(params, rows):
            logp = jax.nn.log_softmax(masked_logits(module.apply(params, obs[rows]), avail[rows]))
            nll = -jnp.take_along_axis(logp, actions[rows][:, None], axis=1)[:, 0]
            return jnp.mean(weight[rows] * nll)

        def update(carry, key):
            params, opt_state = carry
            rows = jax.random.randint(key, (batch,), 0, obs.shape[0])
            grads = jax.grad(loss)(params, rows)
            changes, opt_state = optimiser.update(grads, opt_state, params)
            return (optax.apply_updates(params, changes), opt_state), None

        (params, _), _ = jax.lax.scan(update, (params, optimiser.init(params)), jax.random.split(batch_key, updates))
        return params

    return jax.vmap(fit_one)(keys, weights)


@functools.partial(jax.jit, static_argnames=("hidden",))
def _action_log_probs(params, obs, avail, *, hidden):
    """log π_p(· | o) of every policy p for every row: [P, rows, actions]."""
    module = MLP(hidden, avail.shape[1])
    return jax.vmap(lambda p: jax.nn.log_softmax(masked_logits(module.apply(p, obs), avail)))(params)


def _out_of_fold(rows, fold: np.ndarray, weights: np.ndarray, key: jax.Array, config: FeatureConfig):
    """Per row, log π_p(a | o) and the entropy of π_p(· | o) [rows, P] under policies
    fitted, with row weights `weights` [rows, P], on the other folds' episodes only."""
    obs, actions, avail = rows
    loglik = np.zeros(weights.shape)
    entropy = np.zeros_like(loglik)
    for f in range(config.mixture_folds):
        train, test = fold != f, fold == f
        if not test.any():
            continue
        w = weights[train].T
        w = w / np.maximum(w.mean(axis=1, keepdims=True), 1e-12)
        keys = jax.random.split(jax.random.fold_in(key, f), len(w))
        params = _fit_policies(keys, jnp.asarray(w, jnp.float32), jnp.asarray(obs[train]),
                               jnp.asarray(actions[train]), jnp.asarray(avail[train]),
                               hidden=tuple(config.policy_hidden), updates=config.policy_updates,
                               batch=config.policy_batch, learning_rate=config.policy_learning_rate,
                               weight_decay=config.policy_weight_decay)
        logp = np.asarray(_action_log_probs(params, jnp.asarray(obs[test]), jnp.asarray(avail[test]),
                                            hidden=tuple(config.policy_hidden)), dtype=np.float64)
        loglik[test] = np.take_along_axis(logp, actions[test][None, :, None], axis=2)[:, :, 0].T
        entropy[test] = -(np.exp(logp) * np.where(np.isfinite(logp), logp, 0.0)).sum(axis=2).T
    return loglik, entropy


def _policy_mixture(dataset, codes: np.ndarray, num_ids: int, key: jax.Array, config: FeatureConfig):
    """A mixture of behaviour-cloning policies fitted by EM, without labels.

    Start: one policy fitted to all decisions; each individual's mean "surprise" under it,
    log π(a|o) + H(π(·|o)) (the log-likelihood of its actions minus what the pooled
    policy itself would expect in the same states, so states where any policy is
    predictable do not pass for behaviour), ranked into soft initial responsibilities.
    EM rounds: M policies, each fitted to all decisions weighted by their makers'
    responsibilities; an individual's responsibilities are the posterior of its whole
    trajectory, r_im ∝ w_m · Π_t π_m(a_t | o_t). Policies are always fitted on the other
    folds' episodes (cross-fitting), so no individual is scored by a policy that saw it.
    Returns the final responsibilities [n, M] and the mean log-likelihood per decision of
    each individual's actions under each policy of the last round [n, M].
    """
    if not dataset.discrete:
        raise ValueError(f"kind: {config.kind!r} needs discrete actions; use kind='histogram' (moments) "
                         "for continuous actions")
    obs, actions, avail, owner, episode = _policy_rows(dataset, codes)
    fold_key, pooled_key, mixture_key = jax.random.split(key, 3)
    fold = numpy_rng(fold_key).permutation(dataset.num_episodes)[episode] % config.mixture_folds
    rows = (obs, actions, avail)
    steps = np.maximum(np.bincount(owner, minlength=num_ids), 1)

    loglik, entropy = _out_of_fold(rows, fold, np.ones((len(actions), 1)), pooled_key, config)
    surprise = np.bincount(owner, weights=loglik[:, 0] + entropy[:, 0], minlength=num_ids) / steps
    z = _zscore(surprise[:, None])[:, 0]
    centres = np.linspace(-1.0, 1.0, config.mixture_components)
    logpost = -2.0 * (z[:, None] - centres[None, :]) ** 2
    for r in range(config.mixture_rounds):
        responsibility = np.exp(logpost - logpost.max(axis=1, keepdims=True))
        responsibility /= responsibility.sum(axis=1, keepdims=True)
        loglik, _ = _out_of_fold(rows, fold, responsibility[owner], jax.random.fold_in(mixture_key, r), config)
        trajectory = np.stack([np.bincount(owner, weights=loglik[:, m], minlength=num_ids)
                               for m in range(config.mixture_components)], axis=1)
        logpost = trajectory + np.log(np.maximum(responsibility.mean(axis=0), 1e-12))[None, :]
    responsibility = np.exp(logpost - logpost.max(axis=1, keepdims=True))
    responsibility /= responsibility.sum(axis=1, keepdims=True)
    return responsibility, trajectory / steps[:, None]


def _policy_mixture_features(dataset, codes: np.ndarray, num_ids: int, key: jax.Array, config: FeatureConfig):
    """"policy-mixture": the responsibilities r_im of the mixture (`_policy_mixture`)."""
    responsibility, _ = _policy_mixture(dataset, codes, num_ids, key, config)
    return responsibility, tuple(f"policy{m}" for m in range(config.mixture_components))


def _policy_likelihood_features(dataset, codes: np.ndarray, num_ids: int, key: jax.Array, config: FeatureConfig):
    """"policy-likelihood" (module doc, step 1): each individual's mean log-likelihood per
    decision under each policy of the mixture, less its mean over the policies (with two
    policies, a per-decision log-likelihood ratio)."""
    _, per_decision = _policy_mixture(dataset, codes, num_ids, key, config)
    centred = per_decision - per_decision.mean(axis=1, keepdims=True)
    return centred, tuple(f"loglik{m}" for m in range(config.mixture_components))


def _zscore(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def behaviour_features(dataset, key: jax.Array, config: FeatureConfig = FeatureConfig()) -> BehaviourFeatures:
    """Behaviour features of every individual of `dataset.episodes["agent_ids"]` (module
    doc, step 1), of the kind `config.kind` names. "histogram" streams the step arrays in
    chunks and `key` draws the observation sample the bins are fitted on; "policy-mixture"
    holds every decision in memory and `key` draws the folds and the policies' fits."""
    ids, codes = index_ids(dataset.episodes["agent_ids"])
    if config.kind == "policy-mixture":
        values, names = _policy_mixture_features(dataset, codes, len(ids), key, config)
    elif config.kind == "policy-likelihood":
        values, names = _policy_likelihood_features(dataset, codes, len(ids), key, config)
    elif dataset.discrete:
        values, names = _discrete_features(dataset, codes, len(ids), numpy_rng(key), config)
    else:
        values, names = _continuous_features(dataset, codes, len(ids), config)
    default = config.kind == "policy-likelihood" or (config.kind == "histogram" and not dataset.discrete)
    standardise = default if config.standardise is None else config.standardise
    return BehaviourFeatures(ids, _zscore(values) if standardise else values, names)


# ---------------------------------------------------------------------------------------
# The problem: features, groups, scores, per-individual estimates
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class _Problem:
    ids: np.ndarray  # [n]
    features: np.ndarray  # [n, F]
    codes: np.ndarray  # [E, k] into ids
    scores: np.ndarray  # [E]
    individual_ev: np.ndarray  # [n] EV̂_i (dataset estimator)
    counts: np.ndarray  # [n]
    score: str | None


def _align_features(features, ids: np.ndarray) -> np.ndarray:
    if isinstance(features, BehaviourFeatures):
        position = {i: j for j, i in enumerate(features.ids.tolist())}
        missing = [i for i in ids.tolist() if i not in position]
        if missing:
            raise ValueError(f"features: no behaviour features for ids {missing[:5]} (of {len(missing)})")
        return np.asarray(features.values, dtype=np.float64)[[position[i] for i in ids.tolist()]]
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) != len(ids):
        raise ValueError(f"features: expected [n={len(ids)}, F] (one row per unique agent id, sorted as np.unique "
                         f"sorts them), got shape {features.shape}")
    return features


def _problem(data, key: jax.Array, config: ClusterConfig, score: str | None) -> _Problem:
    if isinstance(data, tuple):
        if len(data) != 3:
            raise ValueError("data: expected a Dataset or a tuple (features, agent_ids, scores)")
        features, agent_ids, scores = data
        agent_ids = np.asarray(agent_ids)
        if agent_ids.ndim != 2:
            raise ValueError(f"agent_ids: expected a 2-D array [episodes, group size], got shape {agent_ids.shape}")
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(agent_ids),) or not np.isfinite(scores).all():
            raise ValueError(f"scores: expected {len(agent_ids)} finite scores (one per episode), "
                             f"got shape {scores.shape}")
    else:
        agent_ids, scores = data.episodes["agent_ids"], data.episode_scores(score)
        features = behaviour_features(data, key, config.features)
        score = score or "return"
    ids, codes = index_ids(agent_ids)
    features = _align_features(features, ids)
    if not np.isfinite(features).all():
        raise ValueError("features: expected finite values")
    values, _, counts = membership_contrast(codes, scores, len(ids))
    return _Problem(ids, features, codes, scores, values, counts, score)


# ---------------------------------------------------------------------------------------
# Cluster EVs and the variance objective
# ---------------------------------------------------------------------------------------


def _member_mean(problem: _Problem, labels: np.ndarray, k: int):
    """(values, stderr, sizes) per cluster: mean of members' EV̂, sd/√n_c."""
    use = (labels >= 0) & np.isfinite(problem.individual_ev)
    lab, ev = labels[use], problem.individual_ev[use]
    sizes = np.bincount(lab, minlength=k).astype(np.float64)
    sums = np.bincount(lab, weights=ev, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / sizes
        spread = np.bincount(lab, weights=(ev - means[lab]) ** 2, minlength=k) / (sizes - 1)
        stderr = np.where(sizes >= 2, np.sqrt(spread / sizes), np.inf)
    return np.where(sizes > 0, means, np.nan), np.where(sizes > 0, stderr, np.nan), sizes


def _membership(problem: _Problem, labels: np.ndarray, k: int):
    """(values, stderr, sizes) per cluster: the dataset estimator on cluster membership
    (individuals labelled −1 are nobody's members)."""
    cluster_of = np.where(labels >= 0, labels, k)  # k = "unclustered"
    values, stderr, _ = membership_contrast(cluster_of[problem.codes], problem.scores, k + 1)
    sizes = np.bincount(labels[labels >= 0], minlength=k).astype(np.float64)
    return values[:k], stderr[:k], sizes


def cluster_estimates(problem: _Problem, labels: np.ndarray, k: int, mode: str):
    return (_member_mean if mode == "member_mean" else _membership)(problem, labels, k)


def _objective(values: np.ndarray, sizes: np.ndarray) -> float:
    """Variance across individuals of their cluster's EV (clusters weighted by size)."""
    use = (sizes > 0) & np.isfinite(values)
    if not use.any():
        return 0.0
    w = sizes[use] / sizes[use].sum()
    mean = np.dot(w, values[use])
    return float(np.dot(w, (values[use] - mean) ** 2))


# ---------------------------------------------------------------------------------------
# Partition for a given K: k-means restarts, then local moves of micro-clusters
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class _Partition:
    labels: np.ndarray  # [n] cluster per individual, −1 outside the fitted set
    micro_centres: np.ndarray  # [M, F]
    micro_cluster: np.ndarray  # [M] cluster of each micro-cluster

    def assign(self, features: np.ndarray) -> np.ndarray:
        """Cluster of new individuals: that of their nearest micro-cluster."""
        return self.micro_cluster[np.argmin(_squared_distances(features, self.micro_centres), axis=1)]


def _num_micro_clusters(n: int, k: int, config: ClusterConfig) -> int:
    wanted = config.micro_clusters or max(4 * k, math.ceil(math.sqrt(n)))
    return int(min(n, max(wanted, k)))


def _ambiguous_moves(centres_m: np.ndarray, cluster_m: np.ndarray, centres: np.ndarray, margin: float):
    """(micro-clusters, target clusters) allowed to move: d_own >= margin · d_nearest_other,
    distances from each micro-cluster's centre to the k-means centres."""
    if len(centres) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d = np.sqrt(_squared_distances(centres_m, centres))
    rows = np.arange(len(cluster_m))
    own = d[rows, cluster_m]
    d_other = d.copy()
    d_other[rows, cluster_m] = np.inf
    target = np.argmin(d_other, axis=1)
    ok = own >= margin * d_other[rows, target]
    return rows[ok], target[ok]


def _member_mean_moves(sums_m, sizes_m, cluster_m, movers, targets, k: int, max_moves: int) -> np.ndarray:
    """Greedy best-improvement moves of micro-clusters for the member-mean objective
    Σ_c S_c²/n_c (the variance up to constants), each gain evaluated in O(1)."""
    cluster_m = cluster_m.copy()
    sums = np.bincount(cluster_m, weights=sums_m, minlength=k)
    sizes = np.bincount(cluster_m, weights=sizes_m, minlength=k)
    keep = sizes_m[movers] > 0
    movers, targets = movers[keep], targets[keep]
    pair = np.stack([cluster_m[movers], targets], axis=1)  # a mover may go back and forth between these

    def spread(s, n):
        return np.where(n > 0, s**2 / np.maximum(n, 1e-300), 0.0)

    for _ in range(max_moves):
        if len(movers) == 0:
            break
        s, n, a = sums_m[movers], sizes_m[movers], cluster_m[movers]
        b = np.where(pair[:, 0] == a, pair[:, 1], pair[:, 0])
        gain = spread(sums[a] - s, sizes[a] - n) - spread(sums[a], sizes[a]) \
            + spread(sums[b] + s, sizes[b] + n) - spread(sums[b], sizes[b])
        best = int(np.argmax(gain))
        if gain[best] <= 1e-12 * (1.0 + spread(sums, sizes).sum()):
            break
        m, src, dst = movers[best], a[best], b[best]
        sums[src] -= sums_m[m]
        sizes[src] -= sizes_m[m]
        sums[dst] += sums_m[m]
        sizes[dst] += sizes_m[m]
        cluster_m[m] = dst
    return cluster_m


def _membership_moves(problem: _Problem, fitted: np.ndarray, micro: np.ndarray, cluster_m: np.ndarray, movers,
                      targets, k: int, max_moves: int) -> np.ndarray:
    """First-improvement sweeps of micro-cluster moves for the membership objective (each
    evaluation re-runs the estimator on all episodes; at most `max_moves` evaluations)."""
    def objective(assignment):
        labels = np.full(len(problem.ids), -1)
        labels[fitted] = assignment[micro]
        values, _, sizes = _membership(problem, labels, k)
        return _objective(values, sizes)

    cluster_m = cluster_m.copy()
    pair = np.stack([cluster_m[movers], targets], axis=1) if len(movers) else np.zeros((0, 2), np.int64)
    current, evaluations, improved = objective(cluster_m), 0, True
    while improved and evaluations < max_moves:
        improved = False
        for m, (first, second) in zip(movers, pair):
            if evaluations >= max_moves:
                break
            trial = cluster_m.copy()
            trial[m] = second if cluster_m[m] == first else first
            candidate = objective(trial)
            evaluations += 1
            if candidate > current + 1e-12 * (1.0 + abs(current)):
                cluster_m, current, improved = trial, candidate, True
    return cluster_m


def _best_kmeans(problem: _Problem, x: np.ndarray, fitted: np.ndarray, k: int, key: jax.Array,
                 config: ClusterConfig):
    """Among the k-means restarts whose inertia is within `restart_slack` of the best, the
    one with the highest variance objective: (labels over `fitted`, centres). Restarts
    that partition behaviour clearly worse are not eligible, however high their objective."""
    runs = []
    for restart in range(config.restarts):
        local, centres = kmeans(x, k, numpy_rng(jax.random.fold_in(key, restart)), config.kmeans_iters)
        inertia = float(((x - centres[local]) ** 2).sum())
        labels = np.full(len(problem.ids), -1)
        labels[fitted] = local
        objective = _objective(*cluster_estimates(problem, labels, k, config.cluster_value)[::2])
        runs.append((inertia, objective, local, centres))
    best_inertia = min(run[0] for run in runs)
    eligible = [run for run in runs if run[0] <= best_inertia * (1.0 + config.restart_slack) + 1e-12]
    _, _, local, centres = max(eligible, key=lambda run: run[1])
    return local, centres


def _fit_partition(problem: _Problem, k: int, fitted: np.ndarray, key: jax.Array, config: ClusterConfig) -> _Partition:
    """k-means (best of `restarts` by the objective), then local moves of micro-clusters.

    Micro-clusters are a finer k-means partition of the same features (M ≥ 4K, ≈ √n
    individuals each). Each starts in the cluster most of its members were given, and
    moves between clusters as a whole: a move rests on the mean EV̂ of many
    behaviourally similar individuals rather than on one individual's noisy score.
    """
    x = problem.features[fitted]
    k_key, micro_key = jax.random.split(key)
    local, centres = _best_kmeans(problem, x, fitted, k, k_key, config)
    num_micro = _num_micro_clusters(len(x), k, config)
    micro, micro_centres = kmeans(x, num_micro, numpy_rng(micro_key), config.kmeans_iters)
    votes = np.zeros((num_micro, k))
    np.add.at(votes, (micro, local), 1.0)
    cluster_m = np.argmax(votes, axis=1)
    movers, targets = _ambiguous_moves(micro_centres, cluster_m, centres, config.move_margin)
    if config.cluster_value == "member_mean":
        ev = problem.individual_ev[fitted]
        finite = np.isfinite(ev)
        sums_m = np.bincount(micro[finite], weights=ev[finite], minlength=num_micro)
        sizes_m = np.bincount(micro[finite], minlength=num_micro).astype(np.float64)
        cluster_m = _member_mean_moves(sums_m, sizes_m, cluster_m, movers, targets, k, config.max_moves)
    else:
        cluster_m = _membership_moves(problem, fitted, micro, cluster_m, movers, targets, k, config.max_moves)
    labels = np.full(len(problem.ids), -1)
    labels[fitted] = cluster_m[micro]
    return _Partition(labels, micro_centres, cluster_m)


# ---------------------------------------------------------------------------------------
# Choosing the number of clusters
# ---------------------------------------------------------------------------------------


def _truth_array(true_values, ids: np.ndarray) -> np.ndarray:
    if isinstance(true_values, EVResult):
        return true_values.values_for(ids)
    if isinstance(true_values, Mapping):
        return np.asarray([true_values.get(i, np.nan) for i in ids.tolist()], dtype=np.float64)
    truth = np.asarray(true_values, dtype=np.float64)
    if truth.shape != (len(ids),):
        raise ValueError(f"true_values: expected a mapping id -> value or an array of {len(ids)} values "
                         f"(sorted ids), got shape {truth.shape}")
    return truth


def _first_episode(codes: np.ndarray, num_ids: int) -> np.ndarray:
    """The first episode each individual appears in."""
    _, first = np.unique(codes.ravel(), return_index=True)
    return first // codes.shape[1]


def _folds(problem: _Problem, key: jax.Array, num_folds: int) -> np.ndarray:
    """Fold of every individual. Folds are drawn over episodes (an individual goes with
    its first episode), so the one-time ids of one episode, whose estimates share that
    episode's score, are held out together."""
    episode_fold = numpy_rng(key).permutation(len(problem.scores)) % num_folds
    return episode_fold[_first_episode(problem.codes, len(problem.ids))]


def _held_out_errors(problem: _Problem, targets: np.ndarray, fold: np.ndarray, k: int, key: jax.Array,
                     config: ClusterConfig) -> np.ndarray:
    """Per fold, the RMSE between held-out individuals' targets and the EV of the cluster
    that a partition fitted on the other folds assigns them."""
    errors = []
    for f in range(config.holdout_folds):
        held = np.flatnonzero((fold == f) & np.isfinite(targets))
        fitted = np.flatnonzero(fold != f)
        if len(held) == 0:
            continue
        if len(fitted) < k:
            return np.array([math.inf])
        partition = _fit_partition(problem, k, fitted, jax.random.fold_in(key, f + 1), config)
        values, _, _ = cluster_estimates(problem, partition.labels, k, config.cluster_value)
        predicted = values[partition.assign(problem.features[held])]
        errors.append(estimation_error(predicted, targets[held]) if np.isfinite(predicted).any() else math.inf)
    return np.asarray(errors) if errors else np.array([math.inf])


def _select_num_clusters(problem: _Problem, truth: np.ndarray | None, key: jax.Array, config: ClusterConfig):
    """The candidate K with the lowest mean held-out error ("lowest"), or the smallest
    whose error exceeds the lowest by at most one standard error of their fold-paired
    difference ("one-se") — against the ground truth when given, else against the
    held-out individuals' own estimates EV̂_i (module doc, step 5)."""
    candidates = sorted({int(k) for k in config.candidates if int(k) <= len(problem.ids)})
    if not candidates:
        raise ValueError(f"candidates: none of {config.candidates} fits {len(problem.ids)} individuals")
    targets = problem.individual_ev if truth is None else truth
    if not np.isfinite(targets).any():
        raise ValueError("true_values: no finite value for any individual of the data")
    fold_key, fit_key = jax.random.split(key)
    fold = _folds(problem, fold_key, config.holdout_folds)  # the same folds for every K: paired errors
    folds = {k: _held_out_errors(problem, targets, fold, k, jax.random.fold_in(fit_key, k), config)
             for k in candidates}
    scores = {k: float(np.mean(e)) for k, e in folds.items()}
    best = min(candidates, key=lambda k: (scores[k], k))

    def close_to_best(k: int) -> bool:
        gap = folds[k] - folds[best]  # paired by fold
        if k == best or not np.isfinite(gap).all() or len(gap) != len(folds[best]):
            return k == best
        return gap.mean() <= gap.std(ddof=1) / np.sqrt(len(gap))

    chosen = best if config.k_rule == "lowest" else min(k for k in candidates if close_to_best(k))
    rule = "held-out error (ground truth)" if truth is not None else "held-out error (own estimates)"
    return chosen, rule, scores


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def _best_first(problem: _Problem, labels: np.ndarray, k: int, mode: str):
    """Drop empty clusters and renumber them by decreasing EV."""
    values, stderr, sizes = cluster_estimates(problem, labels, k, mode)
    present = np.flatnonzero(np.bincount(labels, minlength=k) > 0)
    order = present[np.argsort(-np.nan_to_num(values[present], nan=-np.inf), kind="stable")]
    new = np.full(k, -1)
    new[order] = np.arange(len(order))
    return new[labels], values[order], stderr[order], np.bincount(labels, minlength=k)[order]


def ev_cluster(data: Any, num_clusters: int | None = None, key: jax.Array | None = None, *,
               config: ClusterConfig = ClusterConfig(), score: str | None = None,
               true_values: Any = None) -> ClusterResult:
    """EV-Clustering (module doc): per-individual values from the EVs of behaviour clusters.

    `data` is a `teamsift.data.Dataset` (features from `behaviour_features`, scores from
    `score`: None/"return" or a named score) or a tuple `(features, agent_ids, scores)`
    with `features` a `BehaviourFeatures` or an array [n, F] whose rows follow the
    sorted unique agent ids. `num_clusters=None` chooses K among `config.candidates` by
    held-out error against `true_values` (mapping id -> true EV, an `EVResult`, or an
    array over the sorted ids) when given, else against the individuals' own estimates.
    """
    if key is None:
        raise ValueError("key: expected a JAX key (every random choice flows from an explicit key)")
    feature_key, select_key, fit_key = jax.random.split(key, 3)
    problem = _problem(data, feature_key, config, score)
    truth = None if true_values is None else _truth_array(true_values, problem.ids)
    if num_clusters is None:
        num_clusters, rule, scores = _select_num_clusters(problem, truth, select_key, config)
    else:
        if not isinstance(num_clusters, (int, np.integer)) or not 1 <= num_clusters <= len(problem.ids):
            raise ValueError(f"num_clusters: expected an integer in [1, {len(problem.ids)}] (the number of "
                             f"individuals) or None, got {num_clusters!r}")
        rule, scores = "given", {}
    labels = _fit_partition(problem, int(num_clusters), np.arange(len(problem.ids)), fit_key, config).labels
    labels, values, stderr, sizes = _best_first(problem, labels, int(num_clusters), config.cluster_value)
    return ClusterResult(
        ids=problem.ids, labels=labels, values=values[labels], stderr=stderr[labels], counts=problem.counts,
        cluster_values=values, cluster_stderr=stderr, cluster_sizes=sizes,
        objective=_objective(values, sizes.astype(np.float64)),
        selection={"rule": rule, "scores": scores}, cluster_value=config.cluster_value, score=problem.score,
    )
