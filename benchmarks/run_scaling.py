"""Scale: memory of the streaming placement as data grows, its throughput against the
on-device placement, and updates/s over 1, 2 and 4 devices.

    python benchmarks/run_scaling.py                # results/scaling-<device>.{json,md}
    python benchmarks/run_scaling.py --quick        # tiny sizes (a smoke run, not recorded)

* Memory: `teamsift train DS --algo bc --mlp --data-placement stream|device` on synthetic
  datasets of the CN_3ls3l shape (3 agents, 18-wide observations, a 54-wide state, 5
  actions, 25 steps) of 1×, 4× and 40× the smallest size; the peak resident memory of each
  command (its own process, `ru_maxrss`) in MiB, next to the dataset's size.
* Throughput: `fit` of BC (joint transitions, batch 256) and ICQ (whole episodes, batch 32)
  on the smallest dataset (it fits), updates/s with the data streamed and on the device; the
  fastest of 3 alternating rounds, compiled first, in one process.
* Devices: updates/s of BC with 4 seeds over 1, 2 and 4 devices (forced host devices, one
  process per count; on this 2-core CPU the devices share two cores, so this shows the seeds
  laid out over devices, not a speed-up).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
SHAPE = dict(num_agents=3, obs_dim=18, state_dim=54, num_actions=5, episode_length=25, env_id="CN_3ls3l-shaped")


def make_dataset(path: Path, episodes: int, seed: int = 0) -> Path:
    """A synthetic dataset of `episodes` full-length episodes, written in slices so the
    writer itself does not hold 40× the data."""
    from teamsift.data import write_dataset
    from teamsift.data.testing import make_arrays, tiny_spec

    if (path / "meta.json").is_file():
        return path
    spec = tiny_spec(**SHAPE)
    spec = dataclasses.replace(spec, obs_widths=(SHAPE["obs_dim"],) * SHAPE["num_agents"])
    lengths = np.full(episodes, SHAPE["episode_length"])
    write_dataset(path, **make_arrays(spec, lengths, seed=seed))
    return path


def dataset_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


PEAK = """
import resource, sys, atexit
def report():
    with open({out!r}, "w") as handle:
        handle.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
