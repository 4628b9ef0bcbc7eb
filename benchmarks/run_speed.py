"""Speed: every learner against a bare loop of its update, BC and TD3+BC against d3rlpy,
dataset generation against the raw environment, and the peak memory of `train` and
`generate` as the data grow. One command writes results/speed-<device>.{json,md}:

    python benchmarks/run_speed.py                       # every part
    python benchmarks/run_speed.py --parts d3rlpy        # one part; the others' earlier rows are kept
    python benchmarks/run_speed.py --quick               # tiny budgets (a smoke run, not recorded)

Parts:
* learners — `engine.fit` (a metrics row every U/10 updates, U/2 for the online learners,
  whose few updates each run rollouts; an orbax checkpoint every U/2)
  against `jit(vmap over seeds(scan over U updates of learner.update))` drawing the same
  uniform batches (`run_engine_overhead.bare_program`), 5 seeds (2 for the online
  learners), on CN_3ls3l (discrete learners, the online ones) and halfcheetah_2x3
  (continuous); compiled first, then alternating rounds, the fastest of each.
* d3rlpy — BC and TD3+BC at the same networks (256-256 MLPs), optimiser and batch (512
  agent decisions: 256 joint transitions of the 2 agents for teamsift, 512 single-agent
  transitions for d3rlpy, whose input is an agent's observation and one-hot id, as
  teamsift's parameter-shared actor sees it), on halfcheetah_2x3 data. Samples/s = agent
  decisions per second: teamsift's `fit` (1 seed) against d3rlpy's `fit`, and the bare
  update loops of both. d3rlpy 2.8.1 on PyTorch 2.13.0 (CPU) runs in its own environment
  (benchmarks/.venv-d3rlpy, made on first use) through `benchmarks/d3rlpy_reference.py`.
* generation — `benchmarks/speed_generation.py`: generation from the committed pools
  against a jitted vmap + scan of the same environment with random actions.
* memory — peak resident memory of `teamsift train` (BC on synthetic CN_3ls3l-shaped
  data, on the device and streamed; `run_scaling.memory_rows`) and of `teamsift generate`
  (CN_3ls3l from the pools; `speed_generation.generate_memory_rows`) at three dataset
  sizes, each command in its own process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax
import run_engine_overhead as overhead

import teamsift  # noqa: F401  (XLA flags before JAX starts)
from teamsift.fileio import atomic_write_text
from teamsift.machine import describe, machine

ROOT = Path(__file__).resolve().parents[1]
D3RLPY_VENV = ROOT / "benchmarks" / ".venv-d3rlpy"
D3RLPY_PINS = ("torch==2.13.0", "d3rlpy==2.8.1")
CN = ("CN_3ls3l", "50%[r,r,r] + 50%[r,r,m]")
HC = ("halfcheetah_2x3", "100%[r,e]")
#: learner, dataset (env, composition), updates (full, quick), seeds. Budgets: about 10 s a run,
#: and at least a minute for the learners whose 10 metrics rows and 2 checkpoints would
#: otherwise come every few updates, far more often than a real run's (OMAR, MADDPG+CQL, and
#: ARDNEM, whose probe runs at every metrics row); the online learners (environment rollouts
#: in every update) with 2 seeds.
LEARNERS = (
    ("bc", CN, (300, 10), 5), ("mabcq", CN, (100, 6), 5), ("macql", CN, (150, 6), 5), ("icq", CN, (100, 6), 5),
    ("sit", CN, (100, 6), 5), ("ardnem", CN, (1000, 6), 5), ("td3bc", HC, (300, 10), 5), ("omar", HC, (100, 4), 5),
    ("maddpg_cql", HC, (100, 4), 5), ("magail", CN, (6, 2), 2), ("mild2", CN, (4, 2), 2), ("mappo", None, (10, 2), 2),
)


# --- learners against bare loops ------------------------------------------------------------------

def build(name: str, dataset, updates: int, seeds: int):
    """(learner, inputs, start, env) of a case, with the learner's paper defaults."""
    from teamsift.algos import bc, mabcq, magail, mild2, pipeline
    from teamsift.collect import ppo
    from teamsift.envs import make

    if name == "mappo":
        env = make("CN_3ls3l")
        config = ppo.config_for("CN_3ls3l")
        return ppo.make_learner(config, env), {}, None, None
    if name in ("magail", "mild2"):
        env = make("CN_3ls3l")
        module = magail if name == "magail" else mild2
        config = (magail.config_for("CN_3ls3l", bc_warm_start=False) if name == "magail"
                  else mild2.config_for())
        return module.learner(config, dataset, env), {}, None, env
    learner, inputs = overhead.build(name, dataset, updates)
    start = None
    if learner.needs_start:  # MABCQ: the behaviour model's parameters (untrained: speed only)
        spec = pipeline.make_spec(name)
        behaviour = bc.learner(mabcq.behaviour_config(spec.hyperparameters), dataset)
        arrays = behaviour.prepare(dataset, {})
        keys = jax.random.split(jax.random.key(1), seeds)
        start = jax.jit(jax.vmap(lambda k: behaviour.init(k, arrays).params))(keys)
    return learner, inputs, start, None


