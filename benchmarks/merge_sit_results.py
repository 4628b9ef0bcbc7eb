"""Merge `teamsift bench sit` results of the same budget, run in separate processes.

Two runs must not write one result file at once, so parallel runs (one dataset per core)
write their own (`--name`, `--out`); this adds their rows and cells to the main result and
rewrites its Markdown. Cells of the same row and method take the later file's. Results of
another machine are refused unless --allow-other-machine: then their cells keep their machine
and the tables mark them with †.

    python benchmarks/merge_sit_results.py benchmarks/results/sit-cpu.json \
        /tmp/hc/sit-hc-low-cpu.json /tmp/hc/sit-hc-medium-cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from teamsift.bench import sit as sit_bench


def read(path: Path) -> dict:
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{path}: cannot read a bench sit result ({exc})")
    missing = [field for field in ("config", "studies") if field not in report]
    if missing:
        raise SystemExit(f"{path}: not a bench sit result (no {', '.join(missing)})")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("into", type=Path, help="the result to add to (rewritten with its .md)")
    parser.add_argument("others", type=Path, nargs="+", help="results whose rows and cells are added")
    parser.add_argument("--allow-other-machine", action="store_true",
                        help="merge results of another machine, marking their cells (†) with it")
    args = parser.parse_args(argv)
    report = read(args.into)
    for path in args.others:
        try:
            report = sit_bench.merge_reports(report, read(path), other_machine=args.allow_other_machine)
        except ValueError as exc:
            raise SystemExit(f"{path}: {exc}")
    json_path, md_path = sit_bench.save(report, args.into.parent, args.into.stem)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
