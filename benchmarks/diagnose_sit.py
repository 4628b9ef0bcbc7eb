"""Diagnose a finished (or checkpointed) SIT run: the CRR filter against the Q scale, DPER's
effective sample size, and the critic's fit (issue 21, part 3).

    python benchmarks/diagnose_sit.py --run-dir RUN --dataset DATA          # results/sit-diagnosis-<device>.{md,json}
    python benchmarks/diagnose_sit.py --run-dir RUN --dataset DATA --retrain-stage1 --ardnem-updates 50 \
        --minibatches 2 --out /tmp/smoke                                    # a smoke run (Stage I retrained, small)
    python benchmarks/diagnose_sit.py --run-dir RUNS/<ds>_SIT --dataset DATA --icq-run-dir RUNS/<ds>_ICQ \
        --notes-file NOTES.md                                               # + ICQ's filter, + the reader's notes

The recorded diagnosis (results/sit-diagnosis-cpu.{md,json}) was made by the command in its header;
for the paper-budget runs of `teamsift bench sit ... --name sit-paper-updates --data-dir datasets/bench-sit`:

    python benchmarks/diagnose_sit.py --dataset datasets/bench-sit/CN_3ls3l-low-10000ep-seed0 \
        --run-dir "datasets/bench-sit/runs/sit-paper-updates-cpu/CN_3ls3l-low-10000ep-seed0_SIT" \
        --icq-run-dir datasets/bench-sit/runs/sit-paper-updates-cpu/CN_3ls3l-low-10000ep-seed0_ICQ \
        --out benchmarks/results/sit-diagnosis-paper-updates-cpu
    (and --run-dir ".../CN_3ls3l-low-10000ep-seed0_SIT*" for SIT*: α = 1, β = 0.1)

A run still training is diagnosed at its latest complete checkpoint (`--step` picks another).

RUN is a SIT run directory of `teamsift bench sit` or `teamsift train --algo sit` (its
`config.json` and `checkpoints/`); DATA the dataset it trained on. Nothing is written there:
the chosen checkpoint (the latest by default) is copied to a temporary directory and
restored through the engine's `Checkpoints` (orbax), into the state that
`sit.learner(config, dataset)` initialises (actor π_i, critic Q_i, target Q'_i per seed).
Stage I (ARDNEM) is, in this order: `--stage1 FILE`; the run's own `stages/ardnem/result.msgpack`
(`teamsift train`); the bench's cache beside the dataset (`stage1-seed<s>-<digest>.msgpack`,
`bench.sit.Trainer.stage1`); else retrained here with `--ardnem-updates` (default: the run's
budget) and not saved — then Stage III's inputs differ from the run's, and the report says so.

On `--minibatches` batches of B individual trajectories per agent (B = the run's batch size,
32), drawn as Stage III draws them (the run's DPER sampler, `sit.trajectory_batch`), and on as
many batches drawn uniformly from the type-wise buffers (held out in effect: DPER at the run's
α almost never drew them), for every seed:

1. the CRR filter (eq. 10): A = Q_i(τ_j, a_j) − Σ_a π_i(a|τ_j) Q_i(τ_j, a) with the restored
   actor and critic; f(A) = min(B·softmax_B(A/β), 20) over agent i's B trajectories at each
   step; per step Kish's ESS (Σf)²/Σf² as a fraction of B (`sit.effective_sample_fraction`),
   the share of weights at the clip and below 0.01 — for the run's β and for β ∈ {0.1, 0.3,
   1, 3, 10} on the same A;
2. DPER (eq. 7): per type buffer J, for α ∈ {0.2, 1} (and the run's), the ESS 1/Σp² of P_J
   relative to the buffer size, the sampling mass of its top 1% / 10% of trajectories, the
   trajectories expected to be drawn at least once in the run's updates, and what P_J
   draws against uniform sampling: the episodes' team return and the slots' behaviour level;
3. the critic (eqs. 8–9): Q_i(τ_j, a_j) against the discounted Monte-Carlo return of the
   (scaled) r̂ it regresses on, with and without the bootstrapped tail after a time-limit
   end; correlation, bias, std ratio; the TD error against the restored target network.
With `--icq-run-dir`, ICQ's actor filter (the same batch softmax, ICQ's eq. 14) on its own
restored critic and uniform episodes, for comparison. The report opens with numbers-first
findings computed from the tables; `--notes-file` adds the reader's interpretation.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import teamsift  # noqa: F401  (XLA flags before JAX starts)
from teamsift.algos import pipeline, registry, sit
from teamsift.data import DPER, Uniform, dataset_fingerprint, dper, item_space, load_dataset
from teamsift.data.samplers import draw_trajectories
from teamsift.engine import RunConfig, placement
from teamsift.engine.checkpoints import Checkpoints
from teamsift.fileio import atomic_write_text
from teamsift.machine import describe, machine
from teamsift.value import ardnem

ROOT = Path(__file__).resolve().parents[1]
BETAS = (0.1, 0.3, 1.0, 3.0, 10.0)
ALPHAS = (0.2, 1.0)
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
SMALL_WEIGHT = 0.01


# --- the run: config, Stage I, checkpoint -----------------------------------------------------

def read_run(run_dir: Path, learner: str = "sit") -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; expected a {learner.upper()} run directory (config.json, checkpoints/)")
    record = json.loads(path.read_text())
    if record.get("learner") != learner:
        raise SystemExit(f"{path}: field 'learner': expected {learner!r}, got {record.get('learner')!r}")
    for field in ("hyperparameters", "sampler", "schedule"):
        if field not in record:
            raise SystemExit(f"{path}: field {field!r} missing")
    return record


def _tuples(values: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def run_configs(record: dict) -> tuple[sit.SITConfig, dper.DPERConfig | None, ardnem.ARDNEMConfig | None]:
    names = {f.name for f in dataclasses.fields(sit.SITConfig)}
    config = sit.SITConfig(**{k: v for k, v in _tuples(record["hyperparameters"]).items() if k in names})
    sampler = record["sampler"]
    dper_config = None
    if sampler.get("name") == "dper":
        dper_config = dper.DPERConfig(**_tuples(sampler.get("config") or {}))
    stage1 = record.get("stage1")
    ardnem_config = None if stage1 is None else ardnem.ARDNEMConfig(**stage1)
    return config, dper_config, ardnem_config


def stage1_updates(run_dir: Path) -> int:
    """Stage I's budget as the run recorded it (result.json), else the registry's (Table 10)."""
    result = run_dir / "result.json"
    if result.is_file():
        stages = json.loads(result.read_text()).get("stages", {})
        if "ardnem" in stages:
            return int(stages["ardnem"]["updates"])
    return registry.get("ardnem").updates


def bench_cache_path(dataset, config: ardnem.ARDNEMConfig, updates: int, bench_seed: int) -> Path:
    """Where `teamsift.bench.sit.Trainer.stage1` keeps Stage I beside the dataset."""
    described = {**dataclasses.asdict(config), "updates": updates}
    digest = hashlib.sha1(json.dumps(described, sort_keys=True).encode()).hexdigest()[:12]
    return Path(dataset.path) / f"stage1-seed{bench_seed}-{digest}.msgpack"


def find_stage1(args, run_dir: Path, dataset, config: ardnem.ARDNEMConfig) -> tuple[ardnem.ARDNEMResult, str]:
    updates = stage1_updates(run_dir)
    candidates = [Path(args.stage1)] if args.stage1 else []
    if not args.retrain_stage1:
        candidates += [run_dir / "stages" / "ardnem" / pipeline.STAGE1_FILE,
                       bench_cache_path(dataset, config, updates, args.bench_seed)]
    for path in candidates:
        if path.is_file():
            result = ardnem.load_result(path)
            ardnem.check_result(result, dataset)
            return result, f"loaded {path} (the run's Stage I, {updates:,} updates)"
    if args.stage1:
        raise SystemExit(f"--stage1 {args.stage1}: no such file")
    from teamsift.bench.sit import SITBenchConfig, stage1_key

    retrain = args.ardnem_updates or updates
    reason = "--retrain-stage1" if args.retrain_stage1 else f"no cached result ({', '.join(map(str, candidates))})"
    print(f"Stage I: {reason}; retraining ARDNEM for {retrain:,} updates (not saved)", file=sys.stderr)
    run = RunConfig(updates=retrain, log_every=min(500, retrain), progress=False)
    result = pipeline.run_stage1(config, dataset, stage1_key(SITBenchConfig(seed=args.bench_seed)), run, retrain)
    note = "" if retrain == updates else f"; the run used {updates:,}, so r̂, û and p̂ differ from the run's"
    return result, f"retrained here for {retrain:,} updates (bench seed {args.bench_seed}){note}"


def restore(run_dir: Path, learner, sampler, arrays, sampler_arrays, seeds: int, step: int | None):
    """The run's Stage III state (with its seed axis) at checkpoint `step` (default: the
    latest), through the engine's `Checkpoints` on a temporary copy of that checkpoint."""
    checkpoints = run_dir / "checkpoints"
    steps = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()
                   and (p / "commit_success.txt").is_file()) if checkpoints.is_dir() else []
    if not steps:
        raise SystemExit(f"{checkpoints}: no complete checkpoint (expected <update>/commit_success.txt)")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise SystemExit(f"--step {step}: {checkpoints} holds {steps}")

    def init(key):
        return learner.init(key, arrays), sampler.init(sampler_arrays)

    keys = jax.random.split(jax.random.key(0), seeds)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), jax.eval_shape(jax.vmap(init), keys))
    with tempfile.TemporaryDirectory(prefix="sit-diagnosis-") as tmp:
        shutil.copytree(checkpoints / str(step), Path(tmp) / "checkpoints" / str(step))
        manager = Checkpoints(Path(tmp) / "checkpoints", keep=len(steps))
        try:
            carry, progress, _ = manager.restore(step, abstract)
        finally:
            manager.close()
    return carry[0], step, progress