def fit_runner(learner, dataset, inputs, updates: int, seeds: int, tmp: Path, start, env, logs: int = 10):
    """`fit` with `logs` metrics rows (and probes) and 2 checkpoints; calling the returned
    function times one run (`FitResult.train_seconds`)."""
    from teamsift.engine import RunConfig, fit

    runs = iter(range(10**6))

    def once() -> float:
        run = RunConfig(updates=updates, seeds=seeds, log_every=max(1, updates // logs),
                        checkpoint_every=max(1, updates // 2), run_dir=str(tmp / f"run-{next(runs)}"), progress=False)
        return fit(learner, dataset, jax.random.key(0), run, inputs=inputs, start=start, env=env).train_seconds

    once()  # compile
    return once


def learner_rows(quick: bool, rounds: int, only: set[str] | None, data_dir: Path) -> list[dict]:
    rows = []
    for name, data, budgets, seeds in LEARNERS:
        if only and name not in only:
            continue
        dataset = None if data is None else overhead.dataset_for(*data, 100 if quick else 1000, data_dir)
        updates = budgets[1] if quick else budgets[0]
        learner, inputs, start, env = build(name, dataset, updates, seeds)
        with tempfile.TemporaryDirectory() as tmp:
            bare = overhead.bare_runner(learner, dataset, inputs, updates, seeds, start)
            logs = 10 if data is not None and env is None else 2  # the online learners: a few long updates
            fitted = fit_runner(learner, dataset, inputs, updates, seeds, Path(tmp), start, env, logs)
            bare_times, fit_times = overhead.interleaved(bare, fitted, rounds)
        rows.append({"learner": name, "env": "CN_3ls3l" if data is None else data[0], "updates": updates,
                     "seeds": seeds, "bare_seconds": bare_times, "fit_seconds": fit_times,
                     "bare_updates_per_s": updates / min(bare_times), "fit_updates_per_s": updates / min(fit_times),
                     "ratio": min(bare_times) / min(fit_times)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


# --- against d3rlpy ---------------------------------------------------------------------------------

def d3rlpy_python() -> Path:
    """The d3rlpy environment's interpreter, made on first use (CPU PyTorch, pinned)."""
    python = D3RLPY_VENV / "bin" / "python"
    if not python.is_file():
        print(f"making {D3RLPY_VENV} ({', '.join(D3RLPY_PINS)}) ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(D3RLPY_VENV)], check=True)
        for pin in D3RLPY_PINS:  # torch first: pip then takes the CPU build d3rlpy's range admits
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", pin], check=True)
    return python


def export_agent_transitions(dataset, path: Path) -> int:
    """The dataset as single-agent transitions for d3rlpy: every episode's agent-0 trajectory,
    then agent 1's, ...; observation ⊕ one-hot agent id; the team reward; the episode's end
    as terminal or timeout. Returns the number of rows."""
    obs, actions = np.asarray(dataset.steps["obs"]), np.clip(np.asarray(dataset.steps["actions"]), -1, 1)
    reward = np.asarray(dataset.steps["reward"])
    terminated = np.asarray(dataset.steps["terminated"])
    agents = obs.shape[1]
    parts = {"observations": [], "actions": [], "rewards": [], "terminals": [], "timeouts": []}
    for first, length in zip(dataset.starts, dataset.lengths):
        rows = slice(int(first), int(first) + int(length))
        for agent in range(agents):
            ident = np.zeros((int(length), agents), np.float32)
            ident[:, agent] = 1.0
            parts["observations"].append(np.concatenate([obs[rows, agent], ident], axis=1))
            parts["actions"].append(actions[rows, agent])
            parts["rewards"].append(reward[rows, None])
            end_terminal = np.zeros(int(length), np.float32)
            end_timeout = np.zeros(int(length), np.float32)
            end_terminal[-1] = float(terminated[rows][-1])
            end_timeout[-1] = 1.0 - end_terminal[-1]  # d3rlpy needs every episode to end one way or the other
            parts["terminals"].append(end_terminal)
            parts["timeouts"].append(end_timeout)
    arrays = {k: np.concatenate(v).astype(np.float32) for k, v in parts.items()}
    np.savez(path, **arrays)
    return len(arrays["rewards"])


def teamsift_runners(algo: str, dataset, updates: int, tmp: Path):
    """teamsift's bare loop and `fit` (1 seed) at the comparison's networks and batch."""
    from teamsift.algos import bc, td3bc

    if algo == "td3bc":
        learner = td3bc.learner(td3bc.TD3BCConfig(batch_size=256), dataset)
    else:
        learner = bc.learner(bc.BCConfig(hidden=(256, 256), recurrent=False, optimizer="adam", batch_size=32),
                             dataset)  # MLP batches: 32 · 8 = 256 joint transitions
    return overhead.bare_runner(learner, dataset, {}, updates, 1), fit_runner(learner, dataset, {}, updates, 1, tmp,
                                                                              None, None)


def d3rlpy_round(python: Path, data: Path, algo: str, batch: int, updates: int) -> dict:
    """One process of `d3rlpy_reference.py`: a warm-up `fit`, then one timed `fit` and one
    timed update loop."""
    done = subprocess.run([str(python), str(ROOT / "benchmarks" / "d3rlpy_reference.py"), str(data), "--algo", algo,
                           "--batch", str(batch), "--updates", str(updates), "--rounds", "1"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"d3rlpy_reference.py failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def d3rlpy_rows(quick: bool, rounds: int, data_dir: Path) -> list[dict]:
    """Rounds alternate between teamsift (bare loop, fit) and d3rlpy (fit, update loop), so
    that whatever else the machine does hits both alike; the fastest of each is kept."""
    dataset = overhead.dataset_for(*HC, 100 if quick else 1000, data_dir)
    batch = 256 * dataset.spec.num_agents  # agent decisions per update
    python = d3rlpy_python()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "agents.npz"
        export_agent_transitions(dataset, data)
        for algo, updates in (("bc", 50 if quick else 1000), ("td3bc", 20 if quick else 500)):
            bare, fitted = teamsift_runners(algo, dataset, updates, Path(tmp) / algo)
            ours = {"bare_seconds": [], "fit_seconds": []}
            theirs = {"fit_seconds": [], "update_seconds": []}
            for _ in range(rounds):
                ours["bare_seconds"].append(bare())
                ours["fit_seconds"].append(fitted())
                one = d3rlpy_round(python, data, algo, batch, updates)
                theirs["fit_seconds"] += one["fit_seconds"]
                theirs["update_seconds"] += one["update_seconds"]
            theirs.update({k: one[k] for k in ("torch", "d3rlpy", "threads")})
            samples = batch * updates
            row = {"algo": algo, "updates": updates, "batch_decisions": batch, "hidden": [256, 256],
                   "teamsift_fit_samples_per_s": samples / min(ours["fit_seconds"]),
                   "teamsift_update_samples_per_s": samples / min(ours["bare_seconds"]),
                   "d3rlpy_fit_samples_per_s": samples / min(theirs["fit_seconds"]),
                   "d3rlpy_update_samples_per_s": samples / min(theirs["update_seconds"]),
                   "teamsift": ours, "d3rlpy": theirs}
            row["fit_speedup"] = row["teamsift_fit_samples_per_s"] / row["d3rlpy_fit_samples_per_s"]
            row["update_speedup"] = row["teamsift_update_samples_per_s"] / row["d3rlpy_update_samples_per_s"]
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("teamsift", "d3rlpy")}), file=sys.stderr,
                  flush=True)
    return rows


# --- generation and memory ---------------------------------------------------------------------------

def generation_rows(quick: bool) -> list[dict]:
    import speed_generation

    return speed_generation.generation_rows(quick)


def memory_rows(quick: bool) -> list[dict]:
    import run_scaling
    import speed_generation

    sizes = [50, 200] if quick else [5_000, 20_000, 80_000]
    with tempfile.TemporaryDirectory() as tmp:
        train = [{**row, "command": f"train (data on the {row['placement']})" if row["placement"] == "device"
                  else "train (streamed)"} for row in run_scaling.memory_rows(Path(tmp), sizes, 20 if quick else 200)]
    # generate also at four times the largest size: what grows with the episodes shows there.
    generate = [{**row, "command": "generate"}
                for row in speed_generation.generate_memory_rows(sizes + ([] if quick else [4 * sizes[-1]]))]
    return train + generate


# --- report --------------------------------------------------------------------------------------------

def render(report: dict) -> str:
    lines = ["# Speed: learners, d3rlpy, generation, memory", "", f"Machine: {report['machine']}", "",
             "Commands: " + ", ".join(f"`{c}`" for c in report["commands"]), ""]
    rows = report.get("learners")
    if rows:
        lines += ["## Learners against a bare loop of their update", "",
                  "`fit` (a metrics row every U/10 updates, U/2 for the online learners; an orbax checkpoint "
                  "every U/2) against "
                  "`jit(vmap(scan(update)))` drawing the same batches; the fastest of alternating rounds "
                  "after compiling.", "",
                  "| learner | dataset | updates × seeds | bare updates/s | fit updates/s | fit / bare |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['learner']} | {r['env']} | {r['updates']:,} × {r['seeds']} | "
                         f"{r['bare_updates_per_s']:.2f} | {r['fit_updates_per_s']:.2f} | {r['ratio']:.3f} |")
        lines.append("")
    rows = report.get("d3rlpy")
    if rows:
        theirs = rows[0]["d3rlpy"]
        lines += ["## BC and TD3+BC against d3rlpy", "",
                  f"halfcheetah_2x3 data; 256-256 MLPs; {rows[0]['batch_decisions']} agent decisions per update; "
                  f"1 seed; d3rlpy {theirs['d3rlpy']} on PyTorch {theirs['torch']} ({theirs['threads']} threads; teamsift's "
                  "XLA:CPU runs each program on one thread, `teamsift.XLA_CPU_FLAGS`). "
                  "Samples/s = agent decisions trained per second.", "",
                  "| learner | teamsift fit | d3rlpy fit | fit speed-up | teamsift update loop | d3rlpy update loop "
                  "| update speed-up |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['algo']} | {r['teamsift_fit_samples_per_s']:,.0f} | {r['d3rlpy_fit_samples_per_s']:,.0f} "
                         f"| {r['fit_speedup']:.2f}× | {r['teamsift_update_samples_per_s']:,.0f} "
                         f"| {r['d3rlpy_update_samples_per_s']:,.0f} | {r['update_speedup']:.2f}× |")
        lines.append("")
    rows = report.get("generation")
    if rows:
        lines += ["## Generation against the raw environment", ""]
        keys = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for r in rows:
            lines.append("| " + " | ".join(_cell(r[k]) for k in keys) + " |")
        lines.append("")
    rows = report.get("memory")
    if rows:
        lines += ["## Peak memory", "", "Each command in its own process (`ru_maxrss`).", "",
                  "| command | episodes | dataset MiB | peak RSS MiB | peak − dataset |", "|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['command']} | {r['episodes']:,} | {r['dataset_mib']:.0f} | {r['peak_rss_mib']:.0f} "
                         f"| {r['peak_rss_mib'] - r['dataset_mib']:.0f} |")
        lines.append("")
        generate = sorted((r for r in rows if r["command"] == "generate"), key=lambda r: r["episodes"])
        if len(generate) > 1:  # the two largest: both play the most environment slots (`default_slots`)
            small, large = generate[-2], generate[-1]
            grown = large["peak_rss_mib"] - small["peak_rss_mib"]
            data = large["dataset_mib"] - small["dataset_mib"]
            per_episode = grown * 2**20 / (large["episodes"] - small["episodes"])
            lines += [f"From {small['episodes']:,} to {large['episodes']:,} episodes, `generate`'s peak grows by "
                      f"{grown:,.0f} MiB while the dataset grows by {data:,.0f} MiB: {grown / data:.1%} of the data "
                      f"it writes, {per_episode:,.0f} bytes per episode.", ""]
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="learners,d3rlpy,generation,memory")
    parser.add_argument("--only", help="learners part: comma-separated learners")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=Path("datasets/bench-engine"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    unknown = set(parts) - {"learners", "d3rlpy", "generation", "memory"}
    if unknown:
        parser.error(f"--parts: unknown {sorted(unknown)}; expected learners, d3rlpy, generation, memory")
    info = machine()
    path = args.out / f"speed-{info['device'].split(':')[0]}.json"
    report = json.loads(path.read_text()) if path.is_file() and not args.quick else {}
    started = time.perf_counter()
    only = set(args.only.split(",")) if args.only else None
    if "learners" in parts:
        fresh = learner_rows(args.quick, args.rounds, only, args.data_dir)
        kept = [r for r in report.get("learners", []) if only and r["learner"] not in only]
        order = [case[0] for case in LEARNERS]
        report["learners"] = sorted(kept + fresh, key=lambda r: order.index(r["learner"]))
    if "d3rlpy" in parts:
        report["d3rlpy"] = d3rlpy_rows(args.quick, args.rounds, args.data_dir)
    if "generation" in parts:
        report["generation"] = generation_rows(args.quick)
    if "memory" in parts:
        report["memory"] = memory_rows(args.quick)
    report["machine"] = describe(info)
    command = "python benchmarks/run_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report.setdefault("commands", [])
    if command.strip() not in report["commands"]:
        report["commands"].append(command.strip())
    print(render(report))
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(report, indent=2) + "\n")
        atomic_write_text(path.with_suffix(".md"), render(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
