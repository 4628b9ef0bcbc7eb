"""Dataset tools: subsample, combine and split teamsift datasets; export the episode table.

    subsample(src, out, episodes=N, seed=s)                  N episodes drawn uniformly
    subsample(src, out, target_returns=r, bins=20, seed=s)   to the distribution of returns r
    combine([a, b, ...], out)                                episodes of several datasets
    split(src, out, test_fraction=f, by="episode" | "individual", seed=s)   out/train, out/test
    export_table(src, out, rows_per_shard=n)                 episodes.parquet as Parquet shards

Every dataset output is written through `write_dataset` (validated like any dataset, atomic) and
refuses to replace an existing path unless `overwrite=True`, checked before any work; an
output can never be one of its sources. The output's meta.json `provenance` records the
tool, each source (path, `dataset_fingerprint`, episodes, and its own provenance), the seed,
the command line and the teamsift version, plus what the tool did (see each function).
Episodes keep their steps, scores, agent ids and labels; the `return` column is recomputed
from the rewards (and so equals the source's).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from teamsift.data.errors import DatasetError, short_exc
from teamsift.data.format import (
    FINAL_FIELDS, LIST_COLUMNS, META_FILE, OPTIONAL_LIST_COLUMNS, SCORE_PREFIX, Dataset, dataset_fingerprint,
    load_dataset, write_dataset,
)
from teamsift.data.format import _check_replaceable as check_replaceable

SPLIT_PARTS = ("train", "test")
SPLIT_BY = ("episode", "individual")
MIXED_POLICIES = ("test", "drop")
ID_POLICIES = ("keep", "separate")


# ---------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------


def command_line() -> str:
    """The command that is running, as it would be typed (program name without its path)."""
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""


def check_output(out: str | os.PathLike, overwrite: bool, sources: Sequence[str | os.PathLike] = (),
                 replaceable=check_replaceable) -> Path:
    """Refuse an output that exists (without `overwrite`, or that `replaceable` refuses to
    replace) or that is, holds or lies inside a source."""
    out = Path(out).absolute()
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
        replaceable(out)
    resolved = out.resolve()
    for source in sources:
        source = Path(source).resolve()
        if resolved == source or source.is_relative_to(resolved) or resolved.is_relative_to(source):
            raise ValueError(f"output {out} would replace or sit inside the source dataset {source}; "
                             "write it somewhere else")
    return out


def _key(seed: int):
    import jax

    return jax.random.key(seed)


def source_record(ds: Dataset) -> dict:
    """What provenance keeps of a source dataset."""
    return {"path": str(Path(ds.path).resolve()), "fingerprint": dataset_fingerprint(ds), "env_id": ds.spec.env_id,
            "episodes": ds.num_episodes, "steps": ds.num_steps, "provenance": ds.meta.get("provenance", {})}


def provenance(tool: str, sources: Sequence[Dataset], *, seed: int | None, command: str | None, **details) -> dict:
    """The `provenance` of a tool's output (meta.json)."""
    from teamsift import __version__

    return {"tool": f"teamsift data {tool}", "sources": [source_record(ds) for ds in sources], "seed": seed,
            "command": command_line() if command is None else command, "teamsift_version": __version__, **details}


def episode_arrays(ds: Dataset, index: np.ndarray, columns: Sequence[str] | None = None) -> dict[str, Any]:
    """`write_dataset` keyword arguments holding episodes `index` of `ds`, in that order
    (an index may repeat). `columns`: the optional list columns to keep (default: all)."""
    index = np.asarray(index, np.int64)
    lengths = np.asarray(ds.lengths)[index]
    starts = np.asarray(ds.starts)[index]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    rows = np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
    out: dict[str, Any] = {name: np.asarray(array[index] if name in FINAL_FIELDS else array[rows])
                           for name, array in ds.steps.items()}
    out["episode_lengths"] = lengths
    out["scores"] = {name: np.asarray(ds.episodes[SCORE_PREFIX + name])[index] for name in ds.score_names}
    keep = OPTIONAL_LIST_COLUMNS if columns is None else columns
    for name in LIST_COLUMNS:
        if name in ds.episodes and (name == "agent_ids" or name in keep):
            out[name] = np.asarray(ds.episodes[name])[index]
    return out