def policy_files_agree(run_dir: Path, state, seeds: int) -> list[bool] | None:
    """Whether each seed's restored actor equals its saved policy (policies/seed-<k>.msgpack)."""
    from teamsift.nets import load_policy

    agree = []
    for seed in range(seeds):
        path = run_dir / "policies" / f"seed-{seed}.msgpack"
        if not path.is_file():
            return None
        policy, _ = load_policy(path)
        saved = jax.tree.leaves(policy.params)
        restored = jax.tree.leaves(jax.tree.map(lambda x, s=seed: x[s], state.actor))
        agree.append(len(saved) == len(restored) and all(np.allclose(np.asarray(a), np.asarray(b))
                                                         for a, b in zip(saved, restored)))
    return agree


# --- one batch of diagnostics (jitted) ---------------------------------------------------------

def returns_to_go(reward, has_next, continues, tail, gamma):
    """Discounted return of r̂ from each step to the trajectory's end ([B, T, A]); after the
    last step the value `tail` [B, A] is added where the step bootstraps (a time-limit end)."""
    def back(following, t):
        r, h, c = reward[:, t], has_next[:, t], continues[:, t]
        value = r + gamma * jnp.where(h, following, jnp.where(c, tail, 0.0))
        return value, value

    steps = reward.shape[1]
    _, out = jax.lax.scan(back, jnp.zeros_like(reward[:, 0]), jnp.arange(steps - 1, -1, -1))
    return jnp.moveaxis(out[::-1], 0, 1)


