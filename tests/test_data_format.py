"""teamsift dataset format: round trips, views, samplers, atomic writes, summaries."""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from teamsift import data
from teamsift.data import format as fmt
from teamsift.data.testing import make_arrays, tiny_spec

LENGTHS = [3, 5, 1, 8, 2]


def _write(tmp_path, discrete=True, name="ds", lengths=LENGTHS, seed=0, **overrides):
    spec = tiny_spec(discrete=discrete)
    kw = make_arrays(spec, lengths, seed=seed)
    kw.update(overrides)
    return data.write_dataset(tmp_path / name, **kw), kw


# ---------------------------------------------------------------------------------------
# Round trip
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("mmap", [True, False])
def test_exact_round_trip(tmp_path, discrete, mmap):
    path, kw = _write(tmp_path, discrete)
    ds = data.load_dataset(path, mmap=mmap)
    assert ds.num_episodes == len(LENGTHS) and ds.num_steps == sum(LENGTHS)
    assert ds.spec == kw["spec"]
    assert ds.score_names == ("coverage", "incidents")
    names = ["obs", "state", "actions", "reward", "terminated", "truncated", "final_obs", "final_state"]
    if discrete:
        names += ["avail", "final_avail"]
        assert ds.steps["actions"].dtype == np.int32
    else:
        assert "avail" not in ds.steps and "final_avail" not in ds.steps
        assert ds.steps["actions"].shape == (sum(LENGTHS), 3, 3)
    assert sorted(ds.steps) == sorted(names)
    for name in names:
        np.testing.assert_array_equal(np.asarray(ds.steps[name]), kw[name], err_msg=name)
        assert ds.steps[name].dtype == np.asarray(kw[name]).dtype
        if mmap:
            assert isinstance(ds.steps[name], np.memmap)
    e = ds.episodes
    np.testing.assert_array_equal(e["episode"], np.arange(len(LENGTHS)))
    np.testing.assert_array_equal(e["length"], LENGTHS)
    np.testing.assert_array_equal(e["start"], np.concatenate([[0], np.cumsum(LENGTHS)[:-1]]))
    want_ret = [kw["reward"][s:s + n].astype(np.float64).sum() for s, n in zip(e["start"], LENGTHS)]
    np.testing.assert_array_equal(e["return"], want_ret)
    np.testing.assert_array_equal(e["score_coverage"], kw["scores"]["coverage"])
    np.testing.assert_array_equal(e["score_incidents"], kw["scores"]["incidents"])
    for col in ("agent_ids", "behaviour", "policy_ids"):
        np.testing.assert_array_equal(e[col], kw[col])
        assert e[col].dtype.kind == "U"
    np.testing.assert_array_equal(ds.episode_index, np.repeat(np.arange(len(LENGTHS)), LENGTHS))
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"] == "teamsift-dataset" and meta["format_version"] == 1
    assert meta["provenance"] == kw["provenance"] and meta["notes"] == "synthetic"
    assert meta["discount"] == 0.99 and meta["env_id"] == "tiny" and meta["env_kwargs"] == {}
    table = pq.read_table(path / "episodes.parquet")
    assert pa.types.is_list(table.schema.field("agent_ids").type)
    assert pa.types.is_string(table.schema.field("agent_ids").type.value_type)
    assert str(table.schema.field("return").type) == "double"


def test_episode_table_in_row_groups_reads_back_whole(tmp_path, monkeypatch):
    """The episode table is written a row group at a time (so writing it holds one group's
    Arrow buffers): a table of several groups, the last one partial, reads back exactly."""
    monkeypatch.setattr(fmt, "EPISODES_PER_ROW_GROUP", 2)
    path, kw = _write(tmp_path)
    assert pq.ParquetFile(path / "episodes.parquet").num_row_groups == 3  # 5 episodes: 2 + 2 + 1
    e = data.load_dataset(path).episodes
    np.testing.assert_array_equal(e["length"], LENGTHS)
    np.testing.assert_array_equal(e["score_coverage"], kw["scores"]["coverage"])
    for col in ("agent_ids", "behaviour", "policy_ids"):
        np.testing.assert_array_equal(e[col], kw[col])
        assert e[col].dtype == np.asarray(kw[col]).astype(str).dtype


