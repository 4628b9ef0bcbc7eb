"""EV2BC vs BC on the real human–human Overcooked trials, beside a human proxy (Select to Perfect, Section 5).

For each layout: import the train and test splits (`teamsift.data.import_overcooked_human`),
train the human proxy (BC on the test split only, as Carroll et al. 2019), value the
train split's one-time players by EV-Clustering on soups per game, clone everyone (BC),
the best half of the games (group-BC), the players of clusters with positive EV (EV2BC,
EV2BC per slot, EV2BC with K = 3), 5 seeds each as one vmapped program, and evaluate every
seed in self-play and with the proxy in the other seat, learner as agent_0 and as agent_1.

The protocol — features, K and the threshold rule of EV-Clustering among it — is in
`teamsift.bench.overcooked_human` and was fixed before any test soups were looked at:

PROTOCOL

    python benchmarks/run_overcooked_human.py [--layouts cramped_room,...] [--updates 5000] [--seeds 5]

Writes benchmarks/results/overcooked-human-<device>.{md,json} after every layout. A rerun
with the same budget keeps the layouts already in the json and runs only the others
(`--rerun` runs them all again).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

import jax

from teamsift.bench import overcooked_human as oh
from teamsift.bench.report import write_report
from teamsift.machine import describe, machine

PROTOCOL = oh.__doc__.split("Protocol (fixed before any test-split soups were looked at; also in the results file):")[1]
__doc__ = __doc__.replace("PROTOCOL", PROTOCOL.strip("\n"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layouts", default=",".join(oh.LAYOUTS))
    parser.add_argument("--updates", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=20, help="evaluation games per seed and condition")
    parser.add_argument("--learners", default=",".join(oh.LEARNERS))
    parser.add_argument("--summary", type=Path, help="a text file: the verdict paragraph written into the results "
                                                     "(default: the one the results hold already)")
    parser.add_argument("--rerun", action="store_true", help="run every layout again, even those already done")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    layouts = [oh.resolve_name(name) for name in args.layouts.split(",")]
    config = oh.HumanBenchConfig(updates=args.updates, seeds=args.seeds, episodes=args.episodes,
                                 learners=tuple(args.learners.split(",")))
    device = jax.devices()[0].platform
    stem = f"overcooked-human-{device}"
    command = "python benchmarks/run_overcooked_human.py" + (" " + " ".join(sys.argv[1:] if argv is None else argv)
                                                              ).rstrip()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    report = {"command": command, "machine": f"{describe(machine())}; this process ran on {cores} core(s)",
              "config": dataclasses.asdict(config), "protocol": PROTOCOL.strip("\n"), "layouts": {}}
    previous_file = args.out / f"{stem}.json"
    previous_command = previous_machine = None
    if previous_file.is_file() and not args.rerun:
        previous = json.loads(previous_file.read_text())
        if previous.get("config") == json.loads(json.dumps(report["config"])):  # tuples are lists in the file
            report["layouts"] = previous.get("layouts", {})
            if previous.get("summary"):
                report["summary"] = previous["summary"]
            previous_command, previous_machine = previous.get("command"), previous.get("machine")
    if args.summary is not None:
        report["summary"] = args.summary.read_text().strip()
    key = jax.random.key(0)
    ran = []
    with tempfile.TemporaryDirectory() as tmp:
        for layout in layouts:
            if layout in report["layouts"]:
                print(f"{layout}: done already (in {previous_file}); skipped", file=sys.stderr)
                continue
            ran.append(layout)
            result = oh.run_layout(layout, oh.named_key(key, layout), config, Path(tmp))
            report["layouts"][layout] = result
            write_report(report, oh.render(report), args.out, stem)  # after every layout: a rerun resumes
            print(json.dumps({"layout": layout, "cells": result["cells"], "seconds": result["seconds"]}),
                  file=sys.stderr)
    if not ran and previous_command:  # nothing new was measured: the command and machine stay those that measured it
        report["command"], report["machine"] = previous_command, previous_machine or report["machine"]
    paths = write_report(report, oh.render(report), args.out, stem)
    print(paths[1].read_text())


if __name__ == "__main__":
    main()