atexit.register(report)
from teamsift.cli.main import main
sys.argv = ["teamsift"] + {args!r}
main()
"""


def peak_rss_mib(args: list[str], workdir: Path) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of one `teamsift` command in its own process."""
    out = workdir / "peak.txt"
    started = time.perf_counter()
    # Through `sh`, which forks the command: Linux carries a process's peak RSS across exec, so
    # a command started straight from a large benchmark process would report that process's peak.
    done = subprocess.run(["sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-c",
                           PEAK.format(out=str(out), args=args)],
                          env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return int(out.read_text()) / 1024, seconds


def memory_rows(data_dir: Path, sizes: list[int], updates: int) -> list[dict]:
    rows = []
    for episodes in sizes:
        path = make_dataset(data_dir / f"cn-shaped-{episodes}", episodes)
        for placement in ("stream", "device"):
            with tempfile.TemporaryDirectory() as tmp:
                args = ["train", str(path), "--algo", "bc", "--mlp", "--updates", str(updates), "--eval-episodes", "0",
                        "--log-every", str(max(1, updates // 4)), "--data-placement", placement, "--json",
                        "--run-dir", str(Path(tmp) / "run")]
                mib, seconds = peak_rss_mib(args, Path(tmp))
            rows.append({"episodes": episodes, "steps": episodes * SHAPE["episode_length"],
                         "dataset_mib": dataset_bytes(path) / 2**20, "placement": placement, "peak_rss_mib": mib,
                         "seconds": seconds})
            print(rows[-1], flush=True)
    return rows


def throughput_rows(path: Path, updates: int, rounds: int) -> list[dict]:
    import jax

    from teamsift.algos import bc, icq
    from teamsift.data import load_dataset
    from teamsift.engine import RunConfig, fit

    dataset = load_dataset(path)
    learners = {"bc": bc.learner(bc.BCConfig(recurrent=False), dataset), "icq": icq.learner(icq.ICQConfig(), dataset)}
    rows = []
    for name, learner in learners.items():
        n = updates if name == "bc" else max(1, updates // 10)
        best = {}
        for round_ in range(rounds + 1):  # round 0 compiles
            for placement in ("device", "stream"):
                run = RunConfig(updates=n, seeds=1, log_every=max(1, n // 4), progress=False, data_placement=placement)
                result = fit(learner, dataset, jax.random.key(0), run)
                if round_:
                    best[placement] = max(best.get(placement, 0.0), n / result.train_seconds)
        rows.append({"learner": name, "updates": n, "device_updates_per_s": best["device"],
                     "stream_updates_per_s": best["stream"], "ratio": best["stream"] / best["device"]})
        print(rows[-1], flush=True)
    return rows


DEVICES = """
import sys, time, jax
from teamsift.algos import bc
from teamsift.data import load_dataset
from teamsift.engine import RunConfig, fit
dataset = load_dataset({path!r})
learner = bc.learner(bc.BCConfig(recurrent=False), dataset)
best = 0.0
for round_ in range({rounds} + 1):
    run = RunConfig(updates={updates}, seeds=4, log_every={updates} // 4, progress=False)
    result = fit(learner, dataset, jax.random.key(0), run)
    if round_:
        best = max(best, {updates} / result.train_seconds)
print(jax.device_count(), result.placement["mesh"], best)
"""


def device_rows(path: Path, updates: int, rounds: int) -> list[dict]:
    rows = []
    for count in (1, 2, 4):
        env = {**os.environ, "PYTHONPATH": SRC, "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}"}
        code = DEVICES.format(path=str(path), updates=updates, rounds=rounds)
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        last = done.stdout.strip().splitlines()[-1]
        devices, rest = last.split(" ", 1)
        mesh, rate = rest.rsplit(" ", 1)
        rate = float(rate)
        rows.append({"devices": int(devices), "mesh": mesh, "seeds": 4, "updates_per_s": rate})
        print(rows[-1], flush=True)
    return rows


def render(result: dict) -> str:
    lines = ["# Scale: streamed data, devices", "", f"Command: `{result['command']}`", "",
             f"Machine: {result['machine']}", "", "## Peak memory as the dataset grows",
             "", "`teamsift train DS --algo bc --mlp --updates U --data-placement P` (its own process, peak RSS).", "",
             "| episodes | steps | dataset MiB | placement | peak RSS MiB | seconds |", "|---|---|---|---|---|---|"]
    for r in result["memory"]:
        lines.append(f"| {r['episodes']:,} | {r['steps']:,} | {r['dataset_mib']:.0f} | {r['placement']} | "
                     f"{r['peak_rss_mib']:.0f} | {r['seconds']:.1f} |")
    lines += ["", "Streamed, the peak stays within 64 MiB of the smallest run's while the data grow 40× (device: +",
              "the data). Memory-maps of at most 64 MiB in all (`teamsift.data.pages.RESIDENT_BYTES`) stay resident —",
              "the 4× row's 43 MiB of observations — and larger ones are read 512 rows at a time and given back",
              "(`GATHER_ROWS`), so the 40× row holds less than the 4× one. What still grows with the data is the",
              "row → episode index (8 bytes a step).",
              "", "## Streaming throughput (the data fits on the device)", "",
              "| learner | updates | on device (updates/s) | streamed (updates/s) | streamed / on device |",
              "|---|---|---|---|---|"]
    for r in result["throughput"]:
        lines.append(f"| {r['learner']} | {r['updates']} | {r['device_updates_per_s']:.1f} | "
                     f"{r['stream_updates_per_s']:.1f} | {r['ratio']:.2f} |")
    lines += ["", "Each update's items are drawn on the device one block ahead, their rows gathered on the host by a",
              "second thread while the block before trains. ICQ reads whole episodes (contiguous rows) and keeps up",
              "fully; BC's 256 random transitions per update cost the host more than its sub-millisecond update.",
              "", "## Seeds over devices (forced host devices on this CPU)", "",
              "| devices | mesh | seeds | updates/s |", "|---|---|---|---|"]
    for r in result["devices"]:
        lines.append(f"| {r['devices']} | {r['mesh']} | {r['seeds']} | {r['updates_per_s']:.1f} |")
    lines += ["", "Forced host devices split one CPU's threads between them; the rise with more devices is XLA running",
              "the per-device programs side by side on the two cores, not more hardware. No GPU was lent to this",
              "task: updates/s over several GPUs is not measured yet."]
    return "\n".join(lines + [""]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "teamsift-scaling")
    parser.add_argument("--parts", default="memory,throughput,devices",
                        help="Which parts to (re)run; the others are kept from the committed results.")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    sys.path.insert(0, SRC)
    from teamsift.fileio import atomic_write_text
    from teamsift.machine import describe, machine

    base = 200 if args.quick else 2000
    sizes = [base, 4 * base, 40 * base]
    args.data_dir.mkdir(parents=True, exist_ok=True)
    updates = 200 if args.quick else 3000
    out = ROOT / "benchmarks" / "results"
    previous = out / "scaling-cpu.json"
    result = json.loads(previous.read_text()) if previous.is_file() and not args.quick else {}
    result.update(command="python benchmarks/run_scaling.py" + (" --quick" if args.quick else ""),
                  machine=describe(machine()))
    if "memory" in parts or args.quick:
        result["memory"] = memory_rows(args.data_dir, sizes, updates)
    small = make_dataset(args.data_dir / f"cn-shaped-{base}", base)
    if "throughput" in parts or args.quick:
        result["throughput"] = throughput_rows(small, 200 if args.quick else 2000, 1 if args.quick else 3)
    if "devices" in parts or args.quick:
        result["devices"] = device_rows(small, 100 if args.quick else 1000, 1 if args.quick else 3)
    if args.quick:
        print(render(result))
        return
    if args.parts == "render":
        result = json.loads(previous.read_text())
    device = "cpu"
    atomic_write_text(out / f"scaling-{device}.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / f"scaling-{device}.md", render(result))
    print(render(result))


if __name__ == "__main__":
    main()