def make_batch_diagnostics(actor, critic, config: sit.SITConfig, max_length: int, betas: tuple[float, ...]):
    """(state of one seed, arrays, sampler arrays, key) → the arrays one drawn batch gives."""
    def one(state, arrays, buffers, key):
        episode, source = draw_trajectories(buffers, key, config.batch_size)
        batch = sit.trajectory_batch(arrays, episode, source, max_length, config.bootstrap_truncated)
        mask = batch["mask"]
        logits = sit.policy_logits(actor, state.actor, batch["obs_ext"], batch["avail_ext"])
        advantage = sit.discrete_advantages(logits, state.critic, batch, critic, config)
        fields = sit.critic_fields(critic, batch)
        q = sit.taken_values(critic, state.critic, *fields, batch["actions"])
        # TD error of eq. 9 against the restored target network Q' (and the online critic).
        y = sit.targets_from_logits(critic, logits, state.target, batch, config)
        y_online = sit.targets_from_logits(critic, logits, state.critic, batch, config)
        # V(τ_L) = Σ_a π Q(τ_L, a) at the final observation, the tail a time-limit end bootstraps from.
        final = jnp.sum(mask, axis=1)
        pi_final = jax.nn.softmax(sit.at_steps(logits, final), axis=-1)
        q_final = sit.final_step_values(critic, state.critic, batch)
        v_final = jnp.sum(pi_final * jnp.where(sit.at_steps(batch["avail_ext"], final), q_final, 0.0), axis=-1)
        g = returns_to_go(batch["reward"], batch["has_next"], batch["continues"], jnp.zeros_like(v_final),
                          config.gamma)
        g_boot = returns_to_go(batch["reward"], batch["has_next"], batch["continues"], v_final, config.gamma)
        # distinct individual trajectories (k, j) among each agent's B draws: a trajectory drawn
        # twice enters the batch twice, so the filter's ESS over distinct trajectories is
        # (Σ w)² / Σ_u W_u², W_u the weight of trajectory u summed over its copies (as a fraction of B)
        code = episode * 1024 + source  # [B, A]
        same = (code[:, None, :] == code[None, :, :]).astype(advantage.dtype)  # [B, B, A]
        sorted_code = jnp.sort(code, axis=0)
        distinct = 1 + jnp.sum(sorted_code[1:] != sorted_code[:-1], axis=0)
        per_beta = []
        for beta in betas:
            f = sit.crr_filter(advantage, mask, "softmax", beta, config.weight_clip)
            copies = jnp.einsum("bca,cta->bta", same, f)  # W_u(b) at every step
            distinct_ess = jnp.sum(f, axis=0) ** 2 / jnp.maximum(jnp.sum(f * copies, axis=0), 1e-30)
            per_beta.append({"ess": sit.effective_sample_fraction(f, mask),
                             "ess_distinct": jnp.where(jnp.sum(mask, axis=0) > 0, distinct_ess / jnp.maximum(
                                 jnp.sum(mask, axis=0), 1), jnp.nan),
                             "ess_weighted": sit.effective_sample_fraction(f * batch["weight"], mask),
                             "at_clip": jnp.sum(mask & (f >= config.weight_clip * (1 - 1e-5))),
                             "small": jnp.sum(mask & (f < SMALL_WEIGHT)),
                             "max_share": jnp.max(jnp.where(mask, f, 0.0), axis=0) / jnp.maximum(
                                 jnp.sum(mask, axis=0), 1)})
        return {"advantage": advantage, "q": q, "y": y, "y_online": y_online, "g": g, "g_boot": g_boot,
                "mask": mask, "weight": batch["weight"], "episode": episode, "source": source,
                "distinct": distinct, "betas": per_beta}

    return jax.jit(lambda state, arrays, buffers, keys: jax.lax.map(lambda k: one(state, arrays, buffers, k), keys))


def make_icq_diagnostics(config, actor, critic, max_length: int, betas: tuple[float, ...]):
    """ICQ's actor filter on uniform episode batches (as its run draws them): A = Q_i − Σ_a π_i
    Q_i, f = |B|·softmax_B(A/β) over the B episodes at each step and agent (ICQ's eq. 14;
    `offline_common.batch_softmax_weights`, the same batch softmax as SIT's eq. 10, unclipped)."""
    from teamsift.algos import icq
    from teamsift.algos import offline_common as oc

    def one(state, arrays, key):
        items = jax.random.randint(key, (config.batch_size,), 0, arrays["episode_start"].shape[0], dtype=jnp.int32)
        batch = oc.episode_batch(arrays, items, max_length, config.bootstrap_truncated)
        steps = batch["actions"].shape[1]
        logits = icq.policy_logits(actor, state.actor, batch)[:, :steps]
        q = icq.critic_values(critic, state.critic["critic"], batch["obs"], batch["state"])
        pi = jax.nn.softmax(logits, axis=-1)
        advantage = oc.taken(q, batch["actions"]) - jnp.sum(pi * jnp.where(batch["avail"], q, 0.0), axis=-1)
        mask = jnp.broadcast_to(batch["mask"][..., None], advantage.shape)
        per_beta = []
        for beta in betas:
            f = oc.batch_softmax_weights(advantage, mask, beta)
            per_beta.append({"ess": sit.effective_sample_fraction(f, mask),
                             "small": jnp.sum(mask & (f < SMALL_WEIGHT)),
                             "max_share": jnp.max(jnp.where(mask, f, 0.0), axis=0) / jnp.maximum(jnp.sum(mask, axis=0), 1)})
        return {"advantage": advantage, "mask": mask, "betas": per_beta}

    return jax.jit(lambda state, arrays, keys: jax.lax.map(lambda k: one(state, arrays, k), keys))


def restore_icq(run_dir: Path, dataset):
    """An ICQ run directory's (resolved config, prepared data, state with its seed axis, update
    of the last checkpoint, seeds), restored as SIT's, from a copy."""
    from teamsift.algos import icq

    record = read_run(run_dir, "icq")
    names = {f.name for f in dataclasses.fields(icq.ICQConfig)}
    config = icq.ICQConfig(**{k: v for k, v in _tuples(record["hyperparameters"]).items() if k in names})
    learner = icq.learner(config, dataset)
    seeds = int(record["schedule"]["seeds"])
    data = placement.prepare(learner, dataset, {}, None, "device", 1.0, None)
    sampler = Uniform()
    sampler_arrays = sampler.arrays(item_space(dataset, "episode"), dataset)
    state, step, _ = restore(run_dir, learner, sampler, data.arrays, sampler_arrays, seeds, None)
    return learner.config, data, state, step, seeds


def icq_filter(args, dataset, betas) -> dict:
    """ICQ's filter statistics from its run directory (restored as SIT's, from a copy)."""
    from teamsift.algos import icq

    run_dir = Path(args.icq_run_dir)
    config, data, state, step, seeds = restore_icq(run_dir, dataset)
    spec = dataset.spec
    diagnose = make_icq_diagnostics(config, icq.actor_net_config(config, spec), icq.critic_net_config(config, spec),
                                    int(dataset.lengths.max()), betas)
    outs = []
    for seed in range(seeds):
        keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(jax.random.key(args.seed), 7), seed),
                                args.minibatches)
        outs.append(jax.device_get(diagnose(jax.tree.map(lambda x, s=seed: x[s], state), data.arrays, keys)))
    out = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *outs)  # [S, M, B, T, A]
    mask = out["mask"].astype(bool)
    a = out["advantage"][mask]
    adv = np.where(mask, out["advantage"], np.nan)
    valid = mask.sum(axis=2) >= 2  # [S, M, T, A]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.nanmax(adv, axis=2) - np.nanmin(adv, axis=2)
    res = {"run_dir": str(run_dir), "step": step, "beta": config.beta, "batch_size": config.batch_size,
           "advantage": {"median_abs": float(np.median(np.abs(a))), "std": float(a.std()), **percentiles(a)},
           "within_batch_range_median": float(np.median(spread[valid])), "filter": {}}
    count = mask.sum()
    for beta, stats in zip(betas, out["betas"]):
        res["filter"][f"{beta:g}"] = {"ess_fraction_mean": float(np.nanmean(stats["ess"][valid])),
                                      "below_0.01": float(stats["small"].sum() / count),
                                      "max_share_median": float(np.median(stats["max_share"][valid]))}
    return res