def _write(out: Path, ds: Dataset, arrays: dict, prov: dict, overwrite: bool, notes: str | None = None) -> Path:
    return write_dataset(out, spec=ds.spec, env_kwargs=ds.meta.get("env_kwargs", {}), discount=ds.discount,
                         provenance=prov, notes=ds.meta.get("notes", "") if notes is None else notes,
                         overwrite=overwrite, **arrays)


def brief(path: Path) -> dict:
    """Path, episodes, steps and mean return of a written dataset."""
    ds = load_dataset(path, check_values=False)
    returns = np.asarray(ds.returns, np.float64)
    return {"dataset": str(path), "episodes": ds.num_episodes, "steps": ds.num_steps,
            "return_mean": float(returns.mean())}


# ---------------------------------------------------------------------------------------
# subsample
# ---------------------------------------------------------------------------------------


def read_returns(path: str | os.PathLike) -> np.ndarray:
    """Target returns from a file: a teamsift dataset directory (its episode returns), a
    `.npy` array, or text with numbers separated by spaces, commas or newlines (`#` starts a
    comment)."""
    path = Path(path)
    if path.is_dir():
        return np.asarray(load_dataset(path, check_values=False).returns, np.float64)
    if not path.is_file():
        raise DatasetError(str(path), "returns", "a dataset directory, a .npy array or a text file of numbers",
                           "missing" if not path.exists() else "not a file")
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        else:
            text = "\n".join(line.split("#")[0] for line in path.read_text(encoding="utf-8").splitlines())
            values = np.asarray([float(word) for word in text.replace(",", " ").split()], np.float64)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a bad file
        raise DatasetError(str(path), "returns", "numbers (a .npy array, or text separated by spaces/commas)",
                           short_exc(exc)) from None
    return check_returns(str(path), values)


def check_returns(label: str, values) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind not in "iuf" or values.ndim != 1 or values.size == 0:
        raise DatasetError(label, "returns", "a non-empty list of numbers", f"shape {list(values.shape)} {values.dtype.name}")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise DatasetError(label, "returns", "finite numbers", f"{values[~np.isfinite(values)][0]} at position "
                                                               f"{int(np.argmin(np.isfinite(values)))}")
    return values


def return_bins(source: np.ndarray, target: np.ndarray, bins: int) -> np.ndarray:
    """`bins` equal-width bins spanning both the source's and the target's returns (edges [bins + 1])."""
    low = min(float(source.min()), float(target.min()))
    high = max(float(source.max()), float(target.max()))
    if high <= low:
        high = low + 1.0
    return np.linspace(low, high, bins + 1)


