"""The run schedule and the run directory: what a run leaves on disk, and how it resumes.

    DIR/config.json               what ran: learner, hyperparameters (every --set applied),
                                  schedule, sampler, weights, command line, teamsift and JAX
                                  versions, machine, dataset path and fingerprint, and the
                                  settings the data decided ("resolved", e.g. a reward scale)
    DIR/metrics.csv               one row per logged update and seed: update, seed,
                                  elapsed_s, then every metric (its mean over the log
                                  interval; a vector metric as name[0], name[1], …)
    DIR/events/seed-<k>/          TensorBoard event files (tensorboardX)
    DIR/evaluations.json          evaluations in marl-eval's JSON shape
    DIR/policies/seed-<k>.msgpack one policy per seed (`teamsift.nets.save_policy`)
    DIR/checkpoints/<update>/     orbax checkpoints, the last `keep_checkpoints`
    DIR/result.json               the run's summary (what `train --json` prints)
    DIR/stages/<name>/            the same layout for each earlier stage of a pipeline
                                  (SIT's Stage I, MABCQ's behaviour model)

Every file is written atomically (temporary file, then rename); orbax writes each
checkpoint into a temporary directory and renames it once complete, so a run killed at
any moment — during a checkpoint too — resumes from the last complete one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

from teamsift.fileio import atomic_write_text

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
EVALUATIONS_FILE = "evaluations.json"
RESULT_FILE = "result.json"
#: config.json entries that must match for `--resume` to continue a run.
RESUME_FIELDS = ("learner", "hyperparameters", "schedule", "sampler", "weights", "stage1", "dataset_fingerprint",
                 "stage")


#: Settings added to a recorded section after runs were recorded without them, by their path
#: in the run record, each with the value that does what those runs did: a run recorded
#: before the setting existed resumes when the setting has that value now (and is refused
#: with any other).
ADDED_SETTINGS = {
    ("weights", "selection", "features"): "histogram",  # SelectionConfig.features: EV-Clustering's features
    ("hyperparameters", "reward_scale_rule"): "largest",  # SIT's and ICQ's rule for reward_scale=None
    ("hyperparameters", "optimizer"): "rmsprop_eps_in_root",  # ICQ, SIT, MABCQ, MACQL (the others always record theirs)
}


_ABSENT = object()


def setting_differences(old, new, path: tuple[str, ...] = ()) -> list[str]:
    """What differs between a recorded setting `old` at `path` and the current `new`, one
    entry per leaf ("hyperparameters.beta: was 0.1, now 1.0"), `ADDED_SETTINGS` missing
    from `old` standing for their old behaviour (and named as recorded before they existed)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for k in list(old) + [k for k in new if k not in old]:
            o = old.get(k, ADDED_SETTINGS.get((*path, k), _ABSENT))
            if k not in old and o is not _ABSENT:
                if o != new[k]:
                    found.append(f"{'.'.join((*path, k))}: {o!r} for that run (recorded before the setting "
                                 f"existed), now {new[k]!r}; set it to {o!r} to resume")
                continue
            found += setting_differences(o, new.get(k, _ABSENT), (*path, k))
        return found
    if old == new:
        return []

    def shown(value) -> str:
        return "absent" if value is _ABSENT else json.dumps(value)[:200]
    return [f"{'.'.join(path)}: was {shown(old)}, now {shown(new)}"]


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (exists, or does not match on resume)."""


#: Where the training data lives (`RunConfig.data_placement`).
PLACEMENTS = ("device", "stream", "auto")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The run schedule: how long, how many seeds, and when to log, evaluate and checkpoint.

    Intervals count updates; 0 turns a feature off. Evaluations run every `eval_every`
    updates and once at the end (when `eval_episodes` > 0 and an environment is given);
    checkpoints every `checkpoint_every` updates and at the end (with a `run_dir`)."""

    updates: int
    seeds: int = 1
    log_every: int = 500
    eval_every: int = 0
    eval_episodes: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    snapshot_every: int = 0  # the learner's `snapshot` (e.g. pool checkpoints) every this many updates
    run_dir: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    label: str | None = None
    # Where the data lives while training (none of these changes a result):
    data_placement: str = "device"  # "device" | "stream" (pages from the host) | "auto"
    device_memory_fraction: float = 0.5  # "auto": on the device when it takes at most this share
    data_parallel: int | None = None  # devices per seed on the mesh's data axis (None: what the devices allow)

    def __post_init__(self):
        def bad(name, expected):
            raise ValueError(f"RunConfig.{name}: expected {expected}, got {getattr(self, name)!r}")

        for name in ("updates", "eval_every", "eval_episodes", "checkpoint_every", "snapshot_every"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                bad(name, "an integer >= 0")
        for name in ("seeds", "log_every", "keep_checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                bad(name, "an integer >= 1")
        if self.resume and self.run_dir is None:
            bad("resume", "a run_dir to resume from")
        if self.resume and self.overwrite:
            raise ValueError("RunConfig: resume and overwrite exclude each other")
        if self.checkpoint_every and self.run_dir is None:
            bad("checkpoint_every", "0 without a run_dir (checkpoints live in the run directory)")
        if self.data_placement not in PLACEMENTS:
            bad("data_placement", f"one of {PLACEMENTS}")
        if not 0 < self.device_memory_fraction <= 1:
            bad("device_memory_fraction", "a fraction in (0, 1]")
        if self.data_parallel is not None and (not isinstance(self.data_parallel, (int, np.integer))
                                               or self.data_parallel < 1):
            bad("data_parallel", "an integer >= 1 (or None)")

    def schedule(self) -> dict:
        """The fields that shape the result (recorded, and compared on resume)."""
        return {name: getattr(self, name) for name in ("updates", "seeds", "log_every", "eval_every", "eval_episodes",
                                                       "snapshot_every")}

    def stage(self, name: str, updates: int, **changes) -> "RunConfig":
        """The schedule of an earlier stage of a pipeline, in DIR/stages/<name>/."""
        run_dir = None if self.run_dir is None else str(Path(self.run_dir) / "stages" / name)
        log_every = max(1, min(self.log_every, updates)) if updates else self.log_every
        fields = dict(updates=updates, run_dir=run_dir, log_every=log_every, eval_every=0, eval_episodes=0,
                      snapshot_every=0, label=name)
        return dataclasses.replace(self, **{**fields, **changes})


# --- the run directory ---------------------------------------------------------------------------

def versions() -> dict:
    import teamsift

    return {"teamsift": teamsift.__version__, "jax": jax.__version__, "python": sys.version.split()[0]}


def json_ready(value):
    """Tuples, numpy scalars and arrays, paths and dataclasses as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_ready(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


class RunDir:
    """One run's directory (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def policy_path(self, seed: int) -> Path:
        return self.path / "policies" / f"seed-{seed}.msgpack"

    def read_config(self) -> dict | None:
        file = self.path / CONFIG_FILE
        if not file.is_file():
            return None
        try:
            return json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{file}: not valid JSON ({exc})") from None

    def others(self) -> list[Path]:
        """What the directory holds besides the stages of a pipeline (DIR/stages/)."""
        return [p for p in self.path.iterdir() if p.name != "stages"] if self.path.is_dir() else []

    def open(self, config: dict, *, resume: bool, overwrite: bool) -> bool:
        """Prepare the directory for a run described by `config`. Returns whether it holds this
        run already (so its last checkpoint is to be restored). A directory holding a run is
        refused unless `resume` (it must be the same run: `RESUME_FIELDS` match) or
        `overwrite` (it is emptied first); `resume` on a directory without a run starts one."""
        existing = self.read_config()
        if existing is not None and resume:
            different = [d for f in RESUME_FIELDS
                         for d in setting_differences(json_ready(existing.get(f)), json_ready(config.get(f)), (f,))]
            if different:
                raise RunDirError(f"{self.path}/{CONFIG_FILE}: --resume continues the same run, but "
                                  + "; ".join(different))
            config = {**config, "resumed": existing.get("resumed", 0) + 1, "commands":
                      existing.get("commands", [existing.get("command")]) + [config.get("command")]}
        elif self.others():
            if not overwrite:
                raise RunDirError(f"{self.path}: the run directory is not empty; pass --resume to continue the run "
                                  f"it holds, --overwrite to replace it, or choose another --run-dir")
            for path in self.others():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / CONFIG_FILE, json.dumps(json_ready(config), indent=2) + "\n")
        return existing is not None and resume

    def write_json(self, name: str, payload: Any) -> Path:
        return atomic_write_text(self.path / name, json.dumps(json_ready(payload), indent=2) + "\n")


def flat_metrics(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    """Scalar columns of one (seed, row): vectors become name[0], name[1], …"""
    out = {}
    for name, value in metrics.items():
        value = np.asarray(value)
        if value.ndim == 0:
            out[name] = float(value)
        else:
            for index, item in enumerate(value.reshape(-1)):
                out[f"{name}[{index}]"] = float(item)
    return out


def metrics_csv(updates: list[int], elapsed: list[float], rows: list[dict[str, np.ndarray]], seeds: int) -> str:
    """metrics.csv for logged rows (`rows[r][name]` has a leading seed axis)."""
    buffer = io.StringIO()
    columns = None
    writer = None
    for update, seconds, row in zip(updates, elapsed, rows):
        for seed in range(seeds):
            flat = flat_metrics({name: np.asarray(value)[seed] for name, value in row.items()})
            if writer is None:
                columns = ["update", "seed", "elapsed_s"] + list(flat)
                writer = csv.DictWriter(buffer, columns, extrasaction="ignore")
                writer.writeheader()
            writer.writerow({"update": update, "seed": seed, "elapsed_s": f"{seconds:.3f}",
                             **{k: f"{v:.8g}" for k, v in flat.items()}})
    return buffer.getvalue() if writer is not None else "update,seed,elapsed_s\n"


class EventWriters:
    """TensorBoard scalars, one event directory per seed (tensorboardX). On resume,
    `purge_step` tells TensorBoard to drop what an interrupted run logged past the checkpoint."""

    def __init__(self, path: Path, seeds: int, purge_step: int | None):
        from tensorboardX import SummaryWriter

        self.writers = [SummaryWriter(str(path / "events" / f"seed-{s}"), purge_step=purge_step, flush_secs=30)
                        for s in range(seeds)]

    def add(self, update: int, row: dict[str, np.ndarray]) -> None:
        for seed, writer in enumerate(self.writers):
            for name, value in flat_metrics({k: np.asarray(v)[seed] for k, v in row.items()}).items():
                if np.isfinite(value):
                    writer.add_scalar(name, value, update)

    def add_evaluation(self, update: int, returns: list[float]) -> None:
        for writer, value in zip(self.writers, returns):
            writer.add_scalar("eval/return", value, update)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def marl_eval(env_family: str, task: str, algorithm: str, evaluations: list[dict], final: dict | None) -> dict:
    """Evaluations in marl-eval's shape: {env: {task: {algo: {seed_k: {"step_i": {"step_count",
    "elapsed_time", "return": [...], <score>: [...]}, "absolute_metrics": {...}}}}}}.

    `evaluations` rows: {"update", "elapsed", "seed_scores": [{score: per-episode list}]};
    `final`: the same for the last evaluation, repeated as each seed's absolute metrics."""
    runs: dict[str, dict] = {}
    for index, row in enumerate(evaluations):
        for seed, scores in enumerate(row["seed_scores"]):
            runs.setdefault(f"seed_{seed}", {})[f"step_{index}"] = {
                "step_count": int(row["update"]), "elapsed_time": float(row["elapsed"]), **scores}
    if final is not None:
        for seed, scores in enumerate(final["seed_scores"]):
            runs.setdefault(f"seed_{seed}", {})["absolute_metrics"] = dict(scores)
    return {env_family: {task: {algorithm: runs}}}
