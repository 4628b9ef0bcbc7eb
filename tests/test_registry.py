"""One registry for the CLI, the benchmarks and the docs: every registered learner trains
through `engine.fit` with 3 seeds (one vmapped program), and every seed's policy acts in the
environment. The engine vmaps every learner over seeds alike, so a single seed (a seed axis
of length 1) is checked on one discrete, one continuous and one imitation learner, not on
every learner."""

import json

import jax
import numpy as np
import pytest

from teamsift import envs
from teamsift.algos import offline_common as oc
from teamsift.algos import pipeline, registry
from teamsift.bench.poly import poly_dataset
from teamsift.collect.datasets import generate_population, scripted_population
from teamsift.collect.scripted import COMMONS_TYPES
from teamsift.data import load_dataset
from teamsift.engine import RunConfig, fit
from teamsift.evaluate import evaluate
from teamsift.value import ardnem

STAGES = {"ardnem": 2, "behaviour": 2}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    env = envs.make("commons")  # a population played in groups: every valuation has something to value
    bank, policy, levels = scripted_population(env, 12, COMMONS_TYPES)
    commons = load_dataset(generate_population(env, bank, policy, levels, jax.random.key(0), root / "commons",
                                               appearances=2))
    poly = poly_dataset("poly_twin_peaks", (0.5, 0.5), 0.1, 64, jax.random.key(0), root / "poly")
    return {"discrete": commons, "continuous": poly}


def test_the_registry_names_every_learner_once_with_its_paper():
    entries = registry.algorithms()
    assert set(registry.names("offline")) == {"bc", "ev2bc", "group_bc", "icq", "mabcq", "macql", "sit", "td3bc",
                                              "omar", "maddpg_cql", "maddpg_cql_pjap"}
    assert set(registry.names("imitation")) == {"magail", "mild2", "mild2_gd"}
    assert set(registry.names("online")) == {"mappo", "ippo", "mat"} and registry.names("valuation") == ("ardnem",)
    for entry in entries.values():
        assert entry.paper and entry.summary and entry.config() is not None
        assert registry.get(entry.name) is entry
    with pytest.raises(ValueError, match="--algo: expected one of bc, ev2bc"):
        registry.get("gail")


ONE_SEED_OFFLINE = ("bc", "td3bc")  # one discrete, one continuous learner
ONE_SEED_IMITATION = ("magail",)


def seed_cases(names, one_seed):
    return [(3, name) for name in names] + [(1, name) for name in one_seed]


@pytest.mark.parametrize(("seeds", "name"), seed_cases(registry.names("offline"), ONE_SEED_OFFLINE))
def test_every_offline_learner_trains_through_fit(datasets, name, seeds):
    entry = registry.get(name)
    dataset = datasets["continuous" if entry.actions == "continuous" else "discrete"]
    run = RunConfig(updates=2, seeds=seeds, log_every=1, progress=False)
    result = pipeline.train(name, dataset, jax.random.key(seeds), run, stage_updates=STAGES)
    assert all(leaf.shape[0] == seeds for leaf in jax.tree.leaves(result.fit.state))
    assert result.fit.history["update"].tolist() == [1, 2]
    assert result.fit.history[result.fit.learner.headline].shape == (seeds, 2)
    assert np.all(np.isfinite(result.fit.final()))
    env = pipeline.dataset_env(dataset)
    for policy in result.policies():
        assert np.isfinite(evaluate(env, policy, jax.random.key(0), 2).team_return.mean)


@pytest.mark.parametrize("seeds", [1, 3])
def test_ardnem_trains_through_fit(datasets, seeds):
    dataset = datasets["discrete"]
    config = ardnem.ARDNEMConfig(ensemble_size=2)
    result = fit(ardnem.learner(config, dataset), dataset, jax.random.key(0),
                 RunConfig(updates=2, seeds=seeds, log_every=1, progress=False))
    assert all(leaf.shape[0] == seeds for leaf in jax.tree.leaves(result.state))
    assert result.history["probe_slot_mean"].shape == (seeds, 2, 3)  # per slot, at every log point
    if seeds == 1:
        assert ardnem.result(config, result, dataset).priority.shape == (dataset.num_episodes, 3)


@pytest.mark.slow
@pytest.mark.parametrize(("seeds", "name"), seed_cases(registry.names("imitation"), ONE_SEED_IMITATION))
def test_every_imitation_learner_trains_through_fit(datasets, name, seeds):
    dataset = datasets["discrete"]
    config = pipeline.imitation_config(name, "commons", timesteps=2 * 8 * 4, overrides={
        "generator.num_envs": 8, "generator.rollout_length": 4, "generator.num_checkpoints": 2,
        "disc_batch_size": 16})
    result = pipeline.imitate(name, dataset, jax.random.key(seeds), RunConfig(updates=0, seeds=seeds, log_every=1,
                                                                              progress=False), config=config)
    assert result.fit.updates == config.generator.num_updates == 2
    assert all(leaf.shape[0] == seeds for leaf in jax.tree.leaves(result.fit.state))
    for policy in result.fit.policies():
        assert np.isfinite(evaluate(envs.make("commons"), policy, jax.random.key(0), 2).team_return.mean)


def test_the_run_directory_records_the_settings_the_data_decided(datasets, tmp_path):
    """ICQ's reward_scale=None is read from the data when the learner is built: config.json keeps
    the setting as asked (compared on --resume) and what it became under "resolved"."""
    dataset = datasets["discrete"]
    run = RunConfig(updates=1, seeds=1, progress=False, run_dir=str(tmp_path / "icq"))
    result = pipeline.train("icq", dataset, jax.random.key(0), run)
    recorded = json.loads((tmp_path / "icq" / "config.json").read_text())
    scale = oc.smac_reward_scale(dataset)
    assert scale != 1.0  # the commons' returns exceed SMAC's 20, so the data decides something
    asked = recorded["hyperparameters"]
    assert asked["reward_scale"] is None and asked["reward_scale_rule"] == "smac"
    assert recorded["resolved"] == {"reward_scale": scale} and result.fit.learner.config.reward_scale == scale