def bin_of(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value (the last bin includes its upper edge)."""
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)


def apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to `total`, proportional to `weights` (largest remainders;
    ties go to the lower bin)."""
    quota = total * np.asarray(weights, np.float64) / np.sum(weights)
    counts = np.floor(quota).astype(np.int64)
    remainder = quota - counts
    order = np.lexsort((np.arange(len(quota)), -remainder))
    counts[order[: total - int(counts.sum())]] += 1
    return counts


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """The 1-Wasserstein distance between two samples of returns."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(a, b))


def match_returns(returns: np.ndarray, target: np.ndarray, episodes: int, key, *, bins: int = 20,
                  replace: bool = False) -> tuple[np.ndarray, dict]:
    """Episodes (indices into `returns`, sorted) whose returns follow the target's histogram.

    OG-MARL's recipe: both return samples share `bins` equal-width bins; each bin receives
    `episodes` x the target's share of that bin (largest remainders, so the counts sum to
    `episodes`), drawn uniformly without replacement from the source's episodes in the bin.
    A bin with fewer source episodes than it needs is an error, unless `replace`: then it
    takes every episode it has once and draws the rest again (repeated episodes). A bin the
    target needs but the source lacks entirely is always an error."""
    import jax

    edges = return_bins(returns, target, bins)
    have_bin, want_bin = bin_of(returns, edges), bin_of(target, edges)
    want = apportion(np.bincount(want_bin, minlength=bins), episodes)
    have = np.bincount(have_bin, minlength=bins)

    def span(b):
        return f"[{edges[b]:.4g}, {edges[b + 1]:.4g}{']' if b == bins - 1 else ')'}"

    empty = np.flatnonzero((want > 0) & (have == 0))
    short = np.flatnonzero((want > have) & (have > 0))
    if len(empty) or (len(short) and not replace):
        bad = empty if len(empty) else short
        first = bad[0]
        more = f" (and {len(bad) - 1} more bin{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        advice = ("use coarser --bins or a target within the source's returns" if len(empty)
                  else "pass --replace to repeat episodes, or ask for fewer --episodes or coarser --bins")
        raise ValueError(f"the source has {have[first]} episodes with return in {span(first)}, the target needs "
                         f"{want[first]}{more}; {advice}")
    picked = []
    for b in np.flatnonzero(want):
        members = np.flatnonzero(have_bin == b)
        sub = jax.random.fold_in(key, int(b))
        if want[b] <= len(members):
            picked.append(np.asarray(jax.random.choice(sub, members, (int(want[b]),), replace=False)))
        else:
            extra = jax.random.choice(sub, members, (int(want[b] - len(members)),), replace=True)
            picked.extend([members, np.asarray(extra)])
    index = np.sort(np.concatenate(picked)).astype(np.int64)
    report = {"bins": bins, "bin_edges": edges.tolist(), "target_counts": want.tolist(),
              "source_counts": have.tolist(), "repeated_episodes": int(len(index) - len(np.unique(index))),
              "wasserstein_to_target": {"source": wasserstein(returns, target),
                                        "output": wasserstein(returns[index], target)}}
    return index, report


def _target_source(target_returns) -> Any:
    if not isinstance(target_returns, (str, os.PathLike)):
        return "given"
    path = Path(target_returns).resolve()
    if path.is_dir():
        return {"path": str(path), "fingerprint": dataset_fingerprint(load_dataset(path, check_values=False))}
    return {"path": str(path)}


def subsample(src: str | os.PathLike, out: str | os.PathLike, *, episodes: int | None = None,
              target_returns=None, bins: int = 20, replace: bool = False, seed: int = 0,
              overwrite: bool = False, command: str | None = None) -> dict:
    """Write a subsample of the episodes of `src` to `out`.

    Without `target_returns`: `episodes` distinct episodes drawn uniformly (keyed by `seed`).
    With `target_returns` (a sequence of returns, or a path `read_returns` reads them from):
    `episodes` (default: as many as targets) episodes whose return distribution follows the
    targets' (`match_returns`).
    Episodes keep their order in `src`. The provenance adds the mode, the episodes taken
    (indices into `src`) and, for a target, the histogram report of `match_returns`.

    Returns a summary: the output's path, episodes, steps and mean return, plus the report."""
    out = check_output(out, overwrite, [src])
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if episodes is not None and episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if target_returns is None and episodes is None:
        raise ValueError("give the number of episodes, or target returns to match")
    if isinstance(target_returns, (str, os.PathLike)):
        target = read_returns(target_returns)
    else:
        target = None if target_returns is None else check_returns("target returns", target_returns)
    ds = load_dataset(src)
    key = _key(seed)
    returns = np.asarray(ds.returns, np.float64)
    if target is None:
        if episodes > ds.num_episodes:
            raise ValueError(f"{ds.path} has {ds.num_episodes} episodes; cannot draw {episodes} distinct ones")
        import jax

        index = np.sort(np.asarray(jax.random.permutation(key, ds.num_episodes))[:episodes]).astype(np.int64)
        report = {"mode": "uniform"}
    else:
        index, report = match_returns(returns, target, episodes or len(target), key, bins=bins, replace=replace)
        report = {"mode": "match-returns", "target_episodes": int(len(target)),
                  "target_source": _target_source(target_returns), **report}
    prov = provenance("subsample", [ds], seed=seed, command=command, **report, episodes_taken=index.tolist())
    path = _write(out, ds, episode_arrays(ds, index), prov, overwrite)
    return {**brief(path), "source": str(ds.path), **report}


