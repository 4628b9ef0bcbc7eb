"""Exchange Values beyond memory: the dataset estimator over 10⁶, 10⁷ and 10⁸ episodes in
Parquet, computed by DuckDB (`teamsift.value.tables.table_ev`) under a memory limit;
wall time and peak RSS per size (issue 20).

Data (synthetic, written by DuckDB itself with ``COPY (SELECT … FROM range(…)) TO … (FORMAT
parquet)``, so generation is out of core too): P individuals (default 10⁵), groups of 2–5
(uniform), the list layout of a teamsift episode table (``agent_ids`` list<int32>,
``return`` float64) in shards of at most 5·10⁶ episodes. Individual x has a hidden skill
s(x) uniform in [−0.5, 0.5); an episode's score is the sum of its members' skills plus
uniform noise in [−1, 1). Everything is a hash of (episode, slot), so the data are the same
on every run.

Each size is valued in a fresh subprocess, which reports its own peak RSS
(`getrusage(RUSAGE_SELF).ru_maxrss`: the interpreter, numpy, pyarrow, DuckDB and its
threads), its RSS after the imports, and the wall time of `table_ev` alone. For the sizes
up to --in-memory-max the in-memory `dataset_ev` runs too (in its own subprocess, on the
same table read with pyarrow; each group padded to width 5 by repeating its first
member, which leaves every membership set as it is), as the reference for the values and
for memory that grows with the data.

    python benchmarks/run_ev_tables.py [--sizes 1e6,1e7,1e8] [--memory-limit 2GB] [--keep]

Writes benchmarks/results/ev-tables-cpu.{md,json}; the scratch data (about 1.8 GB at
10⁸) go to --scratch and are deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARD_EPISODES = 5_000_000
MAX_GROUP = 5


def generate(directory: Path, episodes: int, population: int, threads: int, memory_limit: str) -> dict:
    """Write `episodes` episodes as Parquet shards into `directory` (module doc)."""
    import duckdb

    directory.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit,
                                 "preserve_insertion_order": False})
    con.execute(f"SET temp_directory = '{directory.parent / 'duckdb-spill'}'")
    start = time.perf_counter()
    shards = 0
    for lo in range(0, episodes, SHARD_EPISODES):
        hi = min(episodes, lo + SHARD_EPISODES)
        con.execute(f"""
            COPY (
              SELECT episode, agent_ids,
                     list_sum(list_transform(agent_ids, lambda x: (hash(x) % 1000) / 1000.0 - 0.5))
                       + ((hash(episode, 'noise') % 1000000) / 1000000.0 - 0.5) * 2.0 AS "return"
              FROM (SELECT i AS episode,
                           list_transform(range(2 + (hash(i, 'size') % 4)::BIGINT),
                                          lambda j: (hash(i, j) % {population})::INTEGER) AS agent_ids
                    FROM range({lo}, {hi}) t(i))
            ) TO '{directory / f'part-{shards:05d}.parquet'}' (FORMAT parquet, COMPRESSION zstd)""")
        shards += 1
    con.close()
    size = sum(p.stat().st_size for p in directory.glob("*.parquet"))
    return {"seconds": time.perf_counter() - start, "shards": shards, "bytes": size}


# --- the measured subprocesses ---------------------------------------------------------------


def _rss_now_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def child_table(source: str, memory_limit: str, threads: int | None, out: str, spill: str) -> dict:
    import resource

    import numpy as np

    from teamsift.value.tables import table_ev

    before = _rss_now_mib()
    start = time.perf_counter()
    result = table_ev(source, memory_limit=memory_limit, threads=threads, temp_directory=spill)
    seconds = time.perf_counter() - start
    np.savez(out, ids=result.ids, values=result.values, stderr=result.stderr, counts=result.counts)
    return {"seconds": seconds, "rss_after_imports_mib": before,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "individuals": len(result.ids)}


def child_memory(source: str, out: str) -> dict:
    import resource

    import numpy as np
    import pyarrow.dataset as ds

    from teamsift.value.exchange import dataset_ev

    before = _rss_now_mib()
    start = time.perf_counter()
    table = ds.dataset(sorted(glob.glob(source)), format="parquet").to_table(columns=["agent_ids", "return"])
    lists = table.column("agent_ids").combine_chunks()
    flat = lists.flatten().to_numpy().astype(np.int64)
    offsets = lists.offsets.to_numpy() - lists.offsets[0].as_py()
    lengths = np.diff(offsets)
    del lists
    ids = np.repeat(flat[offsets[:-1]], MAX_GROUP).reshape(-1, MAX_GROUP)  # first member in every slot …
    for j in range(MAX_GROUP):  # … then the real member where the group has slot j
        has = lengths > j
        ids[has, j] = flat[offsets[:-1][has] + j]
    del flat
    scores = table.column("return").to_numpy()
    del table
    result = dataset_ev(ids, scores)
    seconds = time.perf_counter() - start
    np.savez(out, ids=result.ids, values=result.values, stderr=result.stderr, counts=result.counts)
    return {"seconds": seconds, "rss_after_imports_mib": before,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "individuals": len(result.ids)}


def _bytes_under(directory: Path) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def run_child(args: list[str], timeout: float, spill: Path | None = None) -> dict:
    """Run this script's --child in a fresh process; its JSON report, plus the largest size
    `spill` (DuckDB's temp_directory) reached, sampled every 0.2 s."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "JAX_PLATFORMS": "cpu"}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=out, stderr=err, env=env)
        spilled = 0
        while child.poll() is None:
            if spill is not None:
                spilled = max(spilled, _bytes_under(spill))
            if time.perf_counter() - start > timeout:
                child.kill()
            time.sleep(0.2)
        out.seek(0), err.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"child {args} failed ({child.returncode}):\n{err.read()[-3000:]}")
        report = json.loads(out.read().strip().splitlines()[-1])
    report["process_seconds"] = time.perf_counter() - start
    if spill is not None:
        report["peak_spill_mib"] = spilled / 2 ** 20
    return report


