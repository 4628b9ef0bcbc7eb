"""EV-Clustering on incomplete / anonymised data (Select to Perfect; methods.md §1)."""

import json

import jax
import numpy as np
import pytest

from teamsift import envs
from teamsift.collect.datasets import generate_population, scripted_population
from teamsift.data import load_dataset
from teamsift.data.testing import cue_dataset
from teamsift.value.accuracy import aligned, auc, estimation_error, ground_truth_levels, true_individuals
from teamsift.value.clustering import (
    BehaviourFeatures, ClusterConfig, FeatureConfig, _member_mean_moves, behaviour_features, ev_cluster, kmeans, numpy_rng,
)
from teamsift.value.exchange import dataset_ev, dataset_ev_from, exact_ev
from teamsift.value.simulate import group_scorer


def anonymised_population(seed, latent=30, group_size=3, episodes=200, type_value=(-2.0, 0.0, 2.0),
                          score_noise=1.0, feature_noise=0.5):
    """Additive scores of latent individuals of three types, seen under one-time ids; each
    appearance's behaviour features are drawn around its type's prototype. Returns
    (features [ids sorted], agent_ids [E, k], scores [E], true EV per sorted id, type per sorted id)."""
    rng = np.random.default_rng(seed)
    types = np.arange(latent) % len(type_value)
    a = np.asarray(type_value)[types]
    groups = np.argsort(rng.random((episodes, latent)), axis=1)[:, :group_size]
    scores = a[groups].sum(axis=1) + rng.normal(0.0, score_noise, episodes)
    agent_ids = np.array([f"anon{m:04d}_{s}" for m in range(episodes) for s in range(group_size)])
    agent_ids = agent_ids.reshape(episodes, group_size)
    who = groups.ravel()  # agent_ids.ravel() is already sorted
    features = 3.0 * np.eye(len(type_value))[types[who]] + rng.normal(0.0, feature_noise, (len(who), len(type_value)))
    true_ev = latent / (latent - 1) * (a - a.mean())  # additive game: n/(n−1)·(a_i − ā)
    return features, agent_ids, scores, true_ev[who], types[who]


def test_clustering_lowers_the_estimation_error_on_anonymised_data():
    features, agent_ids, scores, truth, types = anonymised_population(0)
    unclustered = estimation_error(dataset_ev(agent_ids, scores).values, truth)
    result = ev_cluster((features, agent_ids, scores), 3, jax.random.key(0))
    assert estimation_error(result.values, truth) < 0.25 * unclustered
    # The clusters are the types, numbered best first.
    for c in range(3):
        assert len(np.unique(types[result.labels == c])) == 1
    assert list(types[[np.flatnonzero(result.labels == c)[0] for c in range(3)]]) == [2, 1, 0]
    assert (np.diff(result.cluster_values) < 0).all() and result.cluster_sizes.sum() == len(truth)
    np.testing.assert_allclose(result.values, result.cluster_values[result.labels])
    json.dumps(result.as_dict(), allow_nan=False)
    ev = result.as_ev_result()
    assert ev.method == "ev-clustering/member_mean" and (ev.counts == 1).all()


def test_number_of_clusters_by_held_out_error():
    features, agent_ids, scores, truth, _ = anonymised_population(1)
    config = ClusterConfig(candidates=(1, 2, 3, 4, 6))
    with_truth = ev_cluster((features, agent_ids, scores), None, jax.random.key(1), config=config,
                            true_values=dict(zip(np.sort(agent_ids.ravel()).tolist(), truth)))
    assert with_truth.num_clusters == 3 and with_truth.selection["rule"] == "held-out error (ground truth)"
    assert with_truth.selection["scores"][3] < with_truth.selection["scores"][1]
    # Without ground truth the held-out targets are the individuals' own noisy estimates.
    without = ev_cluster((features, agent_ids, scores), None, jax.random.key(1), config=config)
    assert without.num_clusters >= 3 and without.selection["rule"] == "held-out error (own estimates)"
    unclustered = estimation_error(dataset_ev(agent_ids, scores).values, truth)
    assert estimation_error(without.values, truth) < 0.4 * unclustered


def test_membership_cluster_values_keep_the_order_of_the_types():
    features, agent_ids, scores, truth, types = anonymised_population(2)
    config = ClusterConfig(cluster_value="membership", max_moves=50)
    result = ev_cluster((features, agent_ids, scores), 3, jax.random.key(2), config=config)
    for c in range(3):
        assert len(np.unique(types[result.labels == c])) == 1
    assert result.cluster_values[0] > 0 > result.cluster_values[2]
    assert np.isfinite(result.cluster_stderr).all()