# ---------------------------------------------------------------------------------------
# combine
# ---------------------------------------------------------------------------------------


def _same_env(first: Dataset, other: Dataset) -> None:
    label = f"{other.path / META_FILE}"
    mine, theirs = first.spec.to_dict(), other.spec.to_dict()
    for field in mine:
        if field != "description" and mine[field] != theirs[field]:
            raise DatasetError(label, f"spec.{field}", f"{mine[field]!r:.80} as in {first.path}",
                               f"{theirs[field]!r:.80}")
    for field in ("env_kwargs", "discount"):
        if first.meta[field] != other.meta[field]:
            raise DatasetError(label, field, f"{first.meta[field]!r:.80} as in {first.path}", f"{other.meta[field]!r:.80}")
    if set(first.score_names) != set(other.score_names):
        raise DatasetError(label, "scores", f"the scores of {first.path}: {sorted(first.score_names)}",
                           f"{sorted(other.score_names)}")


def combine(sources: Sequence[str | os.PathLike], out: str | os.PathLike, *, ids: str = "keep",
            overwrite: bool = False, command: str | None = None) -> dict:
    """Write the episodes of every source, in order, to one dataset at `out`.

    The sources must share the environment (spec, env_kwargs, discount) and score names.
    `ids`: "keep" — an agent id names the same individual in every source (ids shared by
    several sources are counted in the summary); "separate" — the sources' individuals are
    different: each id becomes "<k>:<id>" for the k-th source (from 0). A label column
    (behaviour, policy_ids) missing from some source is dropped (listed as
    `dropped_columns`). The provenance adds the episodes taken from each source."""
    if len(sources) < 2:
        raise ValueError(f"combine needs at least two source datasets, got {len(sources)}")
    if ids not in ID_POLICIES:
        raise ValueError(f"ids must be one of {', '.join(ID_POLICIES)}, got {ids!r}")
    out = check_output(out, overwrite, sources)
    datasets = [load_dataset(path) for path in sources]
    for other in datasets[1:]:
        _same_env(datasets[0], other)
    kept = [c for c in OPTIONAL_LIST_COLUMNS if all(c in ds.episodes for ds in datasets)]
    dropped = [c for c in OPTIONAL_LIST_COLUMNS if c not in kept and any(c in ds.episodes for ds in datasets)]
    parts = [episode_arrays(ds, np.arange(ds.num_episodes), kept) for ds in datasets]
    id_sets = [set(np.unique(part["agent_ids"]).tolist()) for part in parts]
    shared = sorted(i for i in set().union(*id_sets) if sum(i in s for s in id_sets) > 1)
    if ids == "separate":
        for k, part in enumerate(parts):
            part["agent_ids"] = np.char.add(f"{k}:", part["agent_ids"].astype(str))
    arrays = {name: np.concatenate([part[name] for part in parts])
              for name in parts[0] if name != "scores"}
    arrays["scores"] = {name: np.concatenate([part["scores"][name] for part in parts])
                        for name in datasets[0].score_names}
    report = {"ids": ids, "shared_ids": len(shared), "dropped_columns": dropped,
              "episodes_per_source": [ds.num_episodes for ds in datasets]}
    prov = provenance("combine", datasets, seed=None, command=command, **report)
    notes = " | ".join(dict.fromkeys(ds.meta.get("notes", "") for ds in datasets if ds.meta.get("notes")))
    path = _write(out, datasets[0], arrays, prov, overwrite, notes=notes)
    return {**brief(path), "sources": [str(ds.path) for ds in datasets], **report}


# ---------------------------------------------------------------------------------------
# split
# ---------------------------------------------------------------------------------------