def test_labels_write_the_table_the_strings_write(tmp_path, monkeypatch):
    """Per-slot strings given as `Labels` (names + codes, no string per entry) write the same
    episode table as the [E, A] string arrays, row group by row group, and
    `read_episode_table` gives them back as labels over the names used."""
    monkeypatch.setattr(fmt, "EPISODES_PER_ROW_GROUP", 2)
    spec = tiny_spec()
    kw = make_arrays(spec, LENGTHS, seed=3)
    plain = data.write_dataset(tmp_path / "plain", **kw)
    coded = dict(kw)
    for col in ("agent_ids", "behaviour", "policy_ids"):
        names, codes = np.unique(kw[col], return_inverse=True)
        names = np.concatenate([names, ["never-used"]])  # a name no slot has is not written
        coded[col] = fmt.Labels(names, codes.reshape(np.shape(kw[col])))
    labelled = data.write_dataset(tmp_path / "labelled", **coded)
    assert pq.read_table(labelled / "episodes.parquet").equals(pq.read_table(plain / "episodes.parquet"))
    meta, read_spec, columns = fmt.read_episode_table(labelled)
    assert meta["num_episodes"] == len(LENGTHS) and read_spec == spec
    for col in ("agent_ids", "behaviour", "policy_ids"):
        assert isinstance(columns[col], fmt.Labels)
        np.testing.assert_array_equal(columns[col].strings(), kw[col])
        assert set(columns[col].names) == set(np.unique(kw[col]))


def test_labels_out_of_range_are_refused(tmp_path):
    spec = tiny_spec()
    kw = make_arrays(spec, LENGTHS)
    kw["behaviour"] = fmt.Labels(np.asarray(["random", "expert"]), np.full((len(LENGTHS), spec.num_agents), 2))
    with pytest.raises(data.DatasetError, match=r"behaviour.*Labels.codes in \[0, 2\)"):
        data.write_dataset(tmp_path / "ds", **kw)
    assert not (tmp_path / "ds").exists()


def test_one_time_ids_are_written_a_row_group_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(fmt, "EPISODES_PER_ROW_GROUP", 2)
    spec = tiny_spec()
    kw = make_arrays(spec, LENGTHS)
    kw["agent_ids"] = None
    ids = data.load_dataset(data.write_dataset(tmp_path / "ds", **kw)).episodes["agent_ids"]
    np.testing.assert_array_equal(ids, data.default_agent_ids(len(LENGTHS), spec.num_agents))
    assert ids[4, 2] == "e4_s2"


def test_defaults_and_casting(tmp_path):
    spec = tiny_spec(discrete=True)
    kw = make_arrays(spec, [2, 2], scores=False, behaviour=False)
    del kw["agent_ids"], kw["avail"], kw["final_avail"]
    kw["obs"] = kw["obs"].astype(np.float64)  # converted to float32
    kw["actions"] = kw["actions"].astype(np.int64)  # converted to int32
    ds = data.load_dataset(data.write_dataset(tmp_path / "d", **kw))
    assert ds.steps["obs"].dtype == np.float32 and ds.steps["actions"].dtype == np.int32
    assert ds.steps["avail"].all() and ds.steps["final_avail"].all()
    # one-time ids per (episode, slot), so no individual is assumed to recur
    np.testing.assert_array_equal(ds.episodes["agent_ids"], [["e0_s0", "e0_s1", "e0_s2"], ["e1_s0", "e1_s1", "e1_s2"]])
    assert "behaviour" not in ds.episodes and ds.score_names == ()
    np.testing.assert_array_equal(ds.score("return"), ds.returns)