def test_local_moves_only_raise_the_variance_objective():
    # Two clusters; micro-cluster 2 (high EVs) starts in the low cluster and may move.
    sums = np.array([10.0, -8.0, 9.0, -9.0])
    sizes = np.array([5.0, 4.0, 5.0, 5.0])
    start = np.array([0, 1, 1, 1])

    def objective(cluster):
        s, n = np.bincount(cluster, weights=sums, minlength=2), np.bincount(cluster, weights=sizes, minlength=2)
        return (s**2 / n).sum()

    moved = _member_mean_moves(sums, sizes, start, np.array([2, 3]), np.array([0, 0]), 2, max_moves=10)
    assert list(moved) == [0, 1, 0, 1] and objective(moved) > objective(start)
    # A move that lowers the objective is not made.
    assert list(_member_mean_moves(sums, sizes, moved, np.array([3]), np.array([0]), 2, 10)) == [0, 1, 0, 1]


def test_kmeans_is_reproducible_from_a_key():
    x = np.concatenate([np.zeros((20, 2)), np.ones((20, 2)) * 5]) + np.random.default_rng(0).normal(0, 0.1, (40, 2))
    labels, centres = kmeans(x, 2, numpy_rng(jax.random.key(4)))
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1 and labels[0] != labels[-1]
    np.testing.assert_array_equal(labels, kmeans(x, 2, numpy_rng(jax.random.key(4)))[0])


def test_bad_input_raises_value_errors():
    features, agent_ids, scores, _, _ = anonymised_population(3, episodes=20)
    with pytest.raises(ValueError, match="features"):
        ev_cluster((features[:-1], agent_ids, scores), 2, jax.random.key(0))
    with pytest.raises(ValueError, match="num_clusters"):
        ev_cluster((features, agent_ids, scores), 0, jax.random.key(0))
    with pytest.raises(ValueError, match="key"):
        ev_cluster((features, agent_ids, scores), 2)
    with pytest.raises(ValueError, match="scores"):
        ev_cluster((features, agent_ids, scores[:-1]), 2, jax.random.key(0))
    with pytest.raises(ValueError, match="cluster_value"):
        ClusterConfig(cluster_value="median")
    named = BehaviourFeatures(np.sort(agent_ids.ravel())[:-1], features[:-1], ("f0", "f1", "f2"))
    with pytest.raises(ValueError, match="no behaviour features"):
        ev_cluster((named, agent_ids, scores), 2, jax.random.key(0))


# --- real environment data: anonymised Tragedy of the Commons -------------------------------


@pytest.fixture(scope="module")
def anonymised_commons(tmp_path_factory):
    env = envs.make("commons")
    bank, policy, level = scripted_population(env, 12, ("sustainable", "adaptive", "greedy", "erratic"))
    path = generate_population(env, bank, policy, level, jax.random.key(0),
                               tmp_path_factory.mktemp("pop") / "anonymous", appearances=6, anonymise=True)
    # Ground truth: exact EVs of the 12 true individuals, every group of 3 simulated.
    exact = exact_ev(12, 3, group_scorer(env, bank, policy, jax.random.key(9), score="v_final"))
    return load_dataset(path), exact


def test_behaviour_features_tell_scripted_types_apart(anonymised_commons):
    dataset, _ = anonymised_commons
    features = behaviour_features(dataset, jax.random.key(0))
    levels = aligned(ground_truth_levels(dataset), features.ids)
    assert features.values.shape == (72, len(features.names)) and len(features.ids) == 72
    for kind in ("sustainable", "greedy"):  # deterministic types act the same everywhere
        rows = features.values[levels == kind]
        np.testing.assert_allclose(rows, np.broadcast_to(rows[0], rows.shape))
    distance = np.abs(features.values[levels == "sustainable"][0] - features.values[levels == "greedy"][0]).sum()
    assert distance > 1.0


def test_ev_clustering_on_anonymised_commons_beats_one_time_ids(anonymised_commons):
    dataset, exact = anonymised_commons
    who = true_individuals(dataset)  # one-time id -> "indNN"
    single = dataset_ev_from(dataset, "v_final")
    truth = np.array([exact.values[int(who[i][3:])] for i in single.ids])
    result = ev_cluster(dataset, 4, jax.random.key(1), score="v_final")
    assert result.score == "v_final"
    np.testing.assert_array_equal(result.ids, single.ids)
    assert estimation_error(result.values, truth) < 0.65 * estimation_error(single.values, truth)
    levels = aligned(ground_truth_levels(dataset), result.ids)
    greedy_clusters = np.unique(result.labels[levels == "greedy"])
    assert len(greedy_clusters) == 1 and not np.isin(levels[result.labels == greedy_clusters[0]], "sustainable").any()
    assert result.values[levels == "sustainable"].mean() > result.values[levels == "greedy"].mean()
    chosen = ev_cluster(dataset, None, jax.random.key(1), score="v_final")
    assert estimation_error(chosen.values, truth) < estimation_error(single.values, truth)


def test_continuous_features_are_per_individual_moments(tmp_path):
    from teamsift.data import write_dataset
    from teamsift.data.testing import make_arrays, tiny_spec

    spec = tiny_spec(discrete=False, num_actions=2)
    path = write_dataset(tmp_path / "continuous", **make_arrays(spec, [8, 5, 7, 8, 6, 8], seed=1))
    dataset = load_dataset(path)
    features = behaviour_features(dataset, jax.random.key(0), FeatureConfig(standardise=False))
    who = dataset.episodes["agent_ids"][dataset.episode_index]  # [N, A]
    joint = np.concatenate([np.asarray(dataset.steps["actions"]), np.asarray(dataset.steps["obs"])], axis=2)
    for row, name in enumerate(features.ids):
        mine = joint[who == name]
        np.testing.assert_allclose(features.values[row], np.concatenate([mine.mean(0), mine.std(0)]), atol=1e-5)
    result = ev_cluster(dataset, 2, jax.random.key(0), score="coverage")
    assert result.score == "coverage" and result.cluster_sizes.sum() == len(features.ids)


