"""Importers: npz archives and flashbax/OG-MARL vaults (written here with tensorstore)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from teamsift import data
from teamsift.data import importers
from teamsift.data.testing import tiny_spec, write_flashbax_vault
from teamsift.envs import Env

# ---------------------------------------------------------------------------------------
# npz
# ---------------------------------------------------------------------------------------


def _npz_arrays(discrete=True, lengths=(3, 4, 2), a=2, o=3, seed=0):
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    out = {
        "obs": rng.normal(size=(n, a, o)).astype(np.float32),
        "reward": rng.normal(size=n).astype(np.float32),
        "episode_lengths": np.asarray(lengths, np.int64),
    }
    if discrete:
        out["actions"] = rng.integers(0, 4, size=(n, a))
    else:
        out["actions"] = rng.uniform(-1, 1, size=(n, a, 2)).astype(np.float32)
    return out


def test_npz_minimal_discrete(tmp_path):
    arrs = _npz_arrays()
    arrs["actions"][0, 0] = 4  # nA inferred as max + 1 = 5
    np.savez(tmp_path / "x.npz", **arrs)
    ds = data.load_dataset(data.import_npz(tmp_path / "x.npz", tmp_path / "ds"))
    assert ds.spec.env_id == "custom" and ds.spec.discrete and ds.spec.num_actions == 5
    assert ds.spec.episode_length == 4 and ds.num_steps == 9 and ds.num_agents == 2
    np.testing.assert_array_equal(ds.steps["obs"], arrs["obs"])
    np.testing.assert_array_equal(ds.steps["state"], arrs["obs"].reshape(9, 6))
    np.testing.assert_array_equal(ds.steps["actions"], arrs["actions"])
    last = np.array([2, 6, 8])
    np.testing.assert_array_equal(ds.steps["final_obs"], arrs["obs"][last])
    np.testing.assert_array_equal(ds.steps["terminated"], np.isin(np.arange(9), last))
    assert not ds.steps["truncated"].any() and ds.steps["avail"].all()
    np.testing.assert_array_equal(ds.episodes["agent_ids"][1], ["e1_s0", "e1_s1"])
    prov = ds.meta["provenance"]
    assert prov["source"] == "npz" and prov["state_from_obs"] and len(prov["sha256"]) == 64


def test_npz_full_continuous(tmp_path):
    arrs = _npz_arrays(discrete=False)
    rng = np.random.default_rng(1)
    arrs.update(
        state=rng.normal(size=(9, 5)),  # float64, converted
        truncated=np.isin(np.arange(9), [6]),
        final_obs=rng.normal(size=(3, 2, 3)).astype(np.float32),
        final_state=rng.normal(size=(3, 5)).astype(np.float32),
        agent_ids=np.asarray([["ann", "bob"], ["bob", "cy"], ["ann", "cy"]]),
        behaviour=np.asarray([["expert", "random"], ["random", "medium"], ["expert", "medium"]]),
        score_coverage=np.asarray([0.1, 0.5, 0.9]),
        score_incidents=np.asarray([3, 0, 1]),
    )
    np.savez_compressed(tmp_path / "x.npz", **arrs)
    ds = data.load_dataset(data.import_npz(tmp_path / "x.npz", tmp_path / "ds", env_id="my_env", discount=0.95))
    assert ds.spec.env_id == "my_env" and not ds.spec.discrete and ds.spec.num_actions == 2
    assert ds.discount == 0.95 and ds.score_names == ("coverage", "incidents")
    np.testing.assert_array_equal(ds.steps["state"], arrs["state"].astype(np.float32))
    np.testing.assert_array_equal(ds.steps["final_obs"], arrs["final_obs"])
    np.testing.assert_array_equal(ds.steps["truncated"], np.isin(np.arange(9), [6]))
    np.testing.assert_array_equal(ds.steps["terminated"], np.isin(np.arange(9), [2, 8]))
    np.testing.assert_array_equal(ds.episodes["agent_ids"], arrs["agent_ids"])
    np.testing.assert_array_equal(ds.episodes["behaviour"], arrs["behaviour"])
    np.testing.assert_array_equal(ds.score("incidents"), [3.0, 0.0, 1.0])
    assert set(importers.NPZ_KEYS) >= {"obs", "actions", "reward", "episode_lengths", "state", "avail",
                                      "terminated", "agent_ids", "behaviour", "score_<name>"}


def test_npz_checked_against_registered_spec(tmp_path, monkeypatch):
    spec = tiny_spec(discrete=True, num_agents=2, obs_dim=3, state_dim=6, num_actions=4, env_id="tiny_reg")
    env = Env(spec=spec, reset=lambda k: None, step=lambda k, s, a: None, kwargs={"size": 2})
    from teamsift.envs import registry

    monkeypatch.setattr(registry, "entry", lambda env_id: object() if env_id == "tiny_reg" else (_ for _ in ()).throw(KeyError(env_id)))
    monkeypatch.setattr(registry, "make", lambda env_id, **kw: env)
    arrs = _npz_arrays()
    np.savez(tmp_path / "ok.npz", **arrs)
    ds = data.load_dataset(data.import_npz(tmp_path / "ok.npz", tmp_path / "ds", env_id="tiny_reg"))
    assert ds.spec == spec and ds.meta["env_kwargs"] == {"size": 2}
    assert ds.meta["provenance"]["spec_source"] == "registry"
    bad = dict(arrs, obs=np.zeros((9, 2, 5), np.float32))
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(data.DatasetError, match=r"bad\.npz: field 'obs' expected shape \[N, A=2, O=3\]"):
        data.import_npz(tmp_path / "bad.npz", tmp_path / "ds2", env_id="tiny_reg")
    bad = dict(arrs)
    bad["actions"] = bad["actions"].copy()
    bad["actions"][5, 1] = 7
    np.savez(tmp_path / "bad2.npz", **bad)
    with pytest.raises(data.DatasetError, match=r"bad2\.npz: field 'actions' expected discrete actions in \[0"):
        data.import_npz(tmp_path / "bad2.npz", tmp_path / "ds3", env_id="tiny_reg")
    assert not (tmp_path / "ds2").exists() and not (tmp_path / "ds3").exists()


# ---------------------------------------------------------------------------------------
# flashbax / OG-MARL vault
# ---------------------------------------------------------------------------------------


def _vault_leaves(discrete=True, b=2, t=12, n=3, o=4, s=5, na=3, seed=0):
    rng = np.random.default_rng(seed)
    term = np.zeros((b, t, n), np.float32)
    trunc = np.zeros((b, t, n), np.float32)
    # stream 0: episodes end at t=3 (terminal) and t=8 (truncation); steps 9.. unfinished
    term[0, 3] = 1
    trunc[0, 8] = 1
    # stream 1: episodes end at t=5 (terminal) and t=9 (terminal); steps 10, 11 unfinished
    term[1, 5] = 1
    term[1, 9] = 1
    team = rng.normal(size=(b, t)).astype(np.float32)
    leaves = {
        "observations": rng.normal(size=(b, t, n, o)).astype(np.float32),
        "rewards": np.repeat(team[..., None], n, axis=-1),
        "terminals": term,
        "truncations": trunc,
        "infos.state": rng.normal(size=(b, t, s)).astype(np.float32),
    }
    if discrete:
        leaves["actions"] = rng.integers(0, na, size=(b, t, n)).astype(np.int32)
        leaves["infos.legals"] = np.ones((b, t, n, na), np.float32)
    else:
        leaves["actions"] = rng.uniform(-1, 1, size=(b, t, n, 2)).astype(np.float32)
    return leaves, team


@pytest.mark.parametrize("discrete", [True, False])
def test_vault_round_trip(tmp_path, discrete):
    leaves, team = _vault_leaves(discrete)
    # written length 11 of a capacity of 16: step 11 must not be read
    write_flashbax_vault(tmp_path / "vaults" / "smac_3m" / "20240101", leaves, vault_index=11, time_capacity=16,
                         extra_metadata={"og_marl": "test"})
    out = data.import_vault(tmp_path / "vaults" / "smac_3m", tmp_path / "ds")
    ds = data.load_dataset(out)
    # episodes: (0, 0..3), (0, 4..8), (1, 0..5), (1, 6..9); unfinished (0, 9..10), (1, 10) dropped
    np.testing.assert_array_equal(ds.lengths, [4, 5, 6, 4])
    bi = np.array([0] * 9 + [1] * 10)
    ti = np.concatenate([np.arange(9), np.arange(10)])
    np.testing.assert_array_equal(ds.steps["obs"], leaves["observations"][bi, ti])
    np.testing.assert_array_equal(ds.steps["state"], leaves["infos.state"][bi, ti])
    np.testing.assert_array_equal(ds.steps["reward"], team[bi, ti])
    np.testing.assert_array_equal(ds.steps["actions"], leaves["actions"][bi, ti])
    last = np.array([3, 8, 14, 18])
    np.testing.assert_array_equal(np.flatnonzero(ds.steps["terminated"]), [3, 14, 18])
    np.testing.assert_array_equal(np.flatnonzero(ds.steps["truncated"]), [8])
    np.testing.assert_array_equal(ds.steps["final_obs"], ds.steps["obs"][last])
    assert ds.spec.discrete == discrete and ds.spec.num_agents == 3 and ds.spec.state_dim == 5
    if discrete:
        assert ds.steps["avail"].all() and ds.spec.num_actions == 3
    prov = ds.meta["provenance"]
    assert prov["source"] == "flashbax-vault" and prov["incomplete_steps_dropped"] == 3
    assert prov["reward_reduce"] == "first" and prov["vault_metadata"]["og_marl"] == "test"
    assert prov["vault_metadata"]["version"] == 1.2


def test_vault_options_and_uids(tmp_path):
    leaves, team = _vault_leaves(True)
    base = tmp_path / "vaults" / "task"
    write_flashbax_vault(base / "uid_a", leaves, vault_index=12)
    write_flashbax_vault(base / "uid_b", leaves, vault_index=4, version=1.0)
    with pytest.raises(data.DatasetError, match="vault_uid"):
        data.import_vault(base, tmp_path / "x")
    ds = data.load_dataset(data.import_vault(base, tmp_path / "keep", vault_uid="uid_a", drop_incomplete=False))
    np.testing.assert_array_equal(ds.lengths, [4, 5, 3, 6, 4, 2])
    np.testing.assert_array_equal(np.flatnonzero(ds.steps["truncated"]), [8, 11, 23])
    ds_b = data.load_dataset(data.import_vault(base / "uid_b", tmp_path / "b"))
    np.testing.assert_array_equal(ds_b.lengths, [4])  # only 4 steps written; stream 1 has no finished episode
    # per-agent rewards that differ are averaged ("auto" -> "mean")
    leaves2 = dict(leaves, rewards=leaves["rewards"] * np.array([1.0, 2.0, 3.0], np.float32))
    write_flashbax_vault(tmp_path / "v2", leaves2, vault_index=12)
    ds2 = data.load_dataset(data.import_vault(tmp_path / "v2", tmp_path / "ds2"))
    assert ds2.meta["provenance"]["reward_reduce"] == "mean"
    np.testing.assert_allclose(ds2.steps["reward"][:4], 2 * team[0, :4], rtol=1e-6)


def test_vault_errors(tmp_path):
    leaves, _ = _vault_leaves(True)
    root = write_flashbax_vault(tmp_path / "v", leaves, vault_index=12)
    meta = json.loads((root / "metadata.json").read_text())
    meta["version"] = 2.0
    (root / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(data.DatasetError, match=r"metadata\.json: field 'version'"):
        data.import_vault(root, tmp_path / "x")
    meta["version"] = 1.2
    del meta["structure_shape"]["actions"]
    (root / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(data.DatasetError, match=r"field 'actions\.'"):
        data.import_vault(root, tmp_path / "x")
    bad = dict(leaves)
    bad["observations"] = bad["observations"].copy()
    bad["observations"][1, 2, 0, 0] = np.nan
    root = write_flashbax_vault(tmp_path / "nan", bad, vault_index=12)
    with pytest.raises(data.DatasetError, match=r"observations\.: field 'observations\.' expected finite values"):
        data.import_vault(root, tmp_path / "x")
    with pytest.raises(data.DatasetError, match="vault"):
        data.import_vault(tmp_path / "nowhere", tmp_path / "x")
    assert not (tmp_path / "x").exists()