# ---------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("discrete", [True, False])
def test_transitions_next_at_episode_boundaries(tmp_path, discrete):
    path, kw = _write(tmp_path, discrete)
    ds = data.load_dataset(path)
    tr = ds.transitions()
    assert len(tr) == ds.num_steps
    batch = tr[np.arange(ds.num_steps)]
    starts = np.concatenate([[0], np.cumsum(LENGTHS)[:-1]])
    for e, (s, n) in enumerate(zip(starts, LENGTHS)):
        for t in range(n):
            i = s + t
            last = t == n - 1
            np.testing.assert_array_equal(batch["obs"][i], kw["obs"][i])
            np.testing.assert_array_equal(batch["next_obs"][i], kw["final_obs"][e] if last else kw["obs"][i + 1])
            np.testing.assert_array_equal(batch["next_state"][i], kw["final_state"][e] if last else kw["state"][i + 1])
            if discrete:
                np.testing.assert_array_equal(batch["next_avail"][i], kw["final_avail"][e] if last else kw["avail"][i + 1])
            assert batch["is_last"][i] == last and batch["episode"][i] == e and batch["t"][i] == t
            assert batch["done"][i] == (kw["terminated"][i] or kw["truncated"][i])
    one = tr[4]
    np.testing.assert_array_equal(one["next_obs"], batch["next_obs"][4])
    np.testing.assert_array_equal(tr[-1]["next_obs"], kw["final_obs"][-1])
    nxt, is_last = tr.next_index(np.array([2, 3, 15, 16, 18]))
    np.testing.assert_array_equal(nxt, [2, 4, 16, 16, 18])
    np.testing.assert_array_equal(is_last, [True, False, False, True, True])
    rows = np.concatenate([b["index"] for b in tr.batches(4)])
    np.testing.assert_array_equal(rows, np.arange(ds.num_steps))


def test_views_do_not_copy(tmp_path):
    path, _ = _write(tmp_path)
    ds = data.load_dataset(path)
    traj = ds.agent_trajectories().get(3, 1)
    for name in ("obs", "actions", "reward", "avail"):
        assert np.shares_memory(getattr(traj, name), ds.steps[name]), name
    assert np.shares_memory(ds.episode(2)["obs"], ds.steps["obs"])


def test_agent_trajectories(tmp_path):
    path, kw = _write(tmp_path)
    ds = data.load_dataset(path)
    trajs = ds.agent_trajectories()
    assert len(trajs) == len(LENGTHS) * 3
    tr = trajs[3 * 3 + 2]  # episode 3, slot 2
    assert (tr.episode, tr.slot, tr.length) == (3, 2, 8)
    s = int(ds.starts[3])
    np.testing.assert_array_equal(tr.obs, kw["obs"][s:s + 8, 2])
    np.testing.assert_array_equal(tr.actions, kw["actions"][s:s + 8, 2])
    np.testing.assert_array_equal(tr.reward, kw["reward"][s:s + 8])
    np.testing.assert_array_equal(tr.final_obs, kw["final_obs"][3, 2])
    assert tr.agent_id == kw["agent_ids"][3, 2] and tr.behaviour == kw["behaviour"][3, 2]
    assert tr.policy_id == kw["policy_ids"][3, 2]
    assert tr.agent_type == "x" and tr.obs_width == 3
    assert tr.episode_return == pytest.approx(ds.returns[3])
    table = trajs.table
    assert len(table["episode"]) == len(trajs)
    np.testing.assert_array_equal(table["agent_id"], kw["agent_ids"].reshape(-1))
    np.testing.assert_array_equal(table["behaviour"], kw["behaviour"].reshape(-1))
    np.testing.assert_array_equal(table["agent_type"][:3], ["x", "y", "x"])
    np.testing.assert_array_equal(table["return"], np.repeat(ds.returns, 3))
    assert sum(1 for _ in trajs) == len(trajs)


def test_sequences_windows_and_whole_episodes(tmp_path):
    path, kw = _write(tmp_path)
    ds = data.load_dataset(path)
    whole = ds.sequences()
    assert len(whole) == len(LENGTHS) and whole.seq_len == max(LENGTHS)
    b = whole[np.arange(len(whole))]
    np.testing.assert_array_equal(b["mask"].sum(1), LENGTHS)
    s3 = int(ds.starts[3])
    np.testing.assert_array_equal(b["obs"][3], kw["obs"][s3:s3 + 8])
    np.testing.assert_array_equal(b["obs"][0, 3:], 0)  # padding is zero
    assert b["avail"][0, 3:].all()  # padded avail: all True
    np.testing.assert_array_equal(b["next_obs"][0, 2], kw["final_obs"][0])

    win = ds.sequences(seq_len=3, stride=2)
    # windows per episode: ceil(len/2) -> 2, 3, 1, 4, 1
    assert len(win) == 11
    w = win[np.arange(len(win))]
    np.testing.assert_array_equal(w["episode"], [0, 0, 1, 1, 1, 2, 3, 3, 3, 3, 4])
    np.testing.assert_array_equal(w["t"][:, 0], [0, 2, 0, 2, 4, 0, 0, 2, 4, 6, 0])
    np.testing.assert_array_equal(w["mask"].sum(1), [3, 1, 3, 3, 1, 1, 3, 3, 3, 2, 2])
    np.testing.assert_array_equal(w["obs"][1, 0], kw["obs"][2])
    np.testing.assert_array_equal(w["next_obs"][1, 0], kw["final_obs"][0])
    assert not w["reward"][1, 1:].any()