# --- statistics ---------------------------------------------------------------------------------

def percentiles(x: np.ndarray) -> dict:
    return {f"p{p}": float(np.percentile(x, p)) for p in PERCENTILES} if x.size else {}


def fit_stats(q: np.ndarray, g: np.ndarray) -> dict:
    if q.size < 2:
        return {}
    return {"corr": float(np.corrcoef(q, g)[0, 1]), "bias": float(np.mean(q - g)), "std_q": float(np.std(q)),
            "std_return": float(np.std(g)), "std_ratio": float(np.std(q) / max(np.std(g), 1e-12)),
            "mean_q": float(np.mean(q)), "mean_return": float(np.mean(g))}


def batch_stats(out: dict, config: sit.SITConfig, betas, expected_draws: np.ndarray | None) -> dict:
    """Statistics over S seeds × M batches of one kind of draw (host arrays [S, M, ...])."""
    mask = out["mask"].astype(bool)
    a = out["advantage"][mask]
    # spread of A within each agent's batch at one step ([S, M, T, B, A] → [S, M, T, A])
    adv = np.where(mask, out["advantage"], np.nan)
    valid_slice = mask.sum(axis=3) >= 2
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-padding slices
        within_std = np.nanstd(adv, axis=3)
        within_range = np.nanmax(adv, axis=3) - np.nanmin(adv, axis=3)
        q_std = np.nanstd(np.where(mask, out["q"], np.nan), axis=3)
    res = {
        "count": int(mask.sum()),
        "advantage": {"mean": float(a.mean()), "std": float(a.std()), "mean_abs": float(np.abs(a).mean()),
                      "median_abs": float(np.median(np.abs(a))), **percentiles(a)},
        "advantage_over_run_beta": percentiles(a / config.beta),
        "within_batch": {"std_median": float(np.median(within_std[valid_slice])),
                         "range_median": float(np.median(within_range[valid_slice])),
                         "range_p90": float(np.percentile(within_range[valid_slice], 90))},
        "distinct_per_batch": {"mean": float(out["distinct"].mean()), "min": int(out["distinct"].min()),
                               "of": config.batch_size},
        "filter": {},
    }
    count = mask.sum()
    for beta, stats in zip(betas, out["betas"]):
        ess = stats["ess"][valid_slice]
        res["filter"][f"{beta:g}"] = {
            "ess_fraction_mean": float(np.nanmean(ess)), "ess_fraction_median": float(np.nanmedian(ess)),
            "ess_fraction_p10": float(np.nanpercentile(ess, 10)),
            "ess_weighted_fraction_mean": float(np.nanmean(stats["ess_weighted"][valid_slice])),
            "ess_distinct_fraction_mean": float(np.nanmean(stats["ess_distinct"][valid_slice])),
            "at_clip": float(stats["at_clip"].sum() / count), "below_0.01": float(stats["small"].sum() / count),
            "max_share_median": float(np.median(stats["max_share"][valid_slice]))}
    q, g, gb = out["q"][mask], out["g"][mask], out["g_boot"][mask]
    first = np.zeros_like(mask)  # t = 0 of each trajectory
    first[:, :, 0] = mask[:, :, 0]
    delta, delta_online = (out["y"] - out["q"])[mask], (out["y_online"] - out["q"])[mask]
    w = out["weight"][mask]
    res["critic"] = {
        "vs_mc_return": fit_stats(q, g), "vs_mc_return_with_tail": fit_stats(q, gb),
        "at_t0_vs_mc_return": fit_stats(out["q"][first], out["g"][first]),
        "at_t0_vs_mc_return_with_tail": fit_stats(out["q"][first], out["g_boot"][first]),
        "td_target_net": {"mean": float(delta.mean()), "rms": float(np.sqrt(np.mean(delta ** 2))),
                          "mean_abs": float(np.abs(delta).mean()), "eq9_loss": float(np.mean(w * delta ** 2))},
        "td_online": {"mean": float(delta_online.mean()), "rms": float(np.sqrt(np.mean(delta_online ** 2)))},
        "q_std_within_batch_median": float(np.median(q_std[valid_slice])),
    }
    if expected_draws is not None:
        drawn = expected_draws[out["episode"], out["source"]]  # [S, M, B, A]
        res["expected_training_draws"] = {"median": float(np.median(drawn)),
                                          "share_below_1": float(np.mean(drawn < 1.0))}
    return res


def dper_stats(priority: np.ndarray, dataset, config: dper.DPERConfig, alphas, updates: int, batch: int) -> dict:
    """DPER's P_J for each α (exact, float64), against uniform sampling of the same buffers."""
    returns = np.asarray(dataset.returns, np.float64)
    levels = np.asarray(dataset.episodes["behaviour"]).astype(str) if "behaviour" in dataset.episodes else None
    out = {}
    for alpha in alphas:
        cfg = dataclasses.replace(config, alpha=float(alpha))
        per_buffer = {}
        for name, slots in dper.buffer_groups(dataset.spec.agent_types, cfg.group_by).items():
            episode, slot = np.meshgrid(np.arange(priority.shape[0]), slots, indexing="ij")
            episode, slot = episode.reshape(-1), slot.reshape(-1)
            _, p, _ = dper.buffer_priorities(priority[episode, slot].astype(np.float64), cfg)
            size = p.size
            ordered = np.sort(p)[::-1]
            draws = updates * len(slots) * batch  # individual trajectories the buffer gives over the run
            stats = {"size": int(size), "ess": float(1.0 / np.sum(p ** 2)),
                     "ess_fraction": float(1.0 / np.sum(p ** 2) / size),
                     "top_1pct_mass": float(ordered[:max(1, int(np.ceil(0.01 * size)))].sum()),
                     "top_10pct_mass": float(ordered[:max(1, int(np.ceil(0.10 * size)))].sum()),
                     "drawn_at_least_once_expected": float(np.sum(-np.expm1(draws * np.log1p(-np.minimum(p, 1 - 1e-15))))),
                     "draws_over_run": int(draws),
                     "team_return": {"dper": float(np.sum(p * returns[episode])), "uniform": float(returns[episode].mean())}}
            if levels is not None:
                lv = levels[episode, slot]
                stats["level_share"] = {level: {"dper": float(p[lv == level].sum()), "uniform": float(np.mean(lv == level))}
                                        for level in np.unique(lv)}
            per_buffer[name] = stats
        out[f"{alpha:g}"] = per_buffer
    return out