def split_episodes(agent_ids: np.ndarray, test_fraction: float, key, *, by: str = "episode",
                   mixed: str = "test") -> tuple[np.ndarray, np.ndarray, dict]:
    """Train and test episode indices (sorted) for the agent-id table [E, A].

    by="episode": round(test_fraction x E) episodes drawn uniformly go to test.
    by="individual": round(test_fraction x I) of the I distinct agent ids drawn uniformly are
    held out; every episode where a held-out id plays goes to test, so train never sees a
    held-out individual. A mixed episode (held-out and other ids together) goes to test
    (mixed="test"; train ids then also appear in test) or is dropped from both (mixed="drop":
    test teams are made of held-out ids only). The test share of episodes therefore differs
    from test_fraction; the report gives it."""
    import jax

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be in (0, 1), got {test_fraction}")
    if by not in SPLIT_BY:
        raise ValueError(f"split by must be one of {', '.join(SPLIT_BY)}, got {by!r}")
    if mixed not in MIXED_POLICIES:
        raise ValueError(f"mixed episodes policy must be one of {', '.join(MIXED_POLICIES)}, got {mixed!r}")
    num_episodes = len(agent_ids)
    if by == "episode":
        if num_episodes < 2:
            raise ValueError(f"cannot split {num_episodes} episode into a train and a test part")
        n_test = min(max(1, round(test_fraction * num_episodes)), num_episodes - 1)
        order = np.asarray(jax.random.permutation(key, num_episodes))
        test = np.sort(order[:n_test])
        train = np.sort(order[n_test:])
        return train.astype(np.int64), test.astype(np.int64), {"by": by, "test_fraction": test_fraction}

    individuals = np.unique(agent_ids)
    if len(individuals) < 2:
        raise ValueError(f"cannot split by individual: only {len(individuals)} distinct agent id")
    n_held = min(max(1, round(test_fraction * len(individuals))), len(individuals) - 1)
    held = np.sort(individuals[np.asarray(jax.random.permutation(key, len(individuals)))[:n_held]])
    is_held = np.isin(agent_ids, held)
    any_held, all_held = is_held.any(axis=1), is_held.all(axis=1)
    is_mixed = any_held & ~all_held
    test = np.flatnonzero(all_held if mixed == "drop" else any_held)
    train = np.flatnonzero(~any_held)
    if len(train) == 0 or len(test) == 0:
        empty = "train" if len(train) == 0 else "test"
        raise ValueError(f"holding out {n_held} of {len(individuals)} individuals leaves the {empty} part empty "
                         f"({int(is_mixed.sum())} of {num_episodes} episodes mix held-out and other ids); "
                         "change --test-fraction or --mixed, or split by episode")
    report = {"by": by, "test_fraction": test_fraction, "mixed": mixed, "individuals": int(len(individuals)),
              "held_out_ids": held.tolist(), "mixed_episodes": int(is_mixed.sum()),
              "dropped_episodes": int(is_mixed.sum()) if mixed == "drop" else 0}
    return train.astype(np.int64), test.astype(np.int64), report


def _check_split_dir(out: Path) -> None:
    """Only an empty directory or an earlier split (train/ and test/ datasets only) may be replaced."""
    if out.is_symlink() or not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; refusing to overwrite it")
    entries = sorted(p.name for p in out.iterdir())
    if entries and (set(entries) - set(SPLIT_PARTS)
                    or not all((out / part / META_FILE).is_file() for part in entries)):
        raise FileExistsError(f"{out} exists and is not a split (train/ and test/ datasets only): it holds "
                              f"{', '.join(entries[:5])}{', ...' if len(entries) > 5 else ''}; refusing to overwrite it")