# ---------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def device_ds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("samplers")
    spec = tiny_spec(discrete=True)
    kw = make_arrays(spec, LENGTHS, seed=1)
    ds = data.load_dataset(data.write_dataset(tmp / "ds", **kw))
    return ds, kw, data.to_device(ds)


def test_sample_transitions_deterministic_and_correct(device_ds):
    ds, kw, arrays = device_ds
    f = jax.jit(data.sample_transitions, static_argnums=2)
    a = f(jax.random.key(3), arrays, 64)
    b = f(jax.random.key(3), arrays, 64)
    c = f(jax.random.key(4), arrays, 64)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["index"], c["index"])
    ref = ds.transitions()[np.asarray(a["index"])]
    for k in ("obs", "state", "avail", "actions", "reward", "next_obs", "next_state", "next_avail",
              "terminated", "truncated", "done", "episode", "t", "is_last"):
        np.testing.assert_array_equal(np.asarray(a[k]), ref[k], err_msg=k)


def test_sample_transitions_uniform(device_ds):
    ds, _, arrays = device_ds
    batch = jax.jit(data.sample_transitions, static_argnums=2)(jax.random.key(0), arrays, 20_000)
    counts = np.bincount(np.asarray(batch["index"]), minlength=ds.num_steps)
    expected = 20_000 / ds.num_steps
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 60  # df = 18; p(chi2 > 60) ~ 1e-6


def test_sample_sequences(device_ds):
    ds, kw, arrays = device_ds
    g = jax.jit(partial(data.sample_sequences, batch_size=256, seq_len=4))
    a, b = g(jax.random.key(1), arrays), g(jax.random.key(1), arrays)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    mask, t, ep = np.asarray(a["mask"]), np.asarray(a["t"]), np.asarray(a["episode"])
    lengths = np.asarray(LENGTHS)
    np.testing.assert_array_equal(mask, t < lengths[ep][:, None])
    starts = ds.starts
    for i in range(16):
        for j in range(4):
            if mask[i, j]:
                row = starts[ep[i]] + t[i, j]
                np.testing.assert_array_equal(np.asarray(a["obs"][i, j]), kw["obs"][row])
            else:
                assert not np.asarray(a["obs"][i, j]).any() and np.asarray(a["avail"][i, j]).all()
    # window starts are uniform over steps
    first = starts[ep] + t[:, 0]
    assert len(np.unique(first)) > ds.num_steps // 2
    e = jax.jit(partial(data.sample_sequences, batch_size=64, seq_len=8, align="episode"))(jax.random.key(2), arrays)
    np.testing.assert_array_equal(np.asarray(e["t"])[:, 0], 0)
    np.testing.assert_array_equal(np.asarray(e["mask"]).sum(1), lengths[np.asarray(e["episode"])])


def test_samplers_inside_scan(device_ds):
    _, _, arrays = device_ds

    @jax.jit
    def run(key):
        def body(carry, k):
            batch = data.sample_transitions(k, arrays, 8)
            return carry + batch["reward"].sum(), batch["index"]
        return jax.lax.scan(body, 0.0, jax.random.split(key, 5))

    total, idx = run(jax.random.key(0))
    assert idx.shape == (5, 8) and np.isfinite(float(total))


def test_to_device_fields(device_ds):
    ds, _, _ = device_ds
    arrays = data.to_device(ds, fields=("obs", "actions", "reward"))
    assert set(arrays) == {"obs", "actions", "reward", "episode_index", "episode_start", "episode_length"}
    batch = data.sample_transitions(jax.random.key(0), arrays, 4)
    assert "next_obs" not in batch and batch["obs"].shape == (4, 3, 4)
    with pytest.raises(KeyError):
        data.to_device(ds, fields=("nope",))


# ---------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    spec = tiny_spec()
    kw = make_arrays(spec, LENGTHS)
    calls = []
    real = fmt._write_npy

    def flaky(path, arr):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        real(path, arr)

    monkeypatch.setattr(fmt, "_write_npy", flaky)
    with pytest.raises(OSError, match="simulated"):
        data.write_dataset(tmp_path / "ds", **kw)
    assert not (tmp_path / "ds").exists()
    assert _leftovers(tmp_path) == []