#: Ways to read SIT's "α = 0.2" with "rescaled priority range [0, 20]" (Table 11, eq. 7).
READINGS = {
    "ours": "min–max p̂ to [0, 20] per buffer, then eq. 7 softmax(p̃/α) (DPERConfig default)",
    "after_softmax": "eq. 7 on raw p̂, then the probabilities min–max'd to [0, 20] as sum-tree leaves",
    "raw": "eq. 7 on raw p̂, no rescaling",
    "per_exponent": "PER's exponent: P ∝ p̃^α, p̃ = p̂ min–max'd to [0, 20] (Schaul et al.; not eq. 7)",
}


def reading_probabilities(raw: np.ndarray, alpha: float, reading: str, config: dper.DPERConfig) -> np.ndarray:
    lo, hi = config.priority_range
    if reading in ("ours", "after_softmax"):
        return dper.buffer_priorities(raw, dataclasses.replace(config, alpha=alpha, rescale=(
            "before_softmax" if reading == "ours" else "after_softmax")))[1]
    if reading == "raw":
        return dper.softmax_priorities(raw, alpha)
    scaled = dper.min_max(raw, lo, hi) ** alpha
    return scaled / scaled.sum()


def readings_stats(priority: np.ndarray, dataset, config: dper.DPERConfig, alphas, updates: int, batch: int) -> dict:
    """DPER's ESS under each reading of eq. 7 + Table 11, per type buffer."""
    levels = np.asarray(dataset.episodes["behaviour"]).astype(str) if "behaviour" in dataset.episodes else None
    out = {}
    for reading in READINGS:
        for alpha in alphas:
            for name, slots in dper.buffer_groups(dataset.spec.agent_types, config.group_by).items():
                episode, slot = np.meshgrid(np.arange(priority.shape[0]), slots, indexing="ij")
                episode, slot = episode.reshape(-1), slot.reshape(-1)
                p = reading_probabilities(priority[episode, slot].astype(np.float64), float(alpha), reading, config)
                draws = updates * len(slots) * batch
                row = {"reading": reading, "alpha": float(alpha), "buffer": name, "size": int(p.size),
                       "ess": float(1.0 / np.sum(p ** 2)),
                       "top_1pct_mass": float(np.sort(p)[::-1][:max(1, int(np.ceil(0.01 * p.size)))].sum()),
                       "drawn_at_least_once_expected": float(np.sum(-np.expm1(draws * np.log1p(-np.minimum(p, 1 - 1e-15)))))}
                if levels is not None:
                    lv = levels[episode, slot]
                    row["level_share"] = {level: float(p[lv == level].sum()) for level in np.unique(lv)}
                out[f"{reading} α={alpha:g} {name}"] = row
    return out


