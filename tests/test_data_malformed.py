"""Malformed datasets and npz files: every case must raise DatasetError naming the file
and the field — never another exception type, never a partial result.

Hypothesis draws a mutation (and where to apply it) of a valid dataset on disk or of a
valid npz archive; the expected (file, field) of the error comes with the mutation.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teamsift import data
from teamsift.data.testing import make_arrays, tiny_spec

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LENGTHS = [3, 5, 1, 8, 2]


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    out = {}
    for discrete in (True, False):
        kw = make_arrays(tiny_spec(discrete=discrete), LENGTHS, seed=3)
        out[discrete] = data.write_dataset(root / f"ds_{discrete}", **kw)
    return out


def _assert_names(exc: data.DatasetError, file: str, field: str):
    msg = str(exc)
    assert file in msg, f"{file!r} not in {msg!r}"
    assert f"'{field}'" in msg, f"field {field!r} not in {msg!r}"
    assert " expected " in msg and ", found " in msg, msg


def _expect(path, file, field, **kw):
    with pytest.raises(data.DatasetError) as info:
        data.load_dataset(path, **kw)
    _assert_names(info.value, file, field)
    return info.value


# ---------------------------------------------------------------------------------------
# Mutations of a dataset directory. Each takes (root, draw, discrete) and returns the
# (file, field) the error must name.
# ---------------------------------------------------------------------------------------


def _step_names(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "steps").glob("*.npy"))


def _npy_rewrite(root: Path, name: str, fn):
    path = root / "steps" / f"{name}.npy"
    arr = np.load(path)
    np.save(path, fn(arr))


def _parquet_rewrite(root: Path, fn):
    path = root / "episodes.parquet"
    table = pq.read_table(path)
    pq.write_table(fn(table), path)


def _set_column(table: pa.Table, name: str, values) -> pa.Table:
    i = table.column_names.index(name)
    return table.set_column(i, name, pa.array(values, type=table.schema.field(name).type))


def _meta_rewrite(root: Path, fn):
    path = root / "meta.json"
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


def m_delete_file(root, draw, discrete):
    choices = ["meta.json", "episodes.parquet"] + [f"steps/{n}.npy" for n in _step_names(root)]
    f = draw(st.sampled_from(choices))
    (root / f).unlink()
    field = {"meta.json": "meta", "episodes.parquet": "episodes"}.get(f, Path(f).stem)
    return f, field


def m_change_dtype(root, draw, discrete):
    name = draw(st.sampled_from(_step_names(root)))
    current = np.load(root / "steps" / f"{name}.npy", mmap_mode="r").dtype
    new = draw(st.sampled_from([t for t in ["float64", "float16", "int32", "int64", "bool", "uint8", ">f4"]
                                if np.dtype(t) != current]))
    _npy_rewrite(root, name, lambda a: a.astype(new))
    return f"steps/{name}.npy", name


def m_change_shape(root, draw, discrete):
    name = draw(st.sampled_from(_step_names(root)))
    op = draw(st.sampled_from(["drop_row", "add_row", "drop_col", "flatten", "add_axis"]))

    def fn(a):
        if op == "drop_row":
            return a[:-1]
        if op == "add_row":
            return np.concatenate([a, a[-1:]])
        if op == "drop_col" and a.ndim >= 2:
            return a[..., :-1]
        if op == "flatten" and a.ndim >= 2:
            return a.reshape(-1)
        return a[..., None]

    _npy_rewrite(root, name, fn)
    return f"steps/{name}.npy", name


def m_bad_offsets(root, draw, discrete):
    e = len(LENGTHS)
    op = draw(st.sampled_from(["shift_start", "start0", "grow_length", "zero_length", "swap_lengths", "negative"]))
    i = draw(st.integers(1, e - 1))
    starts = np.concatenate([[0], np.cumsum(LENGTHS)[:-1]]).tolist()
    lengths = list(LENGTHS)
    if op == "shift_start":
        starts[i] += draw(st.sampled_from([-1, 1, 2]))
        field = "start"
    elif op == "start0":
        starts[0] = 1
        field = "start"
    elif op == "grow_length":
        lengths[i] += 1
        field = "length"
    elif op == "zero_length":
        lengths[i] = 0
        field = "length"
    elif op == "negative":
        lengths[i] = -lengths[i]
        field = "length"
    else:  # lengths 5 and 8 swapped: the sum holds, the offsets do not
        lengths[1], lengths[3] = lengths[3], lengths[1]
        field = "start"
    _parquet_rewrite(root, lambda t: _set_column(_set_column(t, "start", starts), "length", lengths))
    return "episodes.parquet", field


def m_nonfinite_step(root, draw, discrete):
    names = ["obs", "state", "reward", "final_obs", "final_state"] + ([] if discrete else ["actions"])
    name = draw(st.sampled_from(names))
    value = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    arr = np.load(root / "steps" / f"{name}.npy")
    flat = draw(st.integers(0, arr.size - 1))
    row = np.unravel_index(flat, arr.shape)[0]

    def fn(a):
        a = a.copy()
        a.reshape(-1)[flat] = value
        return a

    _npy_rewrite(root, name, fn)
    root.joinpath("expected_row").write_text(str(row))
    return f"steps/{name}.npy", name


def m_nonfinite_column(root, draw, discrete):
    col = draw(st.sampled_from(["return", "score_coverage", "score_incidents"]))
    i = draw(st.integers(0, len(LENGTHS) - 1))
    value = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))

    def fn(t):
        vals = t.column(col).to_pylist()
        vals[i] = value
        return _set_column(t, col, vals)

    _parquet_rewrite(root, fn)
    return "episodes.parquet", col


def m_format(root, draw, discrete):
    key = draw(st.sampled_from(["format_version", "format"]))
    if key == "format_version":
        value = draw(st.one_of(st.integers().filter(lambda v: v != 1), st.just("1"), st.just(1.5), st.none(), st.just(True)))
    else:
        value = draw(st.sampled_from(["teamsift-dataset-v2", "", None, 1]))
    _meta_rewrite(root, lambda m: m.__setitem__(key, value))
    return "meta.json", key


def m_meta_key(root, draw, discrete):
    key = draw(st.sampled_from(sorted(data.format.META_KEYS.keys() - {"format", "format_version"})))
    op = draw(st.sampled_from(["delete", "wrong_type"]))
    if op == "delete":
        _meta_rewrite(root, lambda m: m.pop(key))
    else:
        _meta_rewrite(root, lambda m: m.__setitem__(key, [1, 2] if key != "scores" else "coverage"))
    return "meta.json", key


def m_meta_counts(root, draw, discrete):
    key = draw(st.sampled_from(["num_steps", "num_episodes"]))
    delta = draw(st.sampled_from([-1, 1, 7]))
    _meta_rewrite(root, lambda m: m.__setitem__(key, m[key] + delta))
    # the table disagrees with meta.json: reported on the episode table
    return "episodes.parquet", "length" if key == "num_steps" else "episodes"


def m_spec(root, draw, discrete):
    op = draw(st.sampled_from(["obs_dim", "state_dim", "num_actions", "agents", "unknown", "episode_length"]))
    if op == "obs_dim":
        _meta_rewrite(root, lambda m: m["spec"].__setitem__("obs_dim", m["spec"]["obs_dim"] + 1))
        return "steps/obs.npy", "obs"
    if op == "state_dim":
        _meta_rewrite(root, lambda m: m["spec"].__setitem__("state_dim", m["spec"]["state_dim"] + 2))
        return "steps/state.npy", "state"
    if op == "num_actions":
        _meta_rewrite(root, lambda m: m["spec"].update(num_actions=5, action_dims=[5, 5, 5]))
        return ("steps/avail.npy", "avail") if discrete else ("steps/actions.npy", "actions")
    if op == "agents":
        _meta_rewrite(root, lambda m: m["spec"].__setitem__("agents", m["spec"]["agents"][:2]))
        return "meta.json", "spec.agent_types"
    if op == "episode_length":
        _meta_rewrite(root, lambda m: m["spec"].__setitem__("episode_length", 4))
        return "episodes.parquet", "length"
    _meta_rewrite(root, lambda m: m["spec"].__setitem__("colour", "red"))
    return "meta.json", "spec"


def m_truncate_npy(root, draw, discrete):
    name = draw(st.sampled_from(_step_names(root)))
    path = root / "steps" / f"{name}.npy"
    raw = path.read_bytes()
    cut = draw(st.integers(0, len(raw) - 1))
    path.write_bytes(raw[:cut])
    return f"steps/{name}.npy", name


def m_garbage_npy(root, draw, discrete):
    name = draw(st.sampled_from(_step_names(root)))
    path = root / "steps" / f"{name}.npy"
    raw = bytearray(path.read_bytes())
    junk = draw(st.binary(min_size=1, max_size=64))
    at = draw(st.integers(0, 60))  # inside the magic / header
    raw[at:at + len(junk)] = junk
    path.write_bytes(bytes(raw))
    # a corrupted header may still parse; the loader must then catch the mismatch
    return f"steps/{name}.npy", name


def m_garbage_parquet(root, draw, discrete):
    path = root / "episodes.parquet"
    op = draw(st.sampled_from(["random", "truncate", "empty", "flip_footer"]))
    raw = path.read_bytes()
    if op == "random":
        path.write_bytes(draw(st.binary(min_size=0, max_size=300)))
    elif op == "truncate":
        path.write_bytes(raw[: draw(st.integers(0, len(raw) - 1))])
    elif op == "empty":
        path.write_bytes(b"")
    else:
        b = bytearray(raw)
        for k in range(12, 40):
            b[-k] ^= 0xFF
        path.write_bytes(bytes(b))
    return "episodes.parquet", "episodes"


def m_garbage_meta(root, draw, discrete):
    content = draw(st.sampled_from([b"", b"{", b"[1, 2]", b"\xff\xfe\x00", b"null", b'"teamsift"']))
    (root / "meta.json").write_bytes(content)
    return "meta.json", "meta"


def m_list_column(root, draw, discrete):
    col = draw(st.sampled_from(["agent_ids", "behaviour", "policy_ids"]))
    i = draw(st.integers(0, len(LENGTHS) - 1))
    op = draw(st.sampled_from(["short", "long", "null_row", "null_item", "wrong_type", "drop"]))

    def fn(t):
        if op == "drop":
            if col == "agent_ids":
                return t.drop_columns([col])
            return t  # optional columns may be absent; replaced below
        vals = t.column(col).to_pylist()
        if op == "short":
            vals[i] = vals[i][:-1]
        elif op == "long":
            vals[i] = vals[i] + ["extra"]
        elif op == "null_row":
            vals[i] = None
        elif op == "null_item":
            vals[i] = [None] + vals[i][1:]
        else:
            k = t.column_names.index(col)
            return t.set_column(k, col, pa.array([len(v) for v in vals], type=pa.int64()))
        return _set_column(t, col, vals)

    if op == "drop" and col != "agent_ids":
        op = "short"
    _parquet_rewrite(root, fn)
    return "episodes.parquet", col


def m_drop_column(root, draw, discrete):
    col = draw(st.sampled_from(["episode", "start", "length", "return", "score_coverage", "agent_ids"]))
    _parquet_rewrite(root, lambda t: t.drop_columns([col]))
    return "episodes.parquet", col


def m_column_type(root, draw, discrete):
    col = draw(st.sampled_from(["episode", "start", "length", "return", "score_incidents"]))
    typ = draw(st.sampled_from([pa.int32(), pa.float32(), pa.string()]))

    def fn(t):
        k = t.column_names.index(col)
        return t.set_column(k, col, t.column(col).cast(typ, safe=False))

    _parquet_rewrite(root, fn)
    return "episodes.parquet", col


def m_extra_score(root, draw, discrete):
    _parquet_rewrite(root, lambda t: t.append_column("score_secret", pa.array(np.zeros(len(LENGTHS)))))
    return "episodes.parquet", "score_secret"


def m_return_mismatch(root, draw, discrete):
    i = draw(st.integers(0, len(LENGTHS) - 1))

    def fn(t):
        vals = t.column("return").to_pylist()
        vals[i] += draw(st.sampled_from([1.0, -5.0, 100.0]))
        return _set_column(t, "return", vals)

    _parquet_rewrite(root, fn)
    return "episodes.parquet", "return"


def m_flags(root, draw, discrete):
    name = draw(st.sampled_from(["terminated", "truncated"]))
    starts = np.concatenate([[0], np.cumsum(LENGTHS)[:-1]])
    last = set((starts + np.asarray(LENGTHS) - 1).tolist())
    row = draw(st.sampled_from([r for r in range(sum(LENGTHS)) if r not in last]))

    def fn(a):
        a = a.copy()
        a[row] = True
        return a

    _npy_rewrite(root, name, fn)
    return f"steps/{name}.npy", name


def m_actions(root, draw, discrete):
    if not discrete:
        _npy_rewrite(root, "actions", lambda a: a[..., :2])
        return "steps/actions.npy", "actions"
    value = draw(st.sampled_from([-1, 3, 99]))
    row = draw(st.integers(0, sum(LENGTHS) - 1))

    def fn(a):
        a = a.copy()
        a[row, 1] = value
        return a

    _npy_rewrite(root, "actions", fn)
    return "steps/actions.npy", "actions"


def m_avail_in_continuous(root, draw, discrete):
    if discrete:
        (root / "steps" / "final_avail.npy").unlink()
        return "steps/final_avail.npy", "final_avail"
    np.save(root / "steps" / "avail.npy", np.ones((sum(LENGTHS), 3, 3), bool))
    return "steps/avail.npy", "avail"


def m_object_npy(root, draw, discrete):
    name = draw(st.sampled_from(_step_names(root)))
    arr = np.empty(3, dtype=object)
    np.save(root / "steps" / f"{name}.npy", arr, allow_pickle=True)
    return f"steps/{name}.npy", name


MUTATIONS = [m_delete_file, m_change_dtype, m_change_shape, m_bad_offsets, m_nonfinite_step, m_nonfinite_column,
             m_format, m_meta_key, m_meta_counts, m_spec, m_truncate_npy, m_garbage_npy, m_garbage_parquet,
             m_garbage_meta, m_list_column, m_drop_column, m_column_type, m_extra_score, m_return_mismatch,
             m_flags, m_actions, m_avail_in_continuous, m_object_npy]


def _copy(base: Path) -> tuple[tempfile.TemporaryDirectory, Path]:
    tmp = tempfile.TemporaryDirectory()
    root = Path(tmp.name) / "ds"
    shutil.copytree(base, root)
    return tmp, root


@SETTINGS
@given(st.data())
def test_mutated_dataset_raises_dataset_error(bases, dd):
    discrete = dd.draw(st.booleans(), label="discrete")
    mutation = dd.draw(st.sampled_from(MUTATIONS), label="mutation")
    tmp, root = _copy(bases[discrete])
    with tmp:
        file, field = mutation(root, dd.draw, discrete)
        try:
            ds = data.load_dataset(root)
        except data.DatasetError as exc:
            _assert_names(exc, file, field)
            if mutation is m_nonfinite_step:
                assert f"row {(root / 'expected_row').read_text()}" in str(exc)
        else:
            # only a header corruption that happens to leave a valid array may load
            assert mutation is m_garbage_npy, f"{mutation.__name__} loaded: {ds}"
            np.testing.assert_array_equal(ds.steps[field], np.load(bases[discrete] / file))


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.__name__)
def test_each_mutation_once(bases, mutation):
    """Every mutation kind, deterministically (first choice of every draw)."""
    tmp, root = _copy(bases[True])
    with tmp:
        file, field = mutation(root, _first_choice, True)
        if mutation is m_garbage_npy:
            try:
                data.load_dataset(root)
            except data.DatasetError as exc:
                _assert_names(exc, file, field)
            return
        _expect(root, file, field)


def _first_choice(strategy):
    from hypothesis import find

    return find(strategy, lambda _: True)


def test_messages_are_exact(bases):
    tmp, root = _copy(bases[True])
    with tmp:
        _npy_rewrite(root, "obs", lambda a: a[:, :, :3])
        exc = _expect(root, "steps/obs.npy", "obs")
        assert str(exc).startswith("steps/obs.npy: field 'obs' expected shape [N=19, A=3, O=4] float32, "
                                   "found [19, 3, 3] float32")
        assert exc.file == "steps/obs.npy" and exc.field == "obs"
    tmp, root = _copy(bases[True])
    with tmp:
        _meta_rewrite(root, lambda m: m.__setitem__("format_version", 2))
        exc = _expect(root, "meta.json", "format_version")
        assert "found 2" in str(exc)


def test_not_a_directory(tmp_path):
    with pytest.raises(data.DatasetError, match="directory"):
        data.load_dataset(tmp_path / "missing")


def test_structure_only_validation_is_lazy(bases):
    tmp, root = _copy(bases[True])
    with tmp:
        def fn(a):
            a = a.copy()
            a[2, 0, 0] = np.nan
            return a

        _npy_rewrite(root, "obs", fn)
        data.load_dataset(root, check_values=False)  # headers and sizes only
        _expect(root, "steps/obs.npy", "obs")


# ---------------------------------------------------------------------------------------
# npz
# ---------------------------------------------------------------------------------------


def _npz_base(discrete: bool) -> dict:
    kw = make_arrays(tiny_spec(discrete=discrete), LENGTHS, seed=5)
    out = {k: kw[k] for k in ("obs", "state", "actions", "reward", "terminated", "truncated", "final_obs",
                              "final_state", "agent_ids", "behaviour", "policy_ids")}
    out["episode_lengths"] = np.asarray(LENGTHS)
    if discrete:
        out["avail"] = kw["avail"]
        out["final_avail"] = kw["final_avail"]
    out["score_coverage"] = kw["scores"]["coverage"]
    return out


def n_missing(arrs, draw, discrete):
    key = draw(st.sampled_from(["obs", "actions", "reward", "episode_lengths"]))
    del arrs[key]
    return key


def n_shape(arrs, draw, discrete):
    key = draw(st.sampled_from(sorted(arrs)))
    op = draw(st.sampled_from(["drop_row", "add_axis", "flatten"]))
    a = arrs[key]
    if op == "drop_row" and key != "episode_lengths":
        arrs[key] = a[:-1]
    elif op == "flatten" and a.ndim >= 2:
        arrs[key] = a.reshape(-1)
    else:
        arrs[key] = a[..., None]
    # a shorter final/avail array or id table also breaks its link to obs
    return key


def n_object(arrs, draw, discrete):
    key = draw(st.sampled_from(sorted(arrs)))
    arr = np.empty(arrs[key].shape[:1], dtype=object)
    arr[:] = [None] * len(arr)
    arrs[key] = arr
    return key


def n_nonfinite(arrs, draw, discrete):
    keys = ["obs", "state", "reward", "final_obs", "final_state", "score_coverage"] + ([] if discrete else ["actions"])
    key = draw(st.sampled_from(keys))
    a = arrs[key].astype(np.float64 if key.startswith("score") else arrs[key].dtype, copy=True)
    flat = draw(st.integers(0, a.size - 1))
    a.reshape(-1)[flat] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    arrs[key] = a
    return key


def n_lengths(arrs, draw, discrete):
    op = draw(st.sampled_from(["plus", "minus", "drop", "zero", "float", "empty", "negative"]))
    lens = np.asarray(LENGTHS)
    i = draw(st.integers(0, len(LENGTHS) - 1))
    if op == "plus":
        lens = lens.copy()
        lens[i] += 1
    elif op == "minus":
        lens = lens.copy()
        lens[i] -= 1
    elif op == "drop":
        lens = np.delete(lens, i)
    elif op == "zero":
        lens = np.insert(lens, i, 0)
    elif op == "negative":
        lens = np.concatenate([lens, [-1, 1]])
    elif op == "float":
        lens = lens.astype(np.float64)
    else:
        lens = np.zeros(0, np.int64)
    arrs["episode_lengths"] = lens
    return "episode_lengths"


def n_strings(arrs, draw, discrete):
    key = draw(st.sampled_from(["agent_ids", "behaviour", "policy_ids"]))
    op = draw(st.sampled_from(["bytes", "ints", "shape"]))
    if op == "bytes":
        arrs[key] = arrs[key].astype("S")
    elif op == "ints":
        arrs[key] = np.zeros(arrs[key].shape, np.int64)
    else:
        arrs[key] = arrs[key][:, :2]
    return key


def n_unknown(arrs, draw, discrete):
    key = draw(st.sampled_from(["rewards", "observations", "score_", "dones", "infos"]))
    arrs[key] = np.zeros(3)
    return key


def n_flags(arrs, draw, discrete):
    key = draw(st.sampled_from(["terminated", "truncated"]))
    a = arrs[key].copy()
    a[0] = True  # row 0 is never an episode's last step here
    arrs[key] = a if draw(st.booleans()) else a.astype(np.int64) * 2
    return key


def n_actions(arrs, draw, discrete):
    if discrete:
        a = arrs["actions"].copy()
        a[draw(st.integers(0, len(a) - 1)), 0] = draw(st.sampled_from([-1, -7]))
        arrs["actions"] = a if draw(st.booleans()) else a.astype(np.float32)
    else:
        arrs["actions"] = arrs["actions"].astype(np.int64)
    return "actions"


def n_avail(arrs, draw, discrete):
    if discrete:
        arrs["avail"] = arrs["avail"].astype(np.float32) * 3
    else:
        arrs["avail"] = np.ones((sum(LENGTHS), 3, 3), bool)
    return "avail"


NPZ_MUTATIONS = [n_missing, n_shape, n_object, n_nonfinite, n_lengths, n_strings, n_unknown, n_flags, n_actions,
                 n_avail]


def _import(arrs: dict) -> tuple[tempfile.TemporaryDirectory, Path, Path]:
    tmp = tempfile.TemporaryDirectory()
    src = Path(tmp.name) / "input_data.npz"
    np.savez(src, **arrs)
    return tmp, src, Path(tmp.name) / "out"


@SETTINGS
@given(st.data())
def test_mutated_npz_raises_dataset_error(dd):
    discrete = dd.draw(st.booleans(), label="discrete")
    mutation = dd.draw(st.sampled_from(NPZ_MUTATIONS), label="mutation")
    arrs = _npz_base(discrete)
    key = mutation(arrs, dd.draw, discrete)
    tmp, src, out = _import(arrs)
    with tmp:
        with pytest.raises(data.DatasetError) as info:
            data.import_npz(src, out)
        _assert_names(info.value, "input_data.npz", key)
        assert not out.exists()
        assert [p.name for p in out.parent.iterdir()] == ["input_data.npz"]


def test_npz_valid_base_imports():
    for discrete in (True, False):
        arrs = _npz_base(discrete)
        tmp, src, out = _import(arrs)
        with tmp:
            ds = data.load_dataset(data.import_npz(src, out))
            np.testing.assert_array_equal(ds.steps["obs"], arrs["obs"])
            np.testing.assert_array_equal(ds.episodes["policy_ids"], arrs["policy_ids"])


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"\x93NUMPY junk", b"not a zip at all"])
def test_npz_garbage_file(tmp_path, content):
    src = tmp_path / "broken.npz"
    src.write_bytes(content)
    with pytest.raises(data.DatasetError) as info:
        data.import_npz(src, tmp_path / "out")
    _assert_names(info.value, "broken.npz", "npz")


def test_npz_truncated_member(tmp_path):
    src = tmp_path / "cut.npz"
    np.savez(src, **_npz_base(True))
    raw = src.read_bytes()
    src.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(data.DatasetError) as info:
        data.import_npz(src, tmp_path / "out")
    assert "cut.npz" in str(info.value)


def test_npz_object_array_message(tmp_path):
    arrs = _npz_base(True)
    arrs["agent_ids"] = arrs["agent_ids"].astype(object)
    src = tmp_path / "obj.npz"
    np.savez(src, **arrs)
    with pytest.raises(data.DatasetError, match=r"obj\.npz: field 'agent_ids' expected .*object/pickled arrays are refused"):
        data.import_npz(src, tmp_path / "out")