def test_interrupted_overwrite_keeps_existing(tmp_path, monkeypatch):
    path, kw_old = _write(tmp_path, seed=0)
    before = {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    kw_new = make_arrays(tiny_spec(), [4, 4], seed=9)

    def boom(path, columns):
        raise RuntimeError("killed mid-write (simulated)")

    monkeypatch.setattr(fmt, "_write_episodes", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        data.write_dataset(path, overwrite=True, **kw_new)
    after = {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    assert after == before
    assert _leftovers(tmp_path) == []
    assert data.load_dataset(path).num_episodes == len(LENGTHS)


def test_failed_final_rename_restores_existing(tmp_path, monkeypatch):
    path, _ = _write(tmp_path, seed=0)
    kw_new = make_arrays(tiny_spec(), [4, 4], seed=9)
    real = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # 1st: existing -> .old, 2nd: tmp -> out
            raise OSError("rename failed (simulated)")
        return real(src, dst)

    monkeypatch.setattr(fmt.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="simulated"):
        data.write_dataset(path, overwrite=True, **kw_new)
    monkeypatch.setattr(fmt.os, "replace", real)
    assert data.load_dataset(path).num_episodes == len(LENGTHS)
    assert _leftovers(tmp_path) == []


def test_overwrite_rules(tmp_path):
    path, _ = _write(tmp_path, seed=0)
    kw_new = make_arrays(tiny_spec(), [4, 4], seed=9)
    with pytest.raises(FileExistsError):
        data.write_dataset(path, **kw_new)
    assert data.load_dataset(path).num_episodes == len(LENGTHS)
    data.write_dataset(path, overwrite=True, **kw_new)
    assert data.load_dataset(path).num_episodes == 2
    assert _leftovers(tmp_path) == []
    other = tmp_path / "not_a_dataset"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a teamsift dataset"):
        data.write_dataset(other, overwrite=True, **kw_new)
    assert (other / "precious.txt").read_text() == "keep me"


def test_invalid_input_writes_nothing(tmp_path):
    kw = make_arrays(tiny_spec(), LENGTHS)
    kw["obs"] = kw["obs"].copy()
    kw["obs"][7, 1, 2] = np.nan
    with pytest.raises(data.DatasetError, match=r"steps/obs\.npy: field 'obs' expected finite values, found NaN at row 7"):
        data.write_dataset(tmp_path / "ds", **kw)
    assert list(tmp_path.iterdir()) == []
    kw = make_arrays(tiny_spec(), LENGTHS)
    kw["state"] = kw["state"][:, :4]
    with pytest.raises(data.DatasetError) as info:
        data.write_dataset(tmp_path / "ds", **kw)
    assert str(info.value) == "steps/state.npy: field 'state' expected shape [N=19, S=5] float32, found [19, 4] float32"


# ---------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------


def test_summarize_and_plot(tmp_path):
    spec = tiny_spec()
    kw = make_arrays(spec, [2, 2, 2, 2])
    kw["behaviour"] = np.asarray([["random", "random", "medium"]] * 3 + [["expert", "medium", "random"]])
    kw["reward"] = np.asarray([1, 1, 2, 2, 3, 3, 10, 0], np.float32)
    ds = data.load_dataset(data.write_dataset(tmp_path / "ds", **kw))
    s = data.summarize(ds)
    assert (s["episodes"], s["steps"], s["agents"]) == (4, 8, 3)
    assert s["return"]["mean"] == pytest.approx(5.5) and s["return"]["max"] == 10
    assert s["return"]["quantiles"]["0.5"] == pytest.approx(5.0)
    assert set(s["scores"]) == {"coverage", "incidents"}
    comps = s["behaviour"]["compositions"]
    assert comps["r,r,m"]["count"] == 3 and comps["r,r,m"]["return_mean"] == pytest.approx(4.0)
    assert comps["e,m,r"]["count"] == 1
    assert s["behaviour"]["compositions_unordered"]["m,r,r"]["count"] == 3
    assert s["behaviour"]["levels"] == {"expert": 1, "medium": 4, "random": 7}
    json.dumps(s)  # JSON-friendly
    assert data.summarize(ds.path) == s  # from the episode table alone, its strings as labels: the same numbers
    png = data.plot_summary(ds, tmp_path / "summary.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
