"""Importers: npz archives; flashbax/OG-MARL vaults (written with tensorstore, and by flashbax itself); export_vault."""

from __future__ import annotations

import json

import numpy as np
import pytest

from teamsift import data
from teamsift.data import importers
from teamsift.data.testing import make_arrays, tiny_spec, write_flashbax_vault
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


# ---------------------------------------------------------------------------------------
# vaults written and read by flashbax itself (OG-MARL's way), and `export_vault`
# ---------------------------------------------------------------------------------------


def _og_marl_episodes(seed=0, n=3, o=4, s=5, na=3, lengths=(4, 6, 3)):
    """Episodes as OG-MARL stores them: per-agent rewards and 0/1 float flags, legals, state."""
    rng = np.random.default_rng(seed)
    episodes = []
    for length in lengths:
        terminals = np.zeros((length, n), np.float32)
        terminals[-1] = 1.0
        team = rng.normal(size=length).astype(np.float32)
        actions = rng.integers(0, na, size=(length, n)).astype(np.int32)
        legals = (rng.random((length, n, na)) < 0.7).astype(np.float32)
        np.put_along_axis(legals, actions[..., None], 1.0, axis=-1)  # the logged action was available
        episodes.append({
            "observations": rng.normal(size=(length, n, o)).astype(np.float32),
            "actions": actions,
            "rewards": np.repeat(team[:, None], n, axis=1),
            "terminals": terminals,
            "truncations": np.zeros((length, n), np.float32),
            "infos": {"legals": legals,
                      "state": rng.normal(size=(length, s)).astype(np.float32)},
        })
    return episodes


def test_vault_written_by_flashbax_is_imported(tmp_path):
    import flashbax as fbx
    import jax
    from flashbax.vault import Vault

    episodes = _og_marl_episodes()
    tail = _og_marl_episodes(seed=1, lengths=(2,))[0]  # written, but its episode never ends
    tail["terminals"][:] = 0.0
    # As OG-MARL converts its datasets: a flat buffer, episodes added as sequences, one
    # `Vault.write` (one `add` here for all of them: one compilation instead of four).
    buffer = fbx.make_flat_buffer(max_length=64, min_length=1, sample_batch_size=1, add_sequences=True,
                                  add_batch_size=None)
    state = buffer.init(jax.tree.map(lambda x: x[0], episodes[0]))
    state = buffer.add(state, jax.tree.map(lambda *xs: np.concatenate(xs), *episodes, tail))
    vault = Vault(vault_name="smac_v1_3m.vlt", experience_structure=state.experience, rel_dir=str(tmp_path),
                  vault_uid="Good", metadata={"scenario": "3m"})
    assert vault.write(state) == 15

    ds = data.load_dataset(data.import_vault(tmp_path / "smac_v1_3m.vlt", tmp_path / "ds"))
    np.testing.assert_array_equal(ds.lengths, [4, 6, 3])

    def cat(get):
        return np.concatenate([get(e) for e in episodes])

    np.testing.assert_array_equal(ds.steps["obs"], cat(lambda e: e["observations"]))
    np.testing.assert_array_equal(ds.steps["actions"], cat(lambda e: e["actions"]))
    np.testing.assert_array_equal(ds.steps["reward"], cat(lambda e: e["rewards"][:, 0]))
    np.testing.assert_array_equal(ds.steps["state"], cat(lambda e: e["infos"]["state"]))
    np.testing.assert_array_equal(ds.steps["avail"], cat(lambda e: e["infos"]["legals"]) == 1.0)
    np.testing.assert_array_equal(np.flatnonzero(ds.steps["terminated"]), [3, 9, 12])
    assert not ds.steps["truncated"].any()
    assert ds.spec.discrete and ds.spec.num_agents == 3 and ds.spec.num_actions == 3 and ds.spec.state_dim == 5
    prov = ds.meta["provenance"]
    assert prov["vault_metadata"]["scenario"] == "3m" and prov["incomplete_steps_dropped"] == 2
    assert prov["reward_reduce"] == "first" and "teamsift_export" not in prov


def _dataset(tmp_path, discrete: bool, name="ds"):
    spec = tiny_spec(discrete=discrete)
    arrays = make_arrays(spec, [3, 5, 2, 4], seed=3)
    arrays["terminated"][7] = arrays["truncated"][7] = False  # episode 1 ends without a flag
    return data.load_dataset(data.write_dataset(tmp_path / name, discount=0.9, **arrays))


