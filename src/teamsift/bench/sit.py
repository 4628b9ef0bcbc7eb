"""`teamsift bench sit`: SIT's Table 1 (and Figure 4) on our environments.

For every environment of `TABLE_ENVS` and every dataset quality of `SIT_SUITE` (low,
medium; SIT's Tables 7–9 mapped to our pools), one dataset is generated from the
committed pools (cached under `data_dir`), and every learner of the row trains on it
with `num_seeds` seeds as ONE vmapped program; each seed's policy is evaluated in the
environment. A cell is mean ± std over the seeds of the evaluated mean team return,
as SIT reports it; "Behavior" is the dataset's mean episode return.

    discrete rows   Behavior, BC, MABCQ, MACQL, ICQ, SIT, SIT*        (SIT Table 1)
    continuous rows Behavior, BC, TD3+BC, OMAR, MADDPG+CQL, SIT, SIT* (the issue's list)

"SIT" is the paper's Table 11 (DPER α = 0.2, CRR β = 0.1). On our data α = 0.2 over the
[0, 20] priority range leaves DPER a handful of trajectories per buffer (effective size 4
of 30 000 on CN_3ls3l low), so "SIT*" takes the α and β of our own sweep, run as SIT's
Figure 8 was (`sweep`, below); every other setting is the paper's.

Three more studies follow SIT §"Ablation study", Figures 4 and 8:
  * `ablations`: SIT* against its four ablations (w/o decomp, w/o attention, w/o
    ensemble, w/o GAT) on one dataset, and against Stage I with Figure 7's monotonic
    mixer (MNC, "SIT* w/ MNC");
  * `stress`: on one map, an agent-wise *balanced* dataset (SIT should match ICQ) and
    the extreme low-quality mix `99.5%[all r] + 0.5%[all m]`, where SIT* is also run
    with uniform type-wise sampling ("SIT* w/o priority", DPER's α → ∞) to show what
    priority sampling adds;
  * `sweep`: SIT over DPER's α × CRR's β on CN_3ls3l low (the selection behind SIT*).

and one of ours, `reward-scale`: SIT, SIT* and ICQ on smax_3s_vs_5z (the qualities asked
for) with the learning rewards at SMAC's scale (× 10), each paired with its unscaled cell.

Budgets: SIT trains 15 000 updates and ARDNEM 20 000 (Tables 10–11); `updates` and
`ardnem_updates` scale every learner down together for quick runs (CI runs a tiny
version; `make bench` the recorded one). Every number in the result file carries the
budget it was run with.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from teamsift.algos import offline_common as oc
from teamsift.algos import pipeline, registry
from teamsift.bench import aggregate
from teamsift.bench.report import (
    budget_differences, joined_commands, merge_previous, named_key, other_machine, write_report,
)
from teamsift.collect.datasets import generate_from_spec
from teamsift.collect.pools import load_pools
from teamsift.collect.suites import ENV_KWARGS, SIT_SUITE
from teamsift.data import load_dataset
from teamsift.engine import RunConfig
from teamsift.envs import make
from teamsift.envs.registry import best_return
from teamsift.evaluate import evaluate
from teamsift.progress import progress_bar
from teamsift.value import ardnem

TABLE_ENVS = ("CN_3ls3l", "CN_4ls4l", "PP_3p1p", "smax_3s_vs_5z", "halfcheetah_2x3")
CONTINUOUS_ENVS = ("halfcheetah_2x3", "walker2d_2x3")
#: "SIT" runs the paper's α = 0.2, β = 0.1 (Table 11); "SIT*" the α and β that a sweep in the
#: manner of SIT's Figure 8 selected on CN_3ls3l low (2 seeds, 1,500 updates, Stage I at
#: 20,000 updates; greedy return: α=1, β=0.1 −33.5; α=1, β=0.3 −34.4; α=2, β=0.3 −34.7;
#: uniform (α → ∞), β=0.3 −34.5; the paper's α=0.2, β=0.1 −43.9; α=1, β=1 −37.8).
#: `--study sweep` reruns such a grid as a benchmark; run on a tuning draw (`--seed 1`, data no
#: reported row uses; sit-tuning-draw-cpu.md) it chooses the same α and β. Both use the other
#: defaults of `sit.SITConfig`.
SWEPT_ALPHA, SWEPT_BETA = 1.0, 0.1
SWEEP_ALPHAS = (0.2, 1.0, 5.0)
SWEEP_BETAS = (0.1, 0.3, 1.0)
DISCRETE_METHODS = ("BC", "MABCQ", "MACQL", "ICQ", "SIT", "SIT*")
CONTINUOUS_METHODS = ("BC", "TD3+BC", "OMAR", "MADDPG+CQL", "SIT", "SIT*")
ABLATIONS = ("SIT*", "SIT* w/o decomp", "SIT* w/o attention", "SIT* w/o ensemble", "SIT* w/o GAT",
             "SIT* w/ MNC")
#: PJAP's MaMuJoCo comparison (its Table: 2-agent HalfCheetah) on our halfcheetah_2x3 pools:
#: MADDPG+CQL (BRUD) with uniform and with PJAP sampling, on an all-expert ("good") and the
#: agent-wise imbalanced medium dataset.
PJAP_ENV = "halfcheetah_2x3"
PJAP_DATASETS = {"good": "100%[all e]", "medium": "100%[r,e]"}
PJAP_METHODS = ("MADDPG+CQL", "MADDPG+CQL+PJAP")
PJAP_RAMP_FRACTION = 0.3  # K / updates: the paper's K = 150 000 of 500 000 updates
STAGE1_KEY = 1  # Stage I's key: fold_in(key(bench seed), STAGE1_KEY), the same for every SIT variant
STRESS_ENV = "smax_2s3z"
STRESS_DATASETS = {"balanced (medium)": "100%[all m]", "extreme low": "99.5%[all r] + 0.5%[all m]"}
STRESS_METHODS = ("BC", "ICQ", "SIT*", "SIT* w/o priority")
#: (ours) PyMARL scales SMAC's rewards so that the best episode return is 20, the scale SIT's
#: β = 0.1 was tuned at; SMAX's best return is 2 (every enemy's health, normalised, plus 1 for
#: the win), so SMAC's scale is SMAX's × 10. `reward-scale` runs SIT, SIT* and ICQ (whose β
#: and β_c also come from SMAC) at both scales on one SMAX map, each named explicitly, so the
#: study does not depend on the default rule (`reward_scale_rule`; "smac" since the study
#: found × 10 better, "largest", × 1 on SMAX, before).
REWARD_SCALE_ENV = "smax_3s_vs_5z"
SMAC_SCALE_ON_SMAX = oc.SMAC_MAX_RETURN / best_return(REWARD_SCALE_ENV)  # 20 / 2 = 10
REWARD_SCALED = re.compile(r"(.+) reward×(\S+)")


def sweep_name(alpha: float, beta: float) -> str:
    return f"SIT α={alpha:g} β={beta:g}"


SWEEP_METHODS = tuple(sweep_name(a, b) for a in SWEEP_ALPHAS for b in SWEEP_BETAS)


def reward_scaled_name(method: str, scale: float) -> str:
    return f"{method} reward×{scale:g}"


REWARD_SCALE_METHODS = tuple(reward_scaled_name(base, scale) for base in ("SIT", "SIT*", "ICQ")
                             for scale in (1.0, SMAC_SCALE_ON_SMAX))
#: learners whose rewards " reward×<k>" may scale: their temperatures were tuned at SMAC's scale
REWARD_SCALABLE = ("sit", "icq")


def key_name(method: str) -> str:
    """The name a cell's key derives from: a variant that only rescales Stage III's rewards
    ("<SIT variant> reward×<k>") takes its base's key, so the two start from the same networks
    and draw the same batches, and differ in the reward scale alone (a paired comparison)."""
    scaled = REWARD_SCALED.fullmatch(method)
    return scaled[1] if scaled else method


@dataclasses.dataclass(frozen=True)
class SITBenchConfig:
    """What one `teamsift bench sit` run covers, and with which budget."""

    envs: tuple[str, ...] = TABLE_ENVS
    qualities: tuple[str, ...] = ("low", "medium")
    episodes: int = 10_000  # per dataset (SIT: 10 000 trajectories)
    num_seeds: int = 5
    updates: int | None = None  # every learner's updates (None: each paper's default)
    ardnem_updates: int | None = None  # Stage I updates (None: Table 10's 20 000)
    eval_episodes: int = 100  # per seed
    data_dir: str = "datasets/bench-sit"
    pools_dir: str | None = None
    seed: int = 0
    stress_env: str = STRESS_ENV  # the map of the `stress` study (SIT Figure 4(b, c) uses 2s3z)

    def __post_init__(self):
        for name in ("episodes", "num_seeds", "eval_episodes"):
            if not int(getattr(self, name)) >= 1:
                raise ValueError(f"SITBenchConfig.{name}: expected a positive integer, got {getattr(self, name)!r}")
        for name in ("updates", "ardnem_updates"):
            value = getattr(self, name)
            if value is not None and not int(value) >= 1:
                raise ValueError(f"SITBenchConfig.{name}: expected a positive integer or None, got {value!r}")
        unknown = [e for e in self.envs if e not in SIT_SUITE and e != STRESS_ENV]
        if unknown:
            raise ValueError(f"SITBenchConfig.envs: {unknown} have no SIT dataset; expected some of {sorted(SIT_SUITE)}")
        if self.stress_env not in SIT_SUITE or self.stress_env in CONTINUOUS_ENVS:
            discrete_envs = sorted(e for e in SIT_SUITE if e not in CONTINUOUS_ENVS)
            raise ValueError(f"SITBenchConfig.stress_env: expected a discrete map with pools, one of {discrete_envs}; "
                             f"got {self.stress_env!r}")
        bad = [q for q in self.qualities if q not in ("low", "medium")]
        if bad:
            raise ValueError(f"SITBenchConfig.qualities: expected 'low' and/or 'medium', got {bad}")


# --- learners -------------------------------------------------------------------------------

#: Table method → registered algorithm (and its sampler).
SIMPLE_METHODS = {"BC": "bc", "MABCQ": "mabcq", "MACQL": "macql", "ICQ": "icq", "TD3+BC": "td3bc", "OMAR": "omar",
                  "MADDPG+CQL": "maddpg_cql", "MADDPG+CQL+PJAP": "maddpg_cql_pjap"}


def method_spec(name: str, bench: SITBenchConfig) -> pipeline.TrainSpec:
    """The training spec of a table method: a registered learner, or a SIT variant — "SIT"
    (the paper's α, β), "SIT*" (the swept α, β), either followed by an ablation of SIT's
    Figure 4 (" w/o decomp", " w/o attention", " w/o ensemble", " w/o GAT", " w/o
    priority") or Stage I with Figure 7's monotonic mixer (" w/ MNC"), or a sweep point
    "SIT α=<α> β=<β>"; any SIT variant, and ICQ, may end in " reward×<k>" (the learning
    rewards × k: SIT's Stage III, ICQ's)."""
    scaled = REWARD_SCALED.fullmatch(name)
    if scaled:
        base = method_spec(scaled[1], bench)
        try:
            scale = float(scaled[2])
        except ValueError:
            raise ValueError(f"method {name!r}: expected a number after 'reward×', got {scaled[2]!r}") from None
        if base.algorithm not in REWARD_SCALABLE:
            raise ValueError(f"method {name!r}: 'reward×<k>' scales the rewards of SIT and ICQ (tuned at SMAC's "
                             f"scale); {scaled[1]!r} is {base.algorithm}")
        return dataclasses.replace(base, hyperparameters=dataclasses.replace(base.hyperparameters,
                                                                             reward_scale=scale))
    if name in SIMPLE_METHODS:
        overrides = {}
        if name == "MADDPG+CQL+PJAP":  # a shortened run keeps the paper's ramp as a fraction of training
            overrides["pjap.ramp_steps"] = int(PJAP_RAMP_FRACTION * (bench.updates or 500_000))
        return pipeline.make_spec(SIMPLE_METHODS[name], overrides=overrides)
    sweep = re.fullmatch(r"SIT α=(\S+) β=(\S+)", name)
    if sweep:
        return pipeline.make_spec("sit", overrides={"dper.alpha": float(sweep[1]), "beta": float(sweep[2])})
    bases = {"SIT": {}, "SIT*": {"dper.alpha": SWEPT_ALPHA, "beta": SWEPT_BETA}}
    stem, _, replaced = name.partition(" w/ ")
    if replaced == "MNC" and stem in bases:  # Fig. 7: Stage I with QMIX's monotonic mixer (eq. 15) for the attention
        return pipeline.make_spec("sit", overrides={**bases[stem], "ardnem.mixer": "monotonic"})
    stem, _, ablation = name.partition(" w/o ")
    ablations = {"": {}, "decomp": {"decomposition": False}, "attention": {"ardnem.attention": False},
                 "ensemble": {"ardnem.ensemble_size": 1}, "GAT": {"use_gat": False}, "priority": {"dper.alpha": 1e6}}
    if stem not in bases or ablation not in ablations:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(SIMPLE_METHODS)}, SIT or SIT* "
                         f"(optionally with ' w/o <part>' of {sorted(k for k in ablations if k)}, or ' w/ MNC'), or "
                         "'SIT α=<α> β=<β>'")
    overrides = {**bases[stem], **ablations[ablation]}
    if ablation == "priority":  # uniform type-wise buffers in effect (α → ∞), SIT*'s other settings
        overrides = {**bases[stem], "dper.alpha": 1e6}
    if ablation == "decomp":
        overrides = {k: v for k, v in overrides.items() if not k.startswith("dper.")}
    return pipeline.make_spec("sit", overrides=overrides)


def stage1_key(bench: SITBenchConfig) -> jax.Array:
    """SIT Stage I's key: the same for every SIT variant and dataset of a bench seed."""
    return jax.random.fold_in(jax.random.key(bench.seed), STAGE1_KEY)


class Trainer:
    """Trains one named method on one dataset, seeds vmapped, in a run directory of its own
    under `runs_dir` (resumable: an interrupted cell continues from its last checkpoint).
    SIT's Stage I depends only on the dataset and the ARDNEM config and budget: it is trained
    once with one key per bench seed, kept for every SIT variant of the run and saved beside
    the dataset (`stage1-<digest>.msgpack`), so later runs on the same dataset reuse it."""

    def __init__(self, bench: SITBenchConfig, progress: bool, runs_dir: Path | None = None):
        self.bench = bench
        self.progress = progress
        self.runs_dir = runs_dir
        self._stage1: dict[Any, ardnem.ARDNEMResult] = {}

    def stage1(self, dataset, config: ardnem.ARDNEMConfig) -> ardnem.ARDNEMResult:
        updates = self.bench.ardnem_updates or registry.get("ardnem").updates
        cache_key = (str(dataset.path), config, updates)
        if cache_key not in self._stage1:
            described = {**dataclasses.asdict(config), "updates": updates}
            digest = hashlib.sha1(json.dumps(described, sort_keys=True).encode()).hexdigest()[:12]
            path = Path(dataset.path) / f"stage1-seed{self.bench.seed}-{digest}.msgpack"
            if path.is_file():
                result = ardnem.load_result(path)
            else:
                # In a run directory of its own, like every cell: an interrupted Stage I (about half
                # an hour on a CPU core at Table 10's budget) resumes from its last checkpoint.
                run_dir = None if self.runs_dir is None else str(
                    Path(self.runs_dir) / f"{Path(dataset.path).name}_stage1-seed{self.bench.seed}-{digest}")
                run = RunConfig(updates=updates, log_every=min(500, updates), progress=self.progress,
                                label="Stage I (ARDNEM)", run_dir=run_dir, resume=run_dir is not None,
                                checkpoint_every=max(1, updates // 10) if run_dir else 0)
                result = pipeline.run_stage1(config, dataset, stage1_key(self.bench), run, updates)
                ardnem.save_result(result, path)
            self._stage1[cache_key] = result
        return self._stage1[cache_key]

    def run_config(self, method: str, dataset, fresh: bool) -> RunConfig:
        spec = method_spec(method, self.bench)
        updates = self.bench.updates or registry.get(spec.algorithm).updates
        run_dir = None
        if self.runs_dir is not None:
            slug = re.sub(r"[^A-Za-z0-9_.=+*-]+", "_", f"{Path(dataset.path).name}/{method}")
            run_dir = str(Path(self.runs_dir) / slug)
        return RunConfig(updates=updates, seeds=self.bench.num_seeds, log_every=min(500, updates),
                         checkpoint_every=max(1, updates // 10) if run_dir else 0, run_dir=run_dir,
                         resume=not fresh and run_dir is not None, overwrite=fresh and run_dir is not None,
                         progress=self.progress, label=method)

    def __call__(self, method: str, dataset, key: jax.Array, fresh: bool = False) -> pipeline.TrainResult:
        spec = method_spec(method, self.bench)
        stage1 = self.stage1(dataset, spec.ardnem) if spec.needs_stage1() else None
        stage_updates = {"behaviour": self.bench.updates} if self.bench.updates else None
        return pipeline.train(spec.algorithm, dataset, key, self.run_config(method, dataset, fresh), spec=spec,
                              stage1=stage1, stage_updates=stage_updates)


# --- datasets -------------------------------------------------------------------------------

def dataset_path(bench: SITBenchConfig, env_id: str, name: str) -> Path:
    slug = name.replace(" ", "-").replace("(", "").replace(")", "")
    return Path(bench.data_dir) / f"{env_id}-{slug}-{bench.episodes}ep-seed{bench.seed}"


def ensure_dataset(bench: SITBenchConfig, env_id: str, name: str, spec: str, key: jax.Array, progress: bool):
    """The cached dataset of (env, spec, episodes, seed), generated from the pools if missing."""
    path = dataset_path(bench, env_id, name)
    if not (path / "meta.json").is_file():
        pools = load_pools(env_id, bench.pools_dir)
        env = make(env_id, **pools.env_kwargs)
        generate_from_spec(env, pools, spec, bench.episodes, key, path, overwrite=True, progress=progress)
    return load_dataset(path)


# --- one cell -------------------------------------------------------------------------------

def seed_returns(env, policies, key: jax.Array, episodes: int) -> list[float]:
    """Each seed's evaluated mean team return (seed s evaluated with fold_in(key, s))."""
    return [float(evaluate(env, p, jax.random.fold_in(key, s), episodes).team_return.mean)
            for s, p in enumerate(policies)]


def has_action_distribution(method: str, dataset) -> bool:
    """Whether the method's discrete policy is a distribution over actions (BC's, ICQ's and
    SIT's actors, rescaled or not), which can act greedily or by sampling. MABCQ and MACQL act
    greedily on Q."""
    base = key_name(method)
    return bool(dataset.spec.discrete) and (base in ("BC", "ICQ") or base.startswith("SIT"))


def mode_name(policy) -> str:
    return "greedy" if policy.deterministic else "sampled"


def run_cell(trainer: Trainer, method: str, env, dataset, key: jax.Array, fresh: bool = False) -> dict:
    """Train and evaluate one cell. The cell's return is in the learner's own action mode
    (BC samples, ICQ and SIT act greedily, as PyMARL's test mode); a discrete actor is also
    evaluated in the other mode with the same keys (`other_mode`), so the two can be compared."""
    bench = trainer.bench
    train_key, eval_key = jax.random.split(key)
    started = time.perf_counter()
    result = trainer(method, dataset, train_key, fresh)
    train_seconds = time.perf_counter() - started + result.fit.earlier_seconds  # and a resumed run's earlier processes
    policies = result.policies()
    returns = seed_returns(env, policies, eval_key, bench.eval_episodes)
    cell = {"returns": returns, "mean": float(np.mean(returns)), "std": float(np.std(returns)),
            "train_seconds": train_seconds, "updates": int(result.fit.updates)}
    if result.fit.run_dir is not None:
        cell["run_dir"] = str(result.fit.run_dir)
    if has_action_distribution(method, dataset):
        others = [p.replace(deterministic=not p.deterministic) for p in policies]
        other_returns = seed_returns(env, others, eval_key, bench.eval_episodes)
        cell["mode"] = mode_name(policies[0])
        cell["other_mode"] = {"mode": mode_name(others[0]), "returns": other_returns,
                              "mean": float(np.mean(other_returns)), "std": float(np.std(other_returns))}
    if "behaviour" in result.stages:  # MABCQ's behaviour model
        cell["behaviour_updates"] = int(result.stages["behaviour"].updates)
    if result.spec.algorithm == "sit":  # per-stage wall time (Stage I: the shared one's training time)
        stage1 = result.stage1
        cell["stage_seconds"] = {"stage1": stage1_seconds(stage1), "stage3": float(result.seconds["main"])}
    return cell


def stage1_seconds(stage1: ardnem.ARDNEMResult | None) -> float:
    """Stage I's training time: the engine's elapsed seconds at its last log point (over
    every process of a resumed run); results saved before the engine kept "seconds"."""
    if stage1 is None:
        return 0.0
    if "seconds" in stage1.logs:
        return float(stage1.logs["seconds"])
    elapsed = np.asarray(stage1.logs.get("elapsed", []), np.float64).ravel()
    return float(elapsed[-1]) if elapsed.size else 0.0


def run_rows(bench: SITBenchConfig, rows: list[tuple[str, str, str, tuple[str, ...]]], *, progress: bool = True,
             results: dict | None = None, on_cell: Callable[[], None] | None = None,
             trainer: Trainer | None = None, known: dict | None = None, rerun: bool = False,
             machine: str | None = None) -> dict:
    """rows: (env_id, dataset name, composition spec, methods). Fills and returns
    `results` {row label: row}; `on_cell()` runs after every finished cell. Pass one
    `trainer` to several calls to share SIT's Stage I between them. A cell that `results`
    already holds is kept (a rerun of an interrupted command goes on where it stopped;
    unfinished cells resume from their run directories), unless `rerun`, which trains it
    again from scratch. A cell already in `known` (another study's {row label: row} of the
    same budget) is copied, not rerun: a cell's key depends only on its row and method, so
    the run would repeat it exactly. `machine`: recorded in every new cell (made on another
    machine than the results it joins)."""
    trainer = Trainer(bench, progress=False) if trainer is None else trainer
    results = {} if results is None else results
    total = sum(len(methods) for *_, methods in rows)
    root = jax.random.key(bench.seed)
    with progress_bar(progress) as bar:
        task = bar.add_task("bench sit", total=total)
        for env_id, name, spec, methods in rows:
            row_key = named_key(root, env_id, name)
            dataset = ensure_dataset(bench, env_id, name, spec, jax.random.fold_in(row_key, 0), progress=False)
            env = make(env_id, **dataset.meta.get("env_kwargs", ENV_KWARGS.get(env_id, {})))
            row = results.setdefault(f"{env_id} {name}", {"cells": {}})  # --rerun replaces the cells it holds
            row.update(env=env_id, dataset=name, spec=spec, discrete=bool(dataset.spec.discrete),
                       episodes=dataset.num_episodes, behavior=float(np.mean(dataset.episodes["return"])))
            for method in methods:
                bar.update(task, description=f"{env_id} {name}: {method}")
                done = (known or {}).get(f"{env_id} {name}", {}).get("cells", {}).get(method)
                if done is None and not rerun:
                    done = row["cells"].get(method)
                if done is not None and "error" not in done:
                    row["cells"][method] = done
                    bar.advance(task)
                    continue
                try:
                    cell = run_cell(trainer, method, env, dataset, named_key(row_key, key_name(method)),
                                    fresh=method in row["cells"])
                except ValueError as exc:  # e.g. a learner that does not support the action space
                    cell = {"error": str(exc)}
                if machine is not None:
                    cell["machine"] = machine
                row["cells"][method] = cell
                if on_cell is not None:
                    on_cell()
                bar.advance(task)
    return results


def table_rows(bench: SITBenchConfig) -> list[tuple[str, str, str, tuple[str, ...]]]:
    rows = []
    for env_id in bench.envs:
        if env_id not in SIT_SUITE:
            continue
        discrete = make(env_id).spec.discrete
        methods = DISCRETE_METHODS if discrete else CONTINUOUS_METHODS
        for quality in bench.qualities:
            rows.append((env_id, quality, SIT_SUITE[env_id][quality], methods))
    return rows


def ablation_rows(env_id: str = "CN_3ls3l", quality: str = "low"):
    return [(env_id, quality, SIT_SUITE[env_id][quality], ABLATIONS)]


def stress_rows(env_id: str = STRESS_ENV):
    return [(env_id, name, spec, STRESS_METHODS) for name, spec in STRESS_DATASETS.items()]


def sweep_rows(env_id: str = "CN_3ls3l", quality: str = "low"):
    return [(env_id, quality, SIT_SUITE[env_id][quality], SWEEP_METHODS)]


def reward_scale_rows(env_id: str = REWARD_SCALE_ENV, qualities: tuple[str, ...] = ("low",)):
    return [(env_id, quality, SIT_SUITE[env_id][quality], REWARD_SCALE_METHODS) for quality in qualities]


def pjap_rows():
    return [(PJAP_ENV, name, spec, PJAP_METHODS) for name, spec in PJAP_DATASETS.items()]


# --- report ---------------------------------------------------------------------------------

def _cell_text(cell: dict | None, best: bool, marks: dict[str, str] | None = None) -> str:
    if cell is None:
        return "—"
    if "error" in cell:
        return "n/a"
    text = f"{cell['mean']:.2f} ± {cell['std']:.2f}"
    return (f"**{text}**" if best else text) + _machine_mark(cell, marks or {})


MACHINE_MARKS = ("†", "‡", "§", "¶")


def machine_marks(studies: dict) -> dict[str, str]:
    """One mark per other machine whose cells were merged in (`merge_reports(..., other_machine=True)`),
    in the order their cells first appear: † for the first, ‡ for the second, ..."""
    machines = dict.fromkeys(cell["machine"] for rows in studies.values() for row in rows.values()
                             for cell in row["cells"].values() if "machine" in cell)
    if len(machines) > len(MACHINE_MARKS):
        raise ValueError(f"{len(machines)} other machines; the tables can mark {len(MACHINE_MARKS)}")
    return dict(zip(machines, MACHINE_MARKS))


def _machine_mark(cell: dict, marks: dict[str, str]) -> str:
    return marks.get(cell["machine"], "†") if "machine" in cell else ""


def table_order(item: tuple[str, dict]) -> tuple[int, int]:
    """Rows in `TABLE_ENVS`' order, low before medium, whatever order their runs finished in;
    other rows (stress, ablation datasets) after them, as they came."""
    env, dataset = item[1].get("env"), item[1].get("dataset")
    qualities = ("low", "medium")
    return (TABLE_ENVS.index(env) if env in TABLE_ENVS else len(TABLE_ENVS),
            qualities.index(dataset) if dataset in qualities else len(qualities))


def render_table(title: str, rows: dict, methods: tuple[str, ...], marks: dict[str, str] | None = None) -> list[str]:
    marks = machine_marks({"rows": rows}) if marks is None else marks
    lines = [f"## {title}", "", "| dataset | Behavior | " + " | ".join(methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for label, row in sorted(rows.items(), key=table_order):
        means = {m: row["cells"][m]["mean"] for m in methods if "mean" in row["cells"].get(m, {})}
        top = max(means, key=means.get) if means else None
        cells = [_cell_text(row["cells"].get(m), m == top, marks) for m in methods]
        lines.append(f"| {label} ({row['episodes']:,} ep.) | {row['behavior']:.2f} | " + " | ".join(cells) + " |")
    return lines + [""] + _other_machines_note(rows, marks)


def _other_machines_note(rows: dict, marks: dict[str, str]) -> list[str]:
    """A footnote per other machine whose cells (marked) are in `rows`; where that machine
    regenerated a row's dataset with another mean return, the note gives it."""
    lines = []
    for machine, mark in marks.items():
        cells = [(label, cell) for label, row in rows.items() for cell in row["cells"].values()
                 if cell.get("machine") == machine]
        if not cells:
            continue
        behaviors = dict.fromkeys(f"{label} {cell['dataset_behavior']:.4g} (the row's {rows[label]['behavior']:.4g})"
                                  for label, cell in cells if "dataset_behavior" in cell)
        regenerated = f" Its regenerated datasets' Behavior: {', '.join(behaviors)}." if behaviors else ""
        lines.append(f"{mark} ran on {machine}, not the machine named above.{regenerated}")
    return lines + [""] if lines else []


def render_sweep(rows: dict) -> list[str]:
    """SIT's Figure 8 procedure as a table: mean ± std of SIT for every (α, β) of the sweep."""
    lines = []
    for label, row in rows.items():
        lines += [f"## α × β sweep on {label} (SIT Figure 8; SIT* uses α = {SWEPT_ALPHA:g}, β = {SWEPT_BETA:g})", "",
                  "| DPER α \\ CRR β | " + " | ".join(f"{b:g}" for b in SWEEP_BETAS) + " |",
                  "|---|" + "---|" * len(SWEEP_BETAS)]
        for alpha in SWEEP_ALPHAS:
            cells = [_cell_text(row["cells"].get(sweep_name(alpha, beta)), False) for beta in SWEEP_BETAS]
            lines.append(f"| {alpha:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def render_modes(studies: dict) -> list[str]:
    """Greedy against sampled actions for every cell evaluated both ways."""
    pairs = {(label, method): cell for study in studies.values() for label, row in study.items()
             for method, cell in row["cells"].items() if "other_mode" in cell}  # a copied cell once
    if not pairs:
        return []
    lines = ["## Greedy and sampled actions (same policies, same evaluation keys)", "",
             "| dataset | method | greedy | sampled |", "|---|---|---|---|"]
    for (label, method), cell in pairs.items():
        by_mode = {cell["mode"]: cell, cell["other_mode"]["mode"]: cell["other_mode"]}
        own = {mode: ("*" if mode == cell["mode"] else "") for mode in by_mode}
        texts = [f"{by_mode[m]['mean']:.2f} ± {by_mode[m]['std']:.2f}{own[m]}" for m in ("greedy", "sampled")]
        lines.append(f"| {label} | {method} | " + " | ".join(texts) + " |")
    return lines + ["", "\\* the mode the tables above report (the learner's own).", ""]


def render(report: dict) -> str:
    bench = report["config"]
    lines = ["# SIT benchmark: offline learners on agent-wise imbalanced datasets", "",
             f"Machine: {report['machine']}", "",
             "Commands: " + ", ".join(f"`{c}`" for c in report.get("commands", [report["command"]])), "",
             f"Budget: updates per learner {bench['updates'] or 'paper defaults'}, ARDNEM updates "
             f"{bench['ardnem_updates'] or 20000}, {bench['num_seeds']} seeds (one vmapped program per learner), "
             f"{bench['eval_episodes']} evaluation episodes per seed; cells are mean ± std over seeds of the "
             "evaluated mean team return (bold: best learner of the row). Behavior: the dataset's mean return.", ""]
    studies = report["studies"]
    marks = machine_marks(studies)
    if studies.get("table"):
        is_discrete = {k: v.get("discrete", v["env"] not in CONTINUOUS_ENVS) for k, v in studies["table"].items()}
        discrete = {k: v for k, v in studies["table"].items() if is_discrete[k]}
        continuous = {k: v for k, v in studies["table"].items() if not is_discrete[k]}
        if discrete:
            lines += render_table("Discrete (SIT Table 1)", discrete, DISCRETE_METHODS, marks)
            lines += aggregate.render("Discrete", aggregate.aggregate(discrete, DISCRETE_METHODS, seed=bench["seed"]))
        if continuous:
            lines += render_table("Continuous", continuous, CONTINUOUS_METHODS, marks)
            lines += aggregate.render("Continuous", aggregate.aggregate(continuous, CONTINUOUS_METHODS,
                                                                        seed=bench["seed"]))
    if studies.get("ablations"):
        lines += render_table("Ablations (SIT Figures 4(a) and 7)", studies["ablations"], ABLATIONS, marks)
    if studies.get("stress"):
        maps = ", ".join(sorted({row.get("env", STRESS_ENV) for row in studies["stress"].values()}))
        lines += render_table(f"Stress cases on {maps} (SIT Figure 4(b, c))", studies["stress"], STRESS_METHODS,
                              marks)
    if studies.get("sweep"):
        lines += render_sweep(studies["sweep"])
    if studies.get("reward-scale"):
        lines += render_table(f"SIT and ICQ with SMAC's reward scale (learning rewards × {SMAC_SCALE_ON_SMAX:g}, "
                              "paired with the unscaled cell: same keys)", studies["reward-scale"],
                              REWARD_SCALE_METHODS, marks)
    if studies.get("pjap"):
        lines += render_table(f"PJAP on {PJAP_ENV} (MADDPG+CQL, BRUD policy updates)", studies["pjap"],
                              PJAP_METHODS, marks)
    lines += render_modes(studies)
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    seconds = [(label, m, c) for study in studies.values() for label, row in study.items()
               for m, c in row["cells"].items() if "train_seconds" in c]
    if seconds:
        lines += [f"## Wall clock (training, {bench['num_seeds']} seeds together, compile included)", "",
                  "| dataset | method | updates | seconds | SIT stages I / II / III |", "|---|---|---|---|---|"]
        for label, method, cell in seconds:
            stages = cell.get("stage_seconds")
            stage_text = " / ".join(f"{stages[k]:.0f}" if k in stages else "—"  # II: inside III's sampler now
                                    for k in ("stage1", "stage2", "stage3")) if stages else ""
            seconds_text = f"{cell['train_seconds']:.0f}{_machine_mark(cell, marks)}"
            lines.append(f"| {label} | {method} | {cell['updates']:,} | {seconds_text} | {stage_text} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def save(report: dict, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write <stem>.json and <stem>.md atomically."""
    return write_report(report, render(report), out_dir, stem)


BUDGET_FIELDS = ("episodes", "num_seeds", "updates", "ardnem_updates", "eval_episodes", "seed")


def merge_reports(into: dict, other: dict, *, other_machine: bool = False) -> dict:
    """`into` with the rows and cells of `other`, a run of the same budget in another process
    (e.g. one dataset per core): `other`'s cells replace those of the same row and method, its
    commands join the list, `into`'s notes stay. Raises ValueError when the budgets differ, and
    when the machines differ unless `other_machine`: then each of `other`'s cells keeps its
    machine under "machine", and the rendered tables mark it (its wall clock is that machine's);
    joining a row `into` has, it keeps that row's description, and where the other machine
    regenerated the dataset with another mean return the cell keeps it ("dataset_behavior")."""
    differ = budget_differences(into, other, BUDGET_FIELDS)
    if differ:
        raise ValueError(f"merge: budget fields {differ} differ: "
                         + ", ".join(f"{f} {into['config'].get(f)!r} vs {other['config'].get(f)!r}" for f in differ))
    foreign = into.get("machine") != other.get("machine")
    if foreign and not other_machine:
        raise ValueError(f"merge: machines differ ({into.get('machine')!r} vs {other.get('machine')!r}); "
                         "their wall clocks are not comparable (allow it with other_machine=True, "
                         "--allow-other-machine, and the cells are marked with their machine)")
    merged = copy.deepcopy(into)
    for study, rows in other["studies"].items():
        target = merged["studies"].setdefault(study, {})
        for label, row in rows.items():
            incoming = copy.deepcopy(row["cells"])
            kept = target.get(label)
            for cell in incoming.values() if foreign else ():
                cell.setdefault("machine", other["machine"])
                if kept is not None and kept.get("behavior") != row.get("behavior"):  # regenerated there
                    cell.setdefault("dataset_behavior", row.get("behavior"))
            # Another machine's cells join an existing row under its dataset's description.
            described = kept if foreign and kept is not None else row
            target[label] = {**copy.deepcopy(described), "cells": {**(kept or {}).get("cells", {}), **incoming}}
    merged["commands"] = joined_commands(into, other)
    return merged


def run(bench: SITBenchConfig, studies: tuple[str, ...] = ("table",), *, progress: bool = True,
        machine: str = "", command: str = "", out_dir: Path | None = None, stem: str = "sit",
        methods: tuple[str, ...] | None = None, rerun: bool = False) -> dict:
    """Run the named studies ("table", "ablations", "stress", "sweep", "pjap", "reward-scale");
    with out_dir, the report is rewritten after every cell, so an interrupted run keeps what it finished, and
    merged with an earlier result of the same budget, whose finished cells are kept unless
    `rerun`. `methods` restricts every study to those methods (the other cells of a merged
    row stay as they were)."""
    report = {"machine": machine, "command": command, "config": dataclasses.asdict(bench), "studies": {}}
    if out_dir is not None:
        report = merge_previous(report, Path(out_dir) / f"{stem}.json", BUDGET_FIELDS, ("studies", "notes"))
    builders = {"table": lambda: table_rows(bench), "ablations": ablation_rows,
                "stress": lambda: stress_rows(bench.stress_env),
                "sweep": sweep_rows, "pjap": pjap_rows,
                "reward-scale": lambda: reward_scale_rows(qualities=bench.qualities)}
    for study in studies:
        if study not in builders:
            raise ValueError(f"unknown study {study!r}; expected some of {sorted(builders)}")
    checkpoint = (lambda: save(report, out_dir, stem)) if out_dir is not None else None
    runs_dir = Path(bench.data_dir) / "runs" / stem if out_dir is not None else None
    trainer = Trainer(bench, progress=False, runs_dir=runs_dir)  # one Stage I cache for every study
    for study in studies:
        rows = builders[study]()
        if methods is not None:
            rows = [(env, name, spec, tuple(m for m in row_methods if m in methods))
                    for env, name, spec, row_methods in rows]
        report["studies"].setdefault(study, {})
        known = report["studies"].get("table") if study != "table" else None
        run_rows(bench, rows, progress=progress, results=report["studies"][study], on_cell=checkpoint,
                 trainer=trainer, known=known, rerun=rerun, machine=other_machine(report, machine))
    return report