def split(src: str | os.PathLike, out: str | os.PathLike, *, test_fraction: float, by: str = "episode",
          mixed: str = "test", seed: int = 0, overwrite: bool = False, command: str | None = None) -> dict:
    """Split `src` into two datasets, `out/train` and `out/test` (see `split_episodes`).

    Both are written into a temporary sibling of `out` that replaces it only once both are
    complete. Each one's provenance adds its part, the split report (held-out ids, mixed
    episodes) and the episodes taken (indices into `src`)."""
    out = check_output(out, overwrite, [src], replaceable=_check_split_dir)
    ds = load_dataset(src)
    train, test, report = split_episodes(np.asarray(ds.episodes["agent_ids"]), test_fraction, _key(seed),
                                         by=by, mixed=mixed)
    report["episodes"] = {"train": int(len(train)), "test": int(len(test))}
    report["test_share"] = len(test) / (len(train) + len(test))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for part, index in zip(SPLIT_PARTS, (train, test)):
            prov = provenance("split", [ds], seed=seed, command=command, part=part, **report,
                              episodes_taken=index.tolist())
            _write(tmp / part, ds, episode_arrays(ds, index), prov, overwrite=False)
        if out.exists() or out.is_symlink():
            _check_split_dir(out)
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"dir": str(out), "source": str(ds.path), **{part: brief(out / part) for part in SPLIT_PARTS}, **report}


# ---------------------------------------------------------------------------------------
# Export the episode table as Parquet shards (for `teamsift.value.tables`)
# ---------------------------------------------------------------------------------------

TABLE_FORMAT = "teamsift-episode-table"
TABLE_MANIFEST = "table.json"
#: Columns of episodes.parquet that only mean something beside the step arrays.
TABLE_DROPPED = ("start", "length")


def _check_table_replaceable(out: Path) -> None:
    import json

    try:
        ours = json.loads((out / TABLE_MANIFEST).read_text(encoding="utf-8")).get("format") == TABLE_FORMAT
    except Exception:  # noqa: BLE001
        ours = False
    if out.is_symlink() or not out.is_dir() or (any(out.iterdir()) and not ours):
        raise FileExistsError(f"{out} exists and is not an episode table written by `teamsift data export table` "
                              f"(no {TABLE_MANIFEST} of format {TABLE_FORMAT!r}); refusing to replace it")


def export_table(src: str | os.PathLike, out: str | os.PathLike, *, rows_per_shard: int = 1_000_000,
                 overwrite: bool = False, command: str | None = None) -> dict:
    """Write a dataset's episode table as Parquet shards: ``out/part-00000.parquet``, … of
    at most `rows_per_shard` episodes each, in episode order, plus ``table.json`` (format,
    source path and `dataset_fingerprint`, episodes, shards, columns, command).

    The shards keep every column of ``episodes.parquet`` but the step offsets (`start`,
    `length`): `episode`, `return`, the ``score_<name>`` columns, `agent_ids` and the
    ground-truth list columns — the list layout that `teamsift.value.tables` (and
    ``teamsift value --table``) reads. Refuses an existing `out` unless `overwrite` and
    an earlier export wrote it; written to a hidden sibling and renamed into place.
    Returns the manifest."""
    import json

    import pyarrow.parquet as pq

    from teamsift.data.format import EPISODES_FILE
    from teamsift.fileio import write_directory

    if not isinstance(rows_per_shard, (int, np.integer)) or isinstance(rows_per_shard, bool) or rows_per_shard < 1:
        raise ValueError(f"rows_per_shard: expected an integer >= 1, got {rows_per_shard!r}")
    target = check_output(out, overwrite, [src], replaceable=_check_table_replaceable)
    ds = load_dataset(src)
    table = pq.read_table(Path(ds.path) / EPISODES_FILE)
    table = table.select([name for name in table.column_names if name not in TABLE_DROPPED])
    shards = max(1, -(-table.num_rows // int(rows_per_shard)))
    manifest = {"format": TABLE_FORMAT, "source": source_record(ds), "episodes": table.num_rows,
                "rows_per_shard": int(rows_per_shard), "columns": table.column_names,
                "shards": [f"part-{i:05d}.parquet" for i in range(shards)],
                "command": command_line() if command is None else command}

    def write(tmp: Path) -> dict:
        for i, name in enumerate(manifest["shards"]):
            pq.write_table(table.slice(i * int(rows_per_shard), int(rows_per_shard)), tmp / name)
        (tmp / TABLE_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return {**manifest, "out": str(target)}

    return write_directory(target, write, overwrite=overwrite, check=_check_table_replaceable)