def priority_by_level(priority: np.ndarray, dataset) -> dict | None:
    """Stage I's p̂ per behaviour level, and the AUC of p̂ separating the best level from the rest."""
    if "behaviour" not in dataset.episodes:
        return None
    levels = np.asarray(dataset.episodes["behaviour"]).astype(str)
    out = {level: {"mean": float(priority[levels == level].mean()), "count": int((levels == level).sum())}
           for level in np.unique(levels)}
    order = {"random": 0, "r": 0, "medium": 1, "m": 1, "expert": 2, "e": 2}
    ranked = sorted(out, key=lambda k: order.get(k, 0))
    if len(ranked) >= 2:
        top = levels == ranked[-1]
        ranks = np.argsort(np.argsort(priority.reshape(-1))) + 1.0
        n_pos, n_neg = top.sum(), (~top).sum()
        auc = (ranks[top.reshape(-1)].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        out["auc_best_level"] = {"level": ranked[-1], "auc": float(auc)}
    returns = np.asarray(dataset.returns, np.float64)
    out["corr_with_team_return"] = float(np.corrcoef(priority.reshape(-1), np.repeat(returns, priority.shape[1]))[0, 1])
    episode_mean = priority.mean(axis=1, keepdims=True)
    out["within_episode_share_of_variance"] = float(np.var(priority - episode_mean) / np.var(priority))
    return out


def expected_draw_table(sampler_arrays, dataset, updates: int, batch: int) -> np.ndarray:
    """[E, A] expected number of times the run drew each individual trajectory (k, j)."""
    table = np.zeros((dataset.num_episodes, dataset.num_agents))
    for buffer, slots in zip(sampler_arrays.buffers, sampler_arrays.slots):
        p = np.asarray(buffer.probability, np.float64)
        table[np.asarray(buffer.episode), np.asarray(buffer.slot)] = updates * len(np.asarray(slots)) * batch * p
    return table


# --- report -------------------------------------------------------------------------------------

def fmt(x, digits=3) -> str:
    return "—" if x is None else f"{x:.{digits}g}"


def render(report: dict) -> str:
    cfg = report["run"]
    lines = ["# SIT diagnosis: the CRR filter against the Q scale, DPER's effective sample size, the critic's fit",
             "", f"Machine: {report['machine']}", "", f"Command: `{report['command']}`", "",
             f"Run: `{cfg['run_dir']}` (checkpoint {cfg['step']:,} of {cfg['updates']:,} updates, {cfg['seeds']} seeds; "
             f"DPER α = {cfg['alpha']}, CRR β = {cfg['beta']}, batch B = {cfg['batch_size']}, reward scale "
             f"{cfg['reward_scale']:g}); dataset `{cfg['dataset']}`.", "",
             f"Stage I: {report['stage1']['source']}.", "",
             f"Restored actors equal the saved policies/seed-k.msgpack: {report['policy_files_agree']}.", "",
             f"Draws: {report['minibatches']} batches × B = {cfg['batch_size']} individual trajectories per agent and "
             f"seed, from the run's DPER sampler (as Stage III draws them) and uniformly from the same type-wise "
             f"buffers (held out in effect); {report['seconds']:.0f} s.", ""]
    if report.get("diagnosis"):
        lines += ["## Findings (numbers from the tables below)", ""] + [f"- {x}" for x in report["diagnosis"]] + [""]
    if report.get("notes"):
        lines += ["## Diagnosis", ""] + report["notes"] + [""]
    for kind in ("dper", "uniform"):
        stats = report["batches"][kind]
        a = stats["advantage"]
        lines += [f"## 1. CRR filter vs Q scale — {kind} draws", "",
                  f"A = Q_i(τ_j, a_j) − Σ_a π_i Q_i over {stats['count']:,} valid steps: mean {fmt(a['mean'])}, std "
                  f"{fmt(a['std'])}, median |A| {fmt(a['median_abs'])}, percentiles "
                  + ", ".join(f"{k} {fmt(a[k])}" for k in ("p1", "p5", "p50", "p95", "p99")) + ".",
                  f"A/β at the run's β = {cfg['beta']}: "
                  + ", ".join(f"{k} {fmt(v)}" for k, v in stats["advantage_over_run_beta"].items()) + ".",
                  f"Within one agent's batch at one step: median std of A {fmt(stats['within_batch']['std_median'])}, "
                  f"median range (max − min) {fmt(stats['within_batch']['range_median'])} "
                  f"(p90 {fmt(stats['within_batch']['range_p90'])}); distinct trajectories per batch "
                  f"{stats['distinct_per_batch']['mean']:.1f} of {stats['distinct_per_batch']['of']} "
                  f"(min {stats['distinct_per_batch']['min']}).", "",
                  "| β | ESS/B mean | ESS/B median | ESS/B p10 | ESS/B with η/û | ESS/B over distinct trajectories | "
                  "at clip 20 | below 0.01 | largest weight / B (median) |", "|---|---|---|---|---|---|---|---|---|"]
        for beta, f in stats["filter"].items():
            lines.append(f"| {beta} | {f['ess_fraction_mean']:.3f} | {f['ess_fraction_median']:.3f} | "
                         f"{f['ess_fraction_p10']:.3f} | {f['ess_weighted_fraction_mean']:.3f} | "
                         f"{f['ess_distinct_fraction_mean']:.3f} | {f['at_clip']:.3%} | "
                         f"{f['below_0.01']:.1%} | {f['max_share_median']:.3f} |")
        lines.append("")
    if report.get("icq"):
        q = report["icq"]
        lines += ["## 1b. ICQ's filter on its own run (the same batch softmax, uniform episodes)", "",
                  f"Run `{q['run_dir']}` (checkpoint {q['step']:,}, β = {q['beta']:g}, B = {q['batch_size']}): "
                  f"A = Q_i − Σ_a π_i Q_i median |A| {fmt(q['advantage']['median_abs'])}, std {fmt(q['advantage']['std'])}, "
                  f"p1 {fmt(q['advantage']['p1'])}, p99 {fmt(q['advantage']['p99'])}; within-batch range median "
                  f"{fmt(q['within_batch_range_median'])} = {q['within_batch_range_median'] / q['beta']:.1f}β.", "",
                  "| β | ESS/B mean | below 0.01 | largest weight / B (median) |", "|---|---|---|---|"]
        for beta, f in q["filter"].items():
            lines.append(f"| {beta} | {f['ess_fraction_mean']:.3f} | {f['below_0.01']:.1%} | {f['max_share_median']:.3f} |")
        lines.append("")
    lines += ["## 2. DPER's effective sample size (exact P_J from Stage I's p̂)", "",
              "| α | buffer | size | ESS | ESS / size | top 1% mass | top 10% mass | distinct drawn in the run "
              "(expected) | team return: DPER / uniform | behaviour levels: DPER / uniform |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for alpha, buffers in report["dper"].items():
        for name, b in buffers.items():
            levels = "; ".join(f"{lv} {v['dper']:.1%} / {v['uniform']:.1%}" for lv, v in b.get("level_share", {}).items())
            lines.append(f"| {alpha} | {name} | {b['size']:,} | {b['ess']:.1f} | {b['ess_fraction']:.2e} | "
                         f"{b['top_1pct_mass']:.3f} | {b['top_10pct_mass']:.3f} | "
                         f"{b['drawn_at_least_once_expected']:,.0f} of {b['draws_over_run']:,} draws | "
                         f"{b['team_return']['dper']:.2f} / {b['team_return']['uniform']:.2f} | {levels} |")
    if report.get("priority_by_level"):
        pbl = report["priority_by_level"]
        lines += ["", "Stage I's p̂ by behaviour level: "
                  + ", ".join(f"{k} {v['mean']:.3f} ({v['count']:,})" for k, v in pbl.items() if isinstance(v, dict) and "mean" in v)
                  + (f"; AUC of p̂ for '{pbl['auc_best_level']['level']}' against the rest "
                     f"{pbl['auc_best_level']['auc']:.3f}" if "auc_best_level" in pbl else "")
                  + f"; correlation of p̂ with the episode's team return {pbl['corr_with_team_return']:.3f}; share of "
                  f"p̂'s variance within episodes (between the slots of one episode) "
                  f"{pbl['within_episode_share_of_variance']:.3f}."]
    lines += ["", "Readings of eq. 7 with Table 11's α and priority range (same p̂):", "",
              "| reading | α | buffer | ESS | top 1% mass | distinct drawn in the run (expected) | behaviour levels |",
              "|---|---|---|---|---|---|---|"]
    for row in report["readings"].values():
        levels = "; ".join(f"{lv} {v:.1%}" for lv, v in row.get("level_share", {}).items())
        lines.append(f"| {row['reading']} | {row['alpha']:g} | {row['buffer']} | {row['ess']:,.1f} | "
                     f"{row['top_1pct_mass']:.3f} | {row['drawn_at_least_once_expected']:,.0f} | {levels} |")
    lines += [""] + [f"- `{name}`: {text}" for name, text in READINGS.items()]
    lines += ["", "## 3. Critic fit (Q_i(τ_j, a_j) against the discounted return of the scaled r̂)", "",
              "| draws | against | corr | bias (Q − G) | std Q | std G | std ratio | mean Q | mean G |",
              "|---|---|---|---|---|---|---|---|---|"]
    for kind in ("dper", "uniform"):
        c = report["batches"][kind]["critic"]
        for label, key in (("MC return, all steps", "vs_mc_return"), ("MC + bootstrapped tail", "vs_mc_return_with_tail"),
                           ("MC return, t = 0", "at_t0_vs_mc_return"), ("MC + tail, t = 0", "at_t0_vs_mc_return_with_tail")):
            s = c[key]
            lines.append(f"| {kind} | {label} | {s['corr']:.3f} | {s['bias']:.3f} | {s['std_q']:.3f} | "
                         f"{s['std_return']:.3f} | {s['std_ratio']:.3f} | {s['mean_q']:.3f} | {s['mean_return']:.3f} |")
    lines += ["", "| draws | TD error vs Q' mean | RMS | mean abs | eq. 9 loss (η/û-weighted) | TD vs online Q RMS | "
              "median within-batch std of Q | expected training draws (median; share < 1) |", "|---|---|---|---|---|---|---|---|"]
    for kind in ("dper", "uniform"):
        st = report["batches"][kind]
        c = st["critic"]
        e = st.get("expected_training_draws", {})
        lines.append(f"| {kind} | {c['td_target_net']['mean']:.3f} | {c['td_target_net']['rms']:.3f} | "
                     f"{c['td_target_net']['mean_abs']:.3f} | {c['td_target_net']['eq9_loss']:.3f} | "
                     f"{c['td_online']['rms']:.3f} | {c['q_std_within_batch_median']:.3f} | "
                     f"{fmt(e.get('median'))}; {fmt(e.get('share_below_1'))} |")
    if cfg["step"] % cfg["target_update_interval"] == 0:
        lines += ["", f"(At update {cfg['step']:,} the target network has just been copied from the critic "
                      f"(every {cfg['target_update_interval']} updates): the two TD errors coincide.)"]
    return "\n".join(lines) + "\n"



def _fit_reading(trained: dict, uniform: dict) -> str:
    """What the critic's eq. 9 loss on uniform draws against its training draws says: the
    critic memorises the trajectories DPER gives it when the loss on the others is over twice
    as high."""
    ratio = uniform["td_target_net"]["eq9_loss"] / max(trained["td_target_net"]["eq9_loss"], 1e-12)
    if ratio > 2:
        return f"the critic fits the few trajectories DPER gives it and not the rest (loss ratio {ratio:.1f})."
    return f"the critic fits the trajectories it rarely trained on about as well as its own draws (loss ratio {ratio:.1f})."

def findings(report: dict) -> list[str]:
    """Numbers-first statements from the report (whatever run it describes)."""
    run = report["run"]
    beta, alpha, b = run["beta"], run["alpha"], run["batch_size"]
    key_beta = f"{beta:g}"
    out = []
    own = report["dper"][f"{alpha:g}"]
    for name, d in own.items():
        line = (f"DPER (α = {alpha:g}, buffer {name}): ESS of P_J = {d['ess']:,.1f} of {d['size']:,} trajectories "
                f"({d['ess_fraction']:.1e}); the top 1% hold {d['top_1pct_mass']:.1%} of the mass; the run's "
                f"{d['draws_over_run']:,} draws are expected to touch {d['drawn_at_least_once_expected']:,.0f} distinct "
                "trajectories")
        other = {k: v[name] for k, v in report["dper"].items() if k != f"{alpha:g}"}
        line += "".join(f"; at α = {k}: ESS {v['ess']:,.0f} ({v['ess_fraction']:.1%}), "
                        f"{v['drawn_at_least_once_expected']:,.0f} distinct" for k, v in other.items()) + "."
        out.append(line)
    dp, un = report["batches"]["dper"], report["batches"]["uniform"]
    f_run, f_un = dp["filter"][key_beta], un["filter"][key_beta]
    ess_distinct = [f["ess_distinct_fraction_mean"] for f in dp["filter"].values()]
    out.append(f"A batch of B = {b} drawn by DPER holds {dp['distinct_per_batch']['mean']:.1f} distinct trajectories; "
               f"the filter's ESS over distinct trajectories is {min(ess_distinct):.2f}–{max(ess_distinct):.2f}·B "
               f"(≈ {min(ess_distinct) * b:.1f}–{max(ess_distinct) * b:.1f} trajectories) at every β from "
               f"{min(BETAS):g} to {max(BETAS):g}: the batch's diversity is set by DPER, not by β.")
    wb = dp["within_batch"]
    out.append(f"CRR filter on the training draws (DPER): median |A| = {dp['advantage']['median_abs']:.3g}, A's "
               f"within-batch range median {wb['range_median']:.3g} = {wb['range_median'] / beta:.1f}β; at β = {beta:g} "
               f"ESS/B = {f_run['ess_fraction_mean']:.2f}, {f_run['at_clip']:.2%} at the clip, "
               f"{f_run['below_0.01']:.1%} below 0.01 — not near-argmax on the draws it trained on.")
    wu = un["within_batch"]
    out.append(f"On uniform draws (the buffer's other trajectories): median |A| = {un['advantage']['median_abs']:.3g}, "
               f"within-batch range median {wu['range_median']:.3g} = {wu['range_median'] / beta:.1f}β; at β = {beta:g} "
               f"ESS/B = {f_un['ess_fraction_mean']:.2f}, {f_un['below_0.01']:.1%} of weights below 0.01, the largest "
               f"weight {f_un['max_share_median']:.0%} of the batch (median) — near-argmax; at β = 0.3 / 1: ESS/B "
               f"{un['filter']['0.3']['ess_fraction_mean']:.2f} / {un['filter']['1']['ess_fraction_mean']:.2f}.")
    cd, cu = dp["critic"], un["critic"]
    share = un.get("expected_training_draws", {}).get("share_below_1")
    out.append(f"Critic on the training draws: corr(Q, MC return of r̂) = {cd['vs_mc_return']['corr']:.2f}, "
               f"std ratio {cd['vs_mc_return']['std_ratio']:.2f}, TD RMS {cd['td_target_net']['rms']:.3f}, eq. 9 loss "
               f"{cd['td_target_net']['eq9_loss']:.3f}. On uniform draws ({share:.0%} of them expected to have been "
               f"drawn less than once in training): corr {cu['vs_mc_return']['corr']:.2f} (with the bootstrapped tail "
               f"{cu['vs_mc_return_with_tail']['corr']:.2f}), bias Q − G = {cu['vs_mc_return']['bias']:+.2f}, std ratio "
               f"{cu['vs_mc_return']['std_ratio']:.2f}, TD RMS {cu['td_target_net']['rms']:.3f}, eq. 9 loss "
               f"{cu['td_target_net']['eq9_loss']:.2f} — " + _fit_reading(cd, cu))
    q = report.get("icq")
    if q:
        f = q["filter"].get(key_beta, {})
        out.append(f"ICQ's run on the same data (its own critic, uniform episodes, β = {q['beta']:g}): median |A| = "
                   f"{q['advantage']['median_abs']:.3g}, within-batch range median {q['within_batch_range_median']:.3g} = "
                   f"{q['within_batch_range_median'] / q['beta']:.1f}β; at β = {beta:g} ESS/B = "
                   f"{f.get('ess_fraction_mean', float('nan')):.2f}, {f.get('below_0.01', float('nan')):.1%} below 0.01.")
    pbl = report.get("priority_by_level")
    if pbl and "auc_best_level" in pbl:
        lv = own[next(iter(own))].get("level_share", {})
        best = pbl["auc_best_level"]["level"]
        out.append(f"Stage I's p̂ ranks '{best}' trajectories above the rest with AUC {pbl['auc_best_level']['auc']:.2f}; "
                   f"it correlates {pbl['corr_with_team_return']:.2f} with the episode's team return "
                   f"({pbl['within_episode_share_of_variance']:.0%} of its variance lies between the slots of one "
                   f"episode); DPER at α = {alpha:g} draws '{best}' {lv.get(best, {}).get('dper', float('nan')):.1%} of "
                   f"the time against {lv.get(best, {}).get('uniform', float('nan')):.1%} uniformly.")
    return out


# --- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, help="a SIT run directory (config.json, checkpoints/)")
    parser.add_argument("--dataset", required=True, help="the dataset the run trained on")
    parser.add_argument("--step", type=int, default=None, help="checkpoint to restore (default: the latest)")
    parser.add_argument("--stage1", default=None, help="a saved ARDNEM result to use as Stage I")
    parser.add_argument("--ardnem-updates", type=int, default=None,
                        help="Stage I updates when it must be retrained (default: the run's budget)")
    parser.add_argument("--retrain-stage1", action="store_true",
                        help="retrain Stage I even where a cached result exists (with --ardnem-updates: a smoke run)")
    parser.add_argument("--bench-seed", type=int, default=0, help="the bench seed of Stage I's cache and key")
    parser.add_argument("--minibatches", type=int, default=64, help="batches of B trajectories per agent and seed")
    parser.add_argument("--seed", type=int, default=0, help="key of the diagnostic draws")
    parser.add_argument("--icq-run-dir", default=None,
                        help="an ICQ run on the same dataset: its actor filter's statistics, for comparison")
    parser.add_argument("--notes-file", default=None,
                        help="markdown lines to add under the automatic findings (the reader's interpretation)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sit-diagnosis-cpu"),
                        help="output stem: <out>.md and <out>.json")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    run_dir = Path(args.run_dir)
    record = read_run(run_dir)
    config, dper_config, ardnem_config = run_configs(record)
    if dper_config is None or ardnem_config is None or not config.decomposition:
        raise SystemExit(f"{run_dir}/config.json: a SIT run with decomposition and the DPER sampler is expected "
                         f"(sampler {record['sampler'].get('name')!r}, decomposition {config.decomposition})")
    dataset = load_dataset(args.dataset)
    if not dataset.spec.discrete:
        raise SystemExit(f"{args.dataset}: continuous actions; this diagnosis covers SIT's discrete actor")
    fingerprint = dataset_fingerprint(dataset)
    if record.get("dataset_fingerprint") not in (None, fingerprint):
        raise SystemExit(f"{run_dir}/config.json: field 'dataset_fingerprint' {record['dataset_fingerprint']!r} "
                         f"differs from {args.dataset}'s {fingerprint!r}: not the run's dataset")
    stage1, stage1_source = find_stage1(args, run_dir, dataset, ardnem_config)
    seeds, updates = int(record["schedule"]["seeds"]), int(record["schedule"]["updates"])

    learner = sit.learner(config, dataset)
    config = learner.config  # reward_scale resolved from the data, as the run did
    sampler = DPER(dper_config, priorities=np.asarray(stage1.priority))
    inputs = sit.stage_inputs(config, dataset, stage1)
    data = placement.prepare(learner, dataset, inputs, None, "device", 1.0, None)
    space = item_space(dataset, "trajectory")
    dper_arrays = sampler.arrays(space, dataset)
    uniform_arrays = Uniform(group_by=dper_config.group_by).arrays(space, dataset)
    state, step, _ = restore(run_dir, learner, sampler, data.arrays, dper_arrays, seeds, args.step)
    agree = policy_files_agree(run_dir, state, seeds) if step == updates else None

    spec = dataset.spec
    actor, critic = sit.actor_config(config, spec), sit.critic_config(config, spec)
    betas = tuple(sorted(set(BETAS) | {config.beta}))
    diagnose = make_batch_diagnostics(actor, critic, config, int(dataset.lengths.max()), betas)
    key = jax.random.key(args.seed)
    expected = expected_draw_table(dper_arrays, dataset, step, config.batch_size)
    batches = {}
    for k, (kind, buffers) in enumerate((("dper", dper_arrays), ("uniform", uniform_arrays))):
        outs = []
        for seed in range(seeds):
            seed_state = jax.tree.map(lambda x, s=seed: x[s], state)
            keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, k), seed), args.minibatches)
            outs.append(jax.device_get(diagnose(seed_state, data.arrays, buffers, keys)))
        stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *outs)
        # [S, M, B, T, A] → [S, M, T, B, A]: the batch axis next to the agents, as the filter sees it
        for name in ("advantage", "q", "y", "y_online", "g", "g_boot", "mask", "weight"):
            stacked[name] = np.swapaxes(stacked[name], 2, 3)
        batches[kind] = batch_stats(stacked, config, betas, expected)

    priority = np.asarray(stage1.priority, np.float64)
    alphas = tuple(sorted(set(ALPHAS) | {dper_config.alpha}))
    report = {
        "machine": describe(machine()),
        "command": "python benchmarks/diagnose_sit.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "run": {"run_dir": str(run_dir), "dataset": str(args.dataset), "step": step, "updates": updates,
                "seeds": seeds, "alpha": dper_config.alpha, "beta": config.beta, "batch_size": config.batch_size,
                "reward_scale": config.reward_scale, "weight_clip": config.weight_clip,
                "target_update_interval": config.target_update_interval},
        "stage1": {"source": stage1_source},
        "policy_files_agree": agree,
        "minibatches": args.minibatches,
        "batches": batches,
        "dper": dper_stats(priority, dataset, dper_config, alphas, updates, config.batch_size),
        "priority_by_level": priority_by_level(priority, dataset),
        "readings": readings_stats(priority, dataset, dper_config, alphas, updates, config.batch_size),
    }
    if args.icq_run_dir:
        report["icq"] = icq_filter(args, dataset, betas)
    report["seconds"] = time.perf_counter() - began
    report["diagnosis"] = findings(report)
    if args.notes_file:
        report["notes"] = Path(args.notes_file).read_text().strip().splitlines()
    report["seconds"] = time.perf_counter() - began
    write(report, Path(args.out))
    return report


def write(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out.with_suffix(".md"), render(report))


if __name__ == "__main__":
    main()