def compare(a: str, b: str) -> dict:
    import numpy as np

    x, y = np.load(a), np.load(b)
    assert x["ids"].tolist() == y["ids"].tolist() and x["counts"].tolist() == y["counts"].tolist()
    finite = np.isfinite(x["stderr"]) & np.isfinite(y["stderr"])
    return {"max_abs_value_diff": float(np.nanmax(np.abs(x["values"] - y["values"]))),
            "max_abs_stderr_diff": float(np.max(np.abs(x["stderr"][finite] - y["stderr"][finite])))}


def skill_spearman(result_file: str) -> float:
    """Spearman of the values against the hidden skills (a check that the values mean something)."""
    import duckdb
    import numpy as np

    from teamsift.value.accuracy import spearman

    r = np.load(result_file)
    skills = duckdb.execute("SELECT (hash(x::INTEGER) % 1000) / 1000.0 - 0.5 FROM unnest($ids) t(x)",
                            {"ids": r["ids"].tolist()}).fetchnumpy()
    skill = np.asarray(next(iter(skills.values())), np.float64)
    finite = np.isfinite(r["values"])
    return float(spearman(r["values"][finite], skill[finite]))


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e6,1e7,1e8", help="episode counts, comma-separated")
    parser.add_argument("--population", type=int, default=100_000)
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--large", default="1e8:1e7:512MB",
                        help="extra runs EPISODES:POPULATION:MEMORY_LIMIT (comma-separated; '' for none): a "
                             "population whose per-individual hash table outgrows a tighter limit")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: every core)")
    parser.add_argument("--in-memory-max", type=float, default=1e7,
                        help="also run the in-memory dataset_ev up to this many episodes")
    parser.add_argument("--scratch", default=None, help="scratch directory (default: a fresh one under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated shards")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per measured subprocess")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ev-tables-cpu"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "table":
            source, memory_limit, threads, out, spill = rest
            report = child_table(source, memory_limit, None if threads == "all" else int(threads), out, spill)
        else:
            report = child_memory(*rest)
        print(json.dumps(report))
        return

    from teamsift.fileio import atomic_write_text
    from teamsift.machine import describe, machine

    runs = [(int(float(e)), args.population, args.memory_limit) for e in args.sizes.split(",") if e]
    runs += [(int(float(e)), int(float(p)), m) for e, p, m in (r.split(":") for r in args.large.split(",") if r)]
    scratch = Path(args.scratch) if args.scratch else Path(tempfile.mkdtemp(prefix="ev-tables-"))
    threads = args.threads or os.cpu_count()
    command = "python benchmarks/run_ev_tables.py" + "".join(
        f" {a}" for a in map(shlex.quote, sys.argv[1:]))
    rows = []
    try:
        for episodes, population, memory_limit in runs:
            name = f"{episodes}-{population}-{memory_limit}"
            directory = scratch / f"episodes-{name}"
            print(f"[{episodes:,} episodes, {population:,} individuals, memory limit {memory_limit}] generating …",
                  flush=True)
            made = generate(directory, episodes, population, threads, "2GB")
            print(f"  {made['shards']} shards, {made['bytes'] / 2**20:,.0f} MiB in {made['seconds']:.1f} s", flush=True)
            source = str(directory / "*.parquet")
            table_file = str(scratch / f"table-{name}.npz")
            spill = scratch / f"spill-{name}"
            spill.mkdir()
            load = os.getloadavg()[0]
            row = {"episodes": episodes, "population": population, "memory_limit": memory_limit, "generate": made,
                   "table_ev": run_child(["table", source, memory_limit, str(args.threads) if args.threads else "all",
                                          table_file, str(spill)], args.timeout, spill)}
            row["load_average"] = [load, os.getloadavg()[0]]  # 1-minute load before and after: others' work
            row["spearman_vs_skill"] = skill_spearman(table_file)
            print(f"  table_ev: {row['table_ev']['seconds']:.1f} s, peak RSS {row['table_ev']['peak_rss_mib']:.0f} MiB, "
                  f"spilled {row['table_ev']['peak_spill_mib']:.0f} MiB", flush=True)
            if episodes <= args.in_memory_max:
                memory_file = str(scratch / f"memory-{name}.npz")
                row["dataset_ev"] = run_child(["memory", source, memory_file], args.timeout)
                row["agreement"] = compare(table_file, memory_file)
                print(f"  dataset_ev (in memory): {row['dataset_ev']['seconds']:.1f} s, peak RSS "
                      f"{row['dataset_ev']['peak_rss_mib']:.0f} MiB; {row['agreement']}", flush=True)
            if not args.keep:
                shutil.rmtree(directory)
            rows.append(row)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    import duckdb
    import pyarrow

    info = machine()
    report = {"machine": f"{describe(info)}, DuckDB {duckdb.__version__}, pyarrow {pyarrow.__version__}",
              "command": command, "threads": threads, "rows": rows}
    lines = [
        "# Exchange Values beyond memory: DuckDB over Parquet shards", "",
        f"Machine: {report['machine']}", "", f"Command: `{command}`", "",
        "Synthetic episode tables in the list layout (`agent_ids` list<int32>, `return` float64), groups of 2–5, "
        f"shards of ≤ {SHARD_EPISODES:,} episodes, written by DuckDB (`COPY … FROM range(…)`). `table_ev` with "
        f"{threads} DuckDB threads under the memory limit shown, in a fresh subprocess per run; peak RSS is that "
        "process's own `ru_maxrss` (interpreter, numpy, pyarrow, DuckDB and the result arrays), the RSS after the "
        "imports beside it; spill is the largest size DuckDB's temp_directory reached. The in-memory `dataset_ev` "
        "(pyarrow read + numpy) runs on the same table up to "
        f"{int(args.in_memory_max):,} episodes; Δ is the largest difference of the two results' values. The machine "
        "is shared: the 1-minute load average before and after each table_ev run says how busy it was.", "",
        "| episodes | individuals | shards (size) | memory limit | table_ev time | episodes/s | peak RSS "
        "| RSS after imports | spill | dataset_ev time | dataset_ev peak RSS | max \\|Δ value\\| | Spearman vs skill "
        "| load before/after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        t, m = row["table_ev"], row.get("dataset_ev")
        memory = ("—", "—", "—") if m is None else (f"{m['seconds']:.1f} s", f"{m['peak_rss_mib']:,.0f} MiB",
                                                     f"{row['agreement']['max_abs_value_diff']:.1e}")
        lines.append(
            f"| {row['episodes']:,} | {row['population']:,} | {row['generate']['shards']} "
            f"({row['generate']['bytes'] / 2**20:,.0f} MiB) | {row['memory_limit']} | {t['seconds']:.1f} s "
            f"| {row['episodes'] / t['seconds']:,.0f} | {t['peak_rss_mib']:,.0f} MiB | {t['rss_after_imports_mib']:.0f} MiB "
            f"| {t['peak_spill_mib']:,.0f} MiB | {' | '.join(memory)} | {row['spearman_vs_skill']:.3f} "
            f"| {row['load_average'][0]:.1f} / {row['load_average'][1]:.1f} |")
    lines += ["", "Generation (not part of the valuation): " + "; ".join(
        f"{r['episodes']:,} episodes × {r['population']:,} individuals in {r['generate']['seconds']:.0f} s"
        for r in rows) + "."]
    atomic_write_text(args.out + ".json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(args.out + ".md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