# --- policy-mixture features: behaviour that only shows in (observation, action) pairs -------


def test_policy_mixture_features_see_behaviour_the_histograms_miss(tmp_path):
    dataset = cue_dataset(tmp_path / "cue")
    follows = aligned(ground_truth_levels(dataset), np.unique(dataset.episodes["agent_ids"])) == "expert"
    mixture = FeatureConfig(kind="policy-mixture", policy_hidden=(32,), policy_updates=300)

    def agreement(values):  # of a 2-means split with the kinds, at least 0.5
        labels, _ = kmeans(values, 2, numpy_rng(jax.random.key(5)))
        return max(np.mean(labels == follows), np.mean(labels != follows))

    histograms = behaviour_features(dataset, jax.random.key(0))
    policies = behaviour_features(dataset, jax.random.key(0), mixture)
    assert policies.names == ("policy0", "policy1") and np.allclose(policies.values.sum(axis=1), 1.0)
    assert agreement(histograms.values) < 0.8  # the same action histogram in every observation bin
    assert agreement(policies.values) > 0.95  # one mixture policy per kind
    # EV-Clustering (2 clusters) then values the followers above the random individuals.
    aucs = [auc(ev_cluster((features, dataset.episodes["agent_ids"], dataset.episode_scores("coverage")), 2,
                           jax.random.key(1)).values, follows, ~follows) for features in (histograms, policies)]
    assert aucs[0] < 0.8 and aucs[1] > 0.95


def test_policy_likelihood_features_keep_the_grades_the_responsibilities_lose(tmp_path):
    """Three grades of cue followers (never, half, 90% of the steps): a two-policy mixture's
    responsibilities put each individual in one camp, so three clusters cannot find the
    middle grade; the per-decision log-likelihoods keep where it lies between the policies,
    and the "lowest" K rule then cuts that axis into more than two clusters. (Margins hold
    over three data seeds and two feature keys: Spearman at K = 3 0.87–0.92 against
    0.83–0.84, lowest-K Spearman 0.89–0.91.)"""
    from scipy.stats import spearmanr

    grades = {"random": 0.0, "medium": 0.5, "expert": 0.9}
    dataset = cue_dataset(tmp_path / "graded", episodes=200, levels=grades)
    levels = aligned(ground_truth_levels(dataset), np.unique(dataset.episodes["agent_ids"]))
    grade = np.vectorize(grades.get)(levels)
    problem = (dataset.episodes["agent_ids"], dataset.episode_scores("coverage"))
    features = {kind: behaviour_features(dataset, jax.random.key(0), FeatureConfig(kind=kind, policy_hidden=(32,),
                                                                                 policy_updates=300))
                for kind in ("policy-mixture", "policy-likelihood")}
    likelihood = features["policy-likelihood"]
    assert likelihood.names == ("loglik0", "loglik1") and np.allclose(likelihood.values.mean(axis=0), 0.0)
    three = {kind: spearmanr(ev_cluster((f, *problem), 3, jax.random.key(1)).values, grade)[0]
             for kind, f in features.items()}
    assert three["policy-likelihood"] > 0.85 and three["policy-likelihood"] > three["policy-mixture"] + 0.02
    chosen = {rule: ev_cluster((likelihood, *problem), None, jax.random.key(1), config=ClusterConfig(k_rule=rule))
              for rule in ("one-se", "lowest")}
    assert chosen["lowest"].num_clusters >= max(3, chosen["one-se"].num_clusters)
    assert spearmanr(chosen["lowest"].values, grade)[0] > 0.85
    assert auc(chosen["lowest"].values, levels == "expert", levels == "random") > 0.99
    with pytest.raises(ValueError, match="k_rule: expected one of"):
        ClusterConfig(k_rule="smallest")


def test_policy_mixture_features_refuse_continuous_actions_and_bad_settings(tmp_path):
    from teamsift.data import write_dataset
    from teamsift.data.testing import make_arrays, tiny_spec

    spec = tiny_spec(discrete=False, num_actions=2)
    dataset = load_dataset(write_dataset(tmp_path / "continuous", **make_arrays(spec, [6, 5, 7], seed=1)))
    with pytest.raises(ValueError, match="kind: 'policy-mixture' needs discrete actions"):
        behaviour_features(dataset, jax.random.key(0), FeatureConfig(kind="policy-mixture"))
    with pytest.raises(ValueError, match="kind: expected one of"):
        FeatureConfig(kind="embedding")
    with pytest.raises(ValueError, match="mixture_components"):
        FeatureConfig(kind="policy-mixture", mixture_components=1)