@pytest.mark.parametrize("discrete", [True, False])
def test_exported_vault_is_read_by_flashbax(tmp_path, discrete):
    from flashbax.vault import Vault

    ds = _dataset(tmp_path, discrete)
    root = data.export_vault(ds.path, tmp_path / "vaults" / "tiny.vlt", vault_uid="Mixed")
    assert root == tmp_path / "vaults" / "tiny.vlt" / "Mixed"
    experience = Vault("tiny.vlt", rel_dir=str(tmp_path / "vaults"), vault_uid="Mixed").read().experience
    got = {k: np.asarray(v)[0] for k, v in experience.items() if k != "infos"}
    assert {k: v.shape[0] for k, v in got.items()} == dict.fromkeys(got, ds.num_steps)  # B = 1, T = N
    np.testing.assert_array_equal(got["observations"], ds.steps["obs"])
    np.testing.assert_array_equal(got["actions"], ds.steps["actions"])
    np.testing.assert_array_equal(got["rewards"], np.repeat(ds.steps["reward"][:, None], 3, axis=1))
    np.testing.assert_array_equal(got["terminals"][:, 0], ds.steps["terminated"])
    ends = np.zeros(ds.num_steps, bool)
    ends[ds.starts + ds.lengths - 1] = True
    np.testing.assert_array_equal(got["terminals"][:, 0] + got["truncations"][:, 0], ends)  # one flag per end
    np.testing.assert_array_equal(np.asarray(experience["infos"]["state"])[0], ds.steps["state"])
    if discrete:
        np.testing.assert_array_equal(np.asarray(experience["infos"]["legals"])[0], ds.steps["avail"])
        assert got["actions"].dtype == np.int32
    else:
        assert "legals" not in experience["infos"]


@pytest.mark.parametrize("discrete", [True, False])
def test_export_import_round_trip_is_identical(tmp_path, discrete):
    ds = _dataset(tmp_path, discrete)
    data.export_vault(ds.path, tmp_path / "v")
    back = data.load_dataset(data.import_vault(tmp_path / "v", tmp_path / "back"))
    assert back.spec == ds.spec and back.discount == 0.9 and back.score_names == ds.score_names
    assert back.meta["notes"] == ds.meta["notes"] and back.meta["env_kwargs"] == ds.meta["env_kwargs"]
    assert set(back.steps) == set(ds.steps) and set(back.episodes) == set(ds.episodes)
    for name in ds.steps:
        np.testing.assert_array_equal(back.steps[name], ds.steps[name], err_msg=name)
        assert back.steps[name].dtype == ds.steps[name].dtype
    for name in ds.episodes:
        np.testing.assert_array_equal(back.episodes[name], ds.episodes[name], err_msg=name)
    prov = back.meta["provenance"]
    assert prov["teamsift_export"] == "restored" and prov["exported_from"] == ds.meta["provenance"]
    # meta.json differs only where it must: where the data came from, and when
    assert {k: v for k, v in back.meta.items() if k not in ("provenance", "created")} == \
        {k: v for k, v in ds.meta.items() if k not in ("provenance", "created")}


def test_export_vault_overwrite_rules(tmp_path):
    ds = _dataset(tmp_path, True)
    other = _dataset(tmp_path, False, name="other")
    base = tmp_path / "v"
    data.export_vault(ds.path, base, vault_uid="a")
    data.export_vault(other.path, base, vault_uid="b")
    with pytest.raises(FileExistsError, match="already exists"):
        data.export_vault(other.path, base, vault_uid="a")
    assert data.load_dataset(data.import_vault(base, tmp_path / "a1", vault_uid="a")).spec.discrete
    data.export_vault(other.path, base, vault_uid="a", overwrite=True)  # replaces a, keeps b
    assert not data.load_dataset(data.import_vault(base, tmp_path / "a2", vault_uid="a")).spec.discrete
    assert sorted(p.name for p in base.iterdir()) == ["a", "b"]  # no temporaries left
    (base / "notes").mkdir()
    (base / "notes" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a flashbax vault"):
        data.export_vault(ds.path, base, vault_uid="notes", overwrite=True)
    assert (base / "notes" / "mine.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="vault_uid"):
        data.export_vault(ds.path, base, vault_uid="../x")
    with pytest.raises(data.DatasetError):
        data.export_vault(tmp_path / "missing", base, vault_uid="c")
    assert not (base / "c").exists()


def test_changed_exported_vault_falls_back_to_its_leaves(tmp_path):
    ds = _dataset(tmp_path, True)
    root = data.export_vault(ds.path, tmp_path / "v")
    meta = json.loads((root / "metadata.json").read_text())
    meta["teamsift"]["episode_lengths"][0] += 1  # as if the vault had been edited after export
    (root / "metadata.json").write_text(json.dumps(meta))
    back = data.load_dataset(data.import_vault(root, tmp_path / "back"))
    assert back.meta["provenance"]["teamsift_export"].startswith("ignored: episode lengths differ")
    assert back.spec.env_id == "custom" and back.score_names == ()
    np.testing.assert_array_equal(back.steps["obs"], ds.steps["obs"])
    np.testing.assert_array_equal(back.steps["final_obs"], ds.steps["obs"][ds.starts + ds.lengths - 1])
