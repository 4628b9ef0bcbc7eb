"""`train`: a registered algorithm on a dataset, with its stages, sampler and valuation weights.

    spec   = hyperparameters (the paper's, with every --set) + sampler + weights + Stage I config
    stages = ARDNEM (Stage I) when SIT decomposes, `--sampler dper` or `--weights ardnem` asks
             for it — reused from `stage1` (a `value --method ardnem` output) or the run
             directory when already trained; MABCQ's behaviour model (a BC fit)
    weights = a valuation's per-(episode, slot) weights (EV, EV-Clustering, group, ARDNEM)
    fit(learner, dataset, key, run, sampler=..., weights=..., inputs=..., start=...)

Every stage runs through `teamsift.engine.fit` in its own directory under the run
directory (DIR/stages/<name>/), so a pipeline killed at any point resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from teamsift.algos import registry
from teamsift.data import DPER, PJAP, Uniform
from teamsift.data.dper import DPERConfig
from teamsift.data.pjap import PJAPConfig
from teamsift.engine import FitResult, RunConfig, fit, with_overrides
from teamsift.engine.run import RESULT_FILE, RunDir, RunDirError, json_ready
from teamsift.value import ardnem
from teamsift.value.weights import VALUATIONS, SelectionConfig, Weights, valuation_weights

SAMPLER_NAMES = ("uniform", "dper", "pjap")
#: `--set` prefixes that address a part of the spec other than the hyperparameters.
PREFIXES = {"sampler": "sampler_config", "dper": "sampler_config", "pjap": "sampler_config",
            "ardnem": "ardnem", "selection": "selection"}
STAGE1_FILE = "result.msgpack"


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """Everything besides the schedule that shapes a training run (recorded in the run
    directory and compared on --resume)."""

    algorithm: str
    hyperparameters: Any
    sampler: str = "uniform"
    sampler_config: Any = None  # DPERConfig | PJAPConfig | None
    weights: str | None = None  # a valuation (VALUATIONS) or None
    selection: SelectionConfig | None = None
    ardnem: ardnem.ARDNEMConfig | None = None  # Stage I, when something needs it

    def needs_stage1(self) -> bool:
        decomposes = self.algorithm == "sit" and getattr(self.hyperparameters, "decomposition", False)
        return decomposes or self.sampler == "dper" or self.weights == "ardnem"

    def record(self) -> dict:
        return json_ready(dataclasses.asdict(self))


def make_spec(algorithm: str, *, config=None, sampler: str | None = None, weights: str | None = None,
              overrides: dict | None = None) -> TrainSpec:
    """The spec of `algorithm` with its registry defaults, then `sampler`, `weights` ("none"
    turns a default valuation off) and `overrides` ({"beta": 1, "dper.alpha": 2,
    "ardnem.ensemble_size": 1, "selection.threshold": 0.1})."""
    entry = registry.get(algorithm)
    if entry.kind not in ("offline", "valuation"):
        raise ValueError(f"--algo {algorithm}: a {entry.kind} learner; use `teamsift imitate` for imitation")
    chosen = entry.sampler if sampler is None else sampler
    if chosen not in SAMPLER_NAMES:
        raise ValueError(f"--sampler: expected one of {SAMPLER_NAMES}, got {chosen!r}")
    sampler_config = {"dper": DPERConfig(), "pjap": PJAPConfig()}.get(chosen)
    if chosen == entry.sampler and entry.sampler_config is not None:
        sampler_config = entry.sampler_config
    weights = entry.weights if weights is None else (None if weights == "none" else weights)
    if weights is not None and weights not in VALUATIONS:
        raise ValueError(f"--weights: expected one of {VALUATIONS + ('none',)}, got {weights!r}")
    selection = (entry.selection or SelectionConfig()) if weights is not None else None
    spec = TrainSpec(algorithm, entry.config() if config is None else config, chosen, sampler_config, weights,
                     selection, ardnem.ARDNEMConfig())
    spec = with_overrides(spec, _prefixed(overrides or {}))
    if spec.algorithm == "sit" and sampler is None and not spec.hyperparameters.decomposition:
        spec = dataclasses.replace(spec, sampler="uniform", sampler_config=None)  # SIT w/o decomp: uniform buffers
    if not spec.needs_stage1():
        spec = dataclasses.replace(spec, ardnem=None)
    return spec


def _prefixed(overrides: dict) -> dict:
    out = {}
    for name, value in overrides.items():
        head, _, rest = name.partition(".")
        out[f"{PREFIXES[head]}.{rest}" if rest and head in PREFIXES else f"hyperparameters.{name}"] = value
    return out


def check_actions(entry: registry.Algorithm, dataset) -> None:
    discrete = bool(dataset.spec.discrete)
    if entry.actions == "discrete" and not discrete or entry.actions == "continuous" and discrete:
        kind = "discrete" if discrete else "continuous"
        raise ValueError(f"{dataset.path}: {entry.title} learns {entry.actions} actions; this dataset's actions are "
                         f"{kind} (env {dataset.spec.env_id!r})")


def dataset_env(dataset):
    """The environment the dataset was recorded in, when it is registered (else None)."""
    from teamsift.envs import list_envs, make

    env_id = dataset.meta.get("env_id")
    if env_id not in {e.env_id for e in list_envs()}:
        return None
    return make(env_id, **dataset.meta.get("env_kwargs", {}))


@dataclasses.dataclass
class TrainResult:
    spec: TrainSpec
    fit: FitResult
    stages: dict[str, Any]  # stage name -> FitResult (behaviour) or ARDNEMResult (ardnem)
    weights: Weights | None
    seconds: dict[str, float]  # wall time per stage (compilation included)

    @property
    def stage1(self) -> ardnem.ARDNEMResult | None:
        return self.stages.get("ardnem")

    def policy(self, seed: int = 0):
        return self.fit.policy(seed)

    def policies(self) -> list:
        return self.fit.policies()

    def summary(self, dataset=None) -> dict:
        """What `train --json` prints (and DIR/result.json holds)."""
        fit_result = self.fit
        out = {"algo": self.spec.algorithm, "updates": fit_result.updates, "seeds": fit_result.seeds,
               "sampler": self.spec.sampler, "weights": self.spec.weights,
               "final_loss": [float(x) for x in fit_result.final()] if fit_result.last else [],
               "seconds": self.seconds}
        placement = fit_result.placement
        if placement:  # where it ran: devices, mesh axes, processes, the data's placement
            out.update({k: placement[k] for k in ("devices", "mesh", "processes", "platform", "data_placement")
                        if k in placement})
        if dataset is not None:
            out["dataset"] = str(dataset.path)
        if fit_result.run_dir is not None:
            out["run_dir"] = str(fit_result.run_dir)
            out["policies"] = [str(RunDir(fit_result.run_dir).policy_path(s)) for s in range(fit_result.seeds)]
        if self.stages:
            out["stages"] = {name: {"updates": stage_updates_done(stage)} for name, stage in self.stages.items()}
        if self.weights is not None:
            out.update(self.weights.summary())
        if fit_result.evaluations:
            last = fit_result.evaluations[-1]
            out["eval"] = [{"update": last["update"], "scores": {name: _summary(values) for name, values in s.items()}}
                           for s in last["seed_scores"]]
            out["return_mean_over_seeds"] = float(np.mean(fit_result.final_returns()))
        return out


def stage_updates_done(stage) -> int:
    """The updates a stage trained (a FitResult, or an ARDNEMResult with its logged updates)."""
    if isinstance(stage, FitResult):
        return stage.updates
    logged = np.asarray(stage.logs.get("updates", []))
    return int(logged[-1]) if logged.size else 0


def _summary(values) -> dict:
    from teamsift.evaluate import ScoreSummary

    return dataclasses.asdict(ScoreSummary.of(np.asarray(values)))


# --- stages ----------------------------------------------------------------------------------------

STAGE_TITLES = {"ardnem": "Stage I (ARDNEM)", "behaviour": "the behaviour model (BC)"}


def stage_budget(entry: registry.Algorithm, name: str, stage_updates: dict | None, default: int,
                 progress: bool = False) -> int:
    """A stage's updates: `stage_updates[name]`, else the algorithm's (the paper's) budget for
    it. `--updates` sets the main learner's updates only, so a stage that keeps its own budget
    says so (on stderr, with `progress`)."""
    unknown = sorted(set(stage_updates or {}) - set(STAGE_TITLES))
    if unknown:
        raise ValueError(f"--stage-updates: unknown stage(s) {unknown}; expected some of {sorted(STAGE_TITLES)}")
    if name in (stage_updates or {}):
        return int(stage_updates[name])
    budget = int(dict(entry.stages).get(name, default))
    if progress:
        from teamsift.progress import STDERR

        STDERR.print(f"{STAGE_TITLES[name]}: {budget:,} updates, its paper budget (--stage-updates {name}=N "
                     f"to change; --updates sets {entry.title}'s own)", highlight=False)
    return budget


def run_stage1(config: ardnem.ARDNEMConfig, dataset, key: jax.Array, run: RunConfig, updates: int,
               stage1=None) -> ardnem.ARDNEMResult:
    """SIT's Stage I: given (an `ARDNEMResult` or the path of a saved one), found complete in
    the run directory, or trained there (resumably) and saved."""
    if stage1 is not None:
        result = ardnem.load_result(stage1) if isinstance(stage1, (str, Path)) else stage1
        ardnem.check_result(result, dataset)
        return result
    stage_run = run.stage("ardnem", updates, label="Stage I (ARDNEM)", seeds=1)  # one ensemble, shared by the seeds
    saved = None if stage_run.run_dir is None else Path(stage_run.run_dir) / STAGE1_FILE
    if saved is not None and saved.is_file():
        return ardnem.load_result(saved)
    result = fit(ardnem.learner(config, dataset), dataset, key, stage_run,
                 record={"hyperparameters": dataclasses.asdict(config), "stage": "ardnem"})
    decomposed = ardnem.result(config, result, dataset)
    if saved is not None:
        ardnem.save_result(decomposed, saved)
    return decomposed


def run_behaviour(spec: TrainSpec, dataset, key: jax.Array, run: RunConfig, updates: int,
                  weights: np.ndarray | None = None) -> FitResult:
    """MABCQ's behaviour model μ: behaviour cloning with the Q network's architecture."""
    from teamsift.algos import bc, mabcq

    config = mabcq.behaviour_config(spec.hyperparameters)
    return fit(bc.learner(config, dataset), dataset, key, run.stage("behaviour", updates, label="behaviour model (BC)"),
               weights=weights, record={"hyperparameters": dataclasses.asdict(config), "stage": "behaviour",
                                        "weights": spec.weights})


# --- the pipeline ------------------------------------------------------------------------------------

def train(algorithm: str, dataset, key: jax.Array, run: RunConfig, *, spec: TrainSpec | None = None,
          config=None, sampler: str | None = None, weights: str | None = None, overrides: dict | None = None,
          stage1=None, stage_updates: dict | None = None, env=None, eval_key: jax.Array | None = None,
          command: str | None = None, given_weights: Weights | None = None) -> TrainResult:
    """Train a registered algorithm (see the module docstring). `run.eval_episodes` > 0
    evaluates every seed in `env` (default: the dataset's own environment). `given_weights`
    (weights made elsewhere, e.g. an oracle's from known labels) replace the spec's valuation."""
    entry = registry.get(algorithm)
    spec = spec or make_spec(algorithm, config=config, sampler=sampler, weights=weights, overrides=overrides)
    check_actions(entry, dataset)
    run = prepare_run_dir(run)
    if run.eval_episodes and env is None:
        env = dataset_env(dataset)
        if env is None:
            raise ValueError(f"{dataset.path}/meta.json: field 'env_id' {dataset.meta.get('env_id')!r} is not a "
                             f"registered environment, so the policies cannot be evaluated (eval episodes 0)")
    stages: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    has_stage = spec.needs_stage1() or dict(entry.stages) or spec.weights is not None
    stage_key, main_key = jax.random.split(key) if (entry.split_key or has_stage) else (None, key)

    started = time.perf_counter()
    if spec.needs_stage1():
        stages["ardnem"] = run_stage1(spec.ardnem, dataset, stage_key, run,
                                      stage_budget(entry, "ardnem", stage_updates, registry.get("ardnem").updates,
                                                   run.progress and stage1 is None),
                                      stage1)
        seconds["ardnem"] = time.perf_counter() - started
    valuation = given_weights
    if valuation is None and spec.weights is not None:
        priorities = stages["ardnem"].priority if spec.weights == "ardnem" else None
        value_key = stage_key if not spec.needs_stage1() else jax.random.fold_in(stage_key, 1)
        valuation = valuation_weights(spec.weights, dataset, value_key, spec.selection, priorities=priorities)
    start = None
    if algorithm == "mabcq":  # the behaviour model clones the data as the valuation weighs it
        began = time.perf_counter()
        stages["behaviour"] = run_behaviour(spec, dataset, stage_key, run,
                                            stage_budget(entry, "behaviour", stage_updates, 15_000, run.progress),
                                            None if valuation is None else valuation.weights)
        start = stages["behaviour"].state.params
        seconds["behaviour"] = time.perf_counter() - began

    began = time.perf_counter()
    inputs = None
    if algorithm == "sit":
        from teamsift.algos import sit

        inputs = sit.stage_inputs(spec.hyperparameters, dataset, stages.get("ardnem"))
    learner = entry.learner(spec.hyperparameters, dataset)
    record = {"algorithm": algorithm, "hyperparameters": spec.hyperparameters,
              "sampler": {"name": spec.sampler, "config": spec.sampler_config},
              "weights": None if valuation is None else {"valuation": valuation.valuation, "selection": spec.selection},
              "stage1": spec.ardnem, "stage": "main"}
    resolved = resolved_settings(spec.hyperparameters, learner.config)
    if resolved:
        record["resolved"] = resolved  # what the data decided (e.g. a reward scale); not compared on --resume
    if command is not None:
        record["command"] = command
    result = fit(learner, dataset, main_key, run, sampler=make_sampler(spec, stages.get("ardnem")),
                 weights=None if valuation is None else valuation.weights, inputs=inputs, start=start, env=env,
                 eval_key=eval_key, record=record)
    seconds["main"] = time.perf_counter() - began
    warn_divergence(algorithm, spec, result)
    out = TrainResult(spec, result, stages, valuation, seconds)
    if result.run_dir is not None:
        RunDir(result.run_dir).write_json(RESULT_FILE, out.summary(dataset))
    return out


def resolved_settings(asked, built) -> dict:
    """The hyperparameters a learner read from the data ({name: value} where `asked` left
    None what the `built` learner's config holds, e.g. ICQ's and SIT's reward scale)."""
    if not (dataclasses.is_dataclass(asked) and type(built) is type(asked)):
        return {}
    return {f.name: getattr(built, f.name) for f in dataclasses.fields(asked)
            if getattr(asked, f.name) is None and getattr(built, f.name) is not None}


def prepare_run_dir(run: RunConfig) -> RunConfig:
    """Check (or empty, with `overwrite`) the pipeline's run directory before any stage runs;
    every stage then continues what the directory holds."""
    if run.run_dir is None:
        return run
    directory = RunDir(run.run_dir)
    holds_run = directory.read_config() is not None or (directory.path / "stages").is_dir()
    if directory.path.is_dir() and any(directory.path.iterdir()) and not (run.resume and holds_run):
        if not run.overwrite:
            raise RunDirError(f"{directory.path}: the run directory is not empty; pass --resume to continue the run "
                              f"it holds, --overwrite to replace it, or choose another --run-dir")
        shutil.rmtree(directory.path)
    return dataclasses.replace(run, resume=True, overwrite=False)


def make_sampler(spec: TrainSpec, stage1: ardnem.ARDNEMResult | None):
    if spec.sampler == "dper":
        return DPER(spec.sampler_config, priorities=np.asarray(stage1.priority))
    if spec.sampler == "pjap":
        return PJAP(spec.sampler_config)
    group_by = getattr(spec.sampler_config, "group_by", "type")
    return Uniform(group_by=group_by)


def warn_divergence(algorithm: str, spec: TrainSpec, result: FitResult) -> None:
    """Warn (naming the seeds) when a value learner's critic loss diverged over training; the
    learner's config is the resolved one (e.g. its reward scale read from the data)."""
    if result.history.get("update") is None or len(result.history["update"]) < 2:
        return
    from teamsift.algos import icq, mabcq, macql, offline_common, sit

    hints = {"icq": icq, "sit": sit, "mabcq": mabcq, "macql": macql}  # each learner's critic loss is its headline
    if algorithm in hints:
        offline_common.warn_if_diverged(result.history[result.learner.headline], f"{algorithm.upper()}'s critic",
                                        hints[algorithm].divergence_hint(result.learner.config))


def load_spec(run_dir: str | Path) -> dict:
    """The spec a run directory recorded (for `--resume` without repeating every option)."""
    config = RunDir(run_dir).read_config()
    if config is None:
        raise ValueError(f"{run_dir}: no config.json to resume from")
    return json.loads(json.dumps(config))


# --- adversarial imitation ---------------------------------------------------------------------

IMITATORS = ("magail", "mild2", "mild2_gd")


def imitation_config(algorithm: str, env_id: str, *, timesteps: int | None = None, overrides: dict | None = None):
    """The hyperparameters of an imitation learner; every method gets the same environment
    steps: `timesteps`, else the environment's MAPPO budget."""
    from teamsift.algos import magail, mild2
    from teamsift.collect import ppo

    if algorithm not in IMITATORS:
        raise ValueError(f"--algo: expected one of {', '.join(IMITATORS)}, got {algorithm!r}")
    budget = {"total_timesteps": int(timesteps or ppo.config_for(env_id).total_timesteps)}
    if algorithm == "magail":
        config = magail.config_for(env_id, generator=budget)
    else:
        config = mild2.config_for(generator=budget, global_dependencies=(algorithm == "mild2"))
    return with_overrides(config, overrides or {})


def imitate(algorithm: str, dataset, key: jax.Array, run: RunConfig, *, config=None, timesteps: int | None = None,
            overrides: dict | None = None, env=None):
    """Adversarial imitation of an expert dataset in its environment (MAGAIL, MILD²,
    MILD²-GD), resumable in `run.run_dir`; `run.updates` is ignored (the generator's budget
    in environment steps decides it). Returns an `adversarial.AdversarialResult`."""
    from teamsift.algos import magail, mild2

    env = env or dataset_env(dataset)
    if env is None:
        raise ValueError(f"{dataset.path}/meta.json: field 'env_id' must name a registered environment to interact "
                         f"with, found {dataset.meta.get('env_id')!r}")
    config = config or imitation_config(algorithm, env.spec.env_id, timesteps=timesteps, overrides=overrides)
    run = prepare_run_dir(dataclasses.replace(run, updates=config.generator.num_updates))
    train = magail.train if algorithm == "magail" else mild2.train
    return train(config, dataset, env, key, progress=run.progress, num_seeds=run.seeds, run=run)
