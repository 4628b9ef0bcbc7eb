"""Carry a benchmark's unfinished runs from one machine (or one session) to the next.

A `teamsift bench sit|imitation` command keeps its runs under `<data-dir>/runs/<stem>/`, one
run directory per cell (and per SIT Stage I), and resumes each from its last checkpoint when
the same command runs again. The data directory is a cache that a fresh machine does not
have: the datasets are regenerated from their seeds, the runs are not. This packs what a
resume needs — every run directory's config, metrics, event files and its LAST checkpoint
only — into one archive that can be committed or copied, and unpacks it on the next machine:

    python benchmarks/carry_runs.py pack datasets/bench-sit/runs/sit-paper-updates-cpu \
        benchmarks/in-progress/sit-paper-updates-cpu.tar.gz
    python benchmarks/carry_runs.py unpack benchmarks/in-progress/sit-paper-updates-cpu.tar.gz \
        datasets/bench-sit/runs/sit-paper-updates-cpu
    teamsift bench sit ...          # the same command as before: every cell resumes

The engine checks on resume that a run directory's config matches the command (learner,
hyperparameters, schedule, dataset fingerprint), so an archive unpacked beside the wrong
dataset is refused there, not here. Unpacking never replaces a run directory that exists
(`--overwrite` does) and extracts regular files and directories only (tarfile's "data"
filter: no links, no absolute paths, nothing outside the destination).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

CHECKPOINTS = "checkpoints"
RUN_MARKER = "config.json"


def run_dirs(root: Path) -> list[Path]:
    """Every run directory under `root` (a directory holding config.json), outermost first."""
    return sorted({p.parent for p in root.rglob(RUN_MARKER)}, key=lambda p: (len(p.parts), str(p)))


def latest_checkpoint(run: Path) -> Path | None:
    """The newest complete orbax checkpoint of a run (its directories are named by update;
    incomplete ones carry a temporary suffix and are not digits)."""
    steps = [p for p in (run / CHECKPOINTS).glob("*") if p.is_dir() and p.name.isdigit()]
    return max(steps, key=lambda p: int(p.name)) if steps else None


def members(root: Path) -> list[Path]:
    """The files to carry: everything under root except checkpoints other than each run's last."""
    keep_checkpoints = {c for c in (latest_checkpoint(r) for r in run_dirs(root)) if c is not None}
    out = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        rel = path.relative_to(root)
        parts = rel.parts
        if CHECKPOINTS in parts:
            i = parts.index(CHECKPOINTS)
            step = root.joinpath(*parts[: i + 2]) if len(parts) > i + 1 else None
            if step not in keep_checkpoints:
                continue
        out.append(rel)
    return out


def pack(root: Path, archive: Path, overwrite: bool) -> None:
    if not root.is_dir():
        sys.exit(f"pack: {root}: no such directory (expected <data-dir>/runs/<stem>)")
    if not run_dirs(root):
        sys.exit(f"pack: {root}: no run directory in it (none holds {RUN_MARKER})")
    if archive.exists() and not overwrite:
        sys.exit(f"pack: {archive} exists; pass --overwrite to replace it")
    files = members(root)
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{archive.name}.", dir=archive.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for rel in files:
                info = tar.gettarinfo(root / rel, arcname=rel.as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0  # the same runs give the same archive
                with open(root / rel, "rb") as f:
                    tar.addfile(info, f)
        os.replace(tmp, archive)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for run in run_dirs(root):
        step = latest_checkpoint(run)
        print(f"  {run.relative_to(root)}: checkpoint {step.name if step else '(none)'}")
    print(f"packed {len(files)} files of {root} into {archive} ({archive.stat().st_size / 2**20:.1f} MiB)")


def unpack(archive: Path, root: Path, overwrite: bool) -> None:
    if not archive.is_file():
        sys.exit(f"unpack: {archive}: no such file")
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        tops = sorted({Path(n).parts[0] for n in names})
        clashes = [t for t in tops if (root / t).exists()]
        if clashes and not overwrite:
            sys.exit(f"unpack: {root} already holds {', '.join(clashes)}; pass --overwrite to replace them")
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".unpack-", dir=root) as staging:
            tar.extractall(staging, filter="data")
            for top in tops:
                if (root / top).exists():
                    shutil.rmtree(root / top)
                os.replace(Path(staging) / top, root / top)
    print(f"unpacked {len(names)} files of {archive} into {root}: {', '.join(tops)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="runs directory → archive (each run's last checkpoint only)")
    p.add_argument("runs", type=Path)
    p.add_argument("archive", type=Path)
    p.add_argument("--overwrite", action="store_true")
    u = sub.add_parser("unpack", help="archive → runs directory")
    u.add_argument("archive", type=Path)
    u.add_argument("runs", type=Path)
    u.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.runs, args.archive, args.overwrite)
    else:
        unpack(args.archive, args.runs, args.overwrite)


if __name__ == "__main__":
    main()
