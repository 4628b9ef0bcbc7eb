"""Training commands: `train` (offline learners), `imitate` (adversarial imitation),
`eval` (any policy file) and `algos` (the registry)."""

from __future__ import annotations

import datetime
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from teamsift.cli.common import (
    JSON_OPTION, OUT, check_output_file, emit, error_text, fail, key, load_dataset_or_fail, start_processes,
    is_primary,
)
from teamsift.progress import STDERR

app = typer.Typer()

RUN_DIR_HELP = ("Run directory: config.json, metrics.csv, TensorBoard events, evaluations.json (marl-eval), "
                "policies/seed-<k>.msgpack, checkpoints/ (default: runs/<algo>-<dataset>-<time>).")


def default_run_dir(algo: str, dataset: Path) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{algo}-{Path(dataset).name}-{stamp}"


def parse_stage_updates(text: Optional[str]) -> dict[str, int]:
    """'ardnem=2000,behaviour=500' → {"ardnem": 2000, "behaviour": 500}."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not value.strip().isdigit():
            fail(f"--stage-updates: expected NAME=UPDATES[,NAME=UPDATES], e.g. ardnem=2000, got {text!r}")
        out[name.strip()] = int(value)
    return out


def copy_policy(source: Path, out: Path, overwrite: bool) -> Path:
    """Copy a trained policy to --out (checked with `check_output_file` before training; checked
    again here, in case something appeared meanwhile), atomically."""
    from teamsift.fileio import atomic_write_bytes

    check_output_file("--out", out, overwrite)
    return atomic_write_bytes(out, Path(source).read_bytes())


@app.command()
def train(
    dataset: Path = typer.Argument(..., help="Dataset directory."),
    algo: str = typer.Option("bc", help="Learner (see `teamsift algos`): bc, ev2bc, group_bc, icq, mabcq, macql, sit, "
                                        "td3bc, omar, maddpg_cql, maddpg_cql_pjap."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help=RUN_DIR_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what --run-dir (and --out) holds."),
    checkpoint_every: int = typer.Option(0, min=0, help="Checkpoint every K updates (0: only at the end)."),
    keep_checkpoints: int = typer.Option(3, min=1, help="Checkpoints kept in --run-dir/checkpoints."),
    data_placement: str = typer.Option("device", help="Where the data lives while training: device (copied once), "
                                                      "stream (rows read from disk as batches need them: data larger "
                                                      "than memory) or auto (device when it fits in half the device's "
                                                      "memory). No result depends on it."),
    data_parallel: Optional[int] = typer.Option(None, min=1, help="Devices per seed, each computing a share of the "
                                                                  "batch (default: seeds spread over the devices)."),
    coordinator: Optional[str] = typer.Option(None, help="HOST:PORT of process 0, for a run over several processes "
                                                         "(hosts); also TEAMSIFT_COORDINATOR, or found under SLURM."),
    num_processes: Optional[int] = typer.Option(None, min=1, help="Processes of a multi-process run."),
    process_id: Optional[int] = typer.Option(None, min=0, help="This process' index (0 … num_processes − 1)."),
    out: Optional[Path] = typer.Option(None, help="Also copy seed 0's policy here."),
    updates: Optional[int] = typer.Option(None, min=1, help="Updates of the learner (default: the paper's; "
                                                            "earlier stages: --stage-updates)."),
    stage_updates: Optional[str] = typer.Option(None, help="Budgets of earlier stages, e.g. ardnem=20000 (SIT Stage I, "
                                                           "--sampler dper) or behaviour=15000 (MABCQ)."),
    seeds: int = typer.Option(1, min=1, help="Seeds trained together as one vmapped program."),
    seed: int = typer.Option(0),
    log_every: Optional[int] = typer.Option(None, min=1, help="Updates per metrics row (default: the algorithm's)."),
    eval_episodes: int = typer.Option(100, min=0, help="Evaluate each seed in the dataset's environment (0: skip)."),
    eval_every: int = typer.Option(0, min=0, help="Also evaluate every this many updates (0: only at the end)."),
    sampler: Optional[str] = typer.Option(None, help="Which items batches are drawn from: uniform, dper (ARDNEM's "
                                                     "priorities, SIT's default) or pjap (learners that report "
                                                     "proximity: td3bc, omar, maddpg_cql)."),
    weights: Optional[str] = typer.Option(None, help="Weigh every agent decision by a valuation: ev, ev-cluster, "
                                                     "group, ardnem, or none (ev2bc: ev; group_bc: group)."),
    stage1: Optional[Path] = typer.Option(None, help="A Stage I result to reuse (the ardnem-stage1.msgpack of "
                                                     "`teamsift value --method ardnem --out DIR`) instead of "
                                                     "training ARDNEM."),
    score: Optional[str] = typer.Option(None, help="Weights: the episode score (DVF) to value by (default: return)."),
    rule: Optional[str] = typer.Option(None, help="Weights: threshold | top_fraction | weighted."),
    threshold: Optional[float] = typer.Option(None, help="Weights (threshold rule): keep values above this."),
    fraction: Optional[float] = typer.Option(None, help="Weights (top_fraction, group): the fraction kept."),
    per_slot: bool = typer.Option(False, "--per-slot", help="Weights: apply the rule within each slot (role)."),
    features: Optional[str] = typer.Option(None, "--features", help="Weights ev-cluster: the behaviour features, "
                                                                     "histogram (default), policy-mixture or "
                                                                     "policy-likelihood."),
    k_rule: Optional[str] = typer.Option(None, "--k-rule", help="Weights ev-cluster: how the number of clusters is "
                                                                "chosen, one-se (default) or lowest."),
    recurrent: Optional[bool] = typer.Option(None, "--gru/--mlp", help="bc, ev2bc, group_bc: the agent network "
                                                                      "(default: GRU if partially observable and "
                                                                      "discrete)."),
    overrides: Optional[list[str]] = typer.Option(
        None, "--set", help="Set a field, FIELD=VALUE (repeatable; nested with dots): the learner's hyperparameters "
                            "(beta=1), the sampler's (dper.alpha=2), Stage I's (ardnem.ensemble_size=1), the "
                            "weights' (selection.temperature=0.5)."),
    as_json: bool = JSON_OPTION,
):
    """Train a registered learner on a dataset.

    Every seed's policy, metrics, evaluations and checkpoints go to the run directory, and
    `--resume` continues a run killed at any point."""
    check_output_file("--out", out, overwrite or resume)
    if data_placement not in ("device", "stream", "auto"):
        fail(f"--data-placement: expected device, stream or auto, got {data_placement!r}")
    start_processes(coordinator, num_processes, process_id)
    from teamsift.algos import pipeline, registry
    from teamsift.engine import RunConfig, RunDirError, parse_assignment

    try:
        entry = registry.get(algo)
        if entry.kind != "offline":
            raise ValueError(f"--algo {algo}: a {entry.kind} learner; "
                             + ("use `teamsift imitate`" if entry.kind == "imitation" else
                                "use `teamsift value --method ardnem`" if algo == "ardnem" else "not trainable here"))
        assignments = dict(parse_assignment(text) for text in overrides or [])
        selection = {f"selection.{name}": value for name, value in (("score", score), ("rule", rule),
                                                                   ("threshold", threshold), ("fraction", fraction),
                                                                   ("features", features), ("k_rule", k_rule))
                     if value is not None}
        if per_slot:
            selection["selection.per_slot"] = True
        if recurrent is not None:
            assignments["recurrent"] = recurrent
        spec = pipeline.make_spec(algo, sampler=sampler, weights=weights, overrides={**assignments, **selection})
        if selection and spec.selection is None:
            raise ValueError("--score, --rule, --threshold, --fraction, --per-slot, --features and --k-rule shape "
                             "valuation weights; give --weights (ev, ev-cluster, group, ardnem) or use --algo ev2bc "
                             "/ group_bc")
        for option, given, what in (("--features", features, "the behaviour features belong"),
                                    ("--k-rule", k_rule, "the rule choosing the number of clusters belongs")):
            if given is not None and spec.weights != "ev-cluster":
                raise ValueError(f"{option}: {what} to --weights ev-cluster (EV-Clustering), not {spec.weights}")
    except ValueError as exc:
        fail(str(exc))
    if resume and run_dir is None:
        fail("--resume: give the --run-dir of the run to continue")
    ds = load_dataset_or_fail(dataset)
    run_dir = run_dir or default_run_dir(algo, dataset)
    total = updates or entry.updates
    try:
        run = RunConfig(updates=total, seeds=seeds, log_every=min(log_every or entry.log_every, total),
                        eval_every=eval_every, eval_episodes=eval_episodes, checkpoint_every=checkpoint_every,
                        keep_checkpoints=keep_checkpoints, run_dir=str(run_dir), resume=resume, overwrite=overwrite,
                        progress=not as_json, label=entry.title, data_placement=data_placement,
                        data_parallel=data_parallel)
        env = pipeline.dataset_env(ds) if eval_episodes else None
        if eval_episodes and env is None:
            STDERR.print(f"[yellow]{dataset}: environment {ds.meta.get('env_id')!r} is not registered; "
                         f"no evaluation[/]")
            run = RunConfig(**{**run.__dict__, "eval_episodes": 0, "eval_every": 0})
        result = pipeline.train(algo, ds, key(seed), run, spec=spec, stage1=stage1,
                                stage_updates=parse_stage_updates(stage_updates), env=env,
                                command="teamsift " + shlex.join(sys.argv[1:]))
    except (ValueError, RunDirError) as exc:
        fail(error_text(exc))
    summary = result.summary(ds)
    if summary.get("processes", 1) > 1 and not is_primary():
        return  # process 0 reports (and copies --out) for a run over several processes
    if out is not None:
        summary["policy"] = str(copy_policy(Path(summary["policies"][0]), out, overwrite or resume))
    emit(summary, as_json, _render_train)


def _render_train(r: dict) -> None:
    say = lambda text: OUT.print(text, soft_wrap=True, highlight=False)  # noqa: E731
    loss = ", ".join(f"{x:.4g}" for x in r["final_loss"])
    say(f"{r['algo']}: {r['updates']:,} updates × {r['seeds']} seed(s), final loss per seed {loss}")
    if "eval" in r:
        returns = ", ".join(f"{e['scores']['return']['mean']:.2f}" for e in r["eval"])
        say(f"return per seed {returns} (mean {r['return_mean_over_seeds']:.2f})")
    say(f"run directory {r['run_dir']}: config.json, metrics.csv, events/, evaluations.json, policies/, checkpoints/")
    if "policy" in r:
        say(f"seed 0's policy copied to {r['policy']}")


@app.command()
def algos(as_json: bool = JSON_OPTION):
    """List every learner with its paper and defaults.

    For each: kind, action space, default budget, sampler, weights and hyperparameters."""
    from teamsift.algos import registry

    rows = [entry.defaults() for entry in registry.algorithms().values()]

    def render(payload):
        lines = []
        for row in payload["algorithms"]:
            budget = f"{row['updates']:,} updates" if row["updates"] else "the env's budget"
            uses = [] if row["kind"] == "online" else [f"sampler {row['sampler']}"]
            uses += [f"weights {row['weights']}"] if row["weights"] else []
            uses += [f"stage {name} {updates:,}" for name, updates in row["stages"].items()]
            lines.append(f"{row['name']:<16} {row['title']:<16} {row['kind']:<9} {row['actions']:<10} {budget}")
            lines.append(f"{'':<16} {row['paper']}" + ("; " + ", ".join(uses) if uses else ""))
        sys.stdout.write("\n".join(lines) + "\n")

    emit({"algorithms": rows}, as_json, render)


@app.command("eval")
def eval_cmd(
    policy: str = typer.Argument(..., help="Policy file (any kind), or 'random' / 'scripted:<rule>'."),
    env_id: Optional[str] = typer.Option(None, "--env", help="Environment (default: the one the policy was trained on)."),
    episodes: int = typer.Option(100, min=1),
    seed: int = typer.Option(0),
    partner: Optional[str] = typer.Option(None, help="Play beside this partner (a policy file, 'random' or "
                                                     "'scripted:<rule>'; e.g. a human proxy: BC trained on a held-out "
                                                     "human split): POLICY in --seat, PARTNER in every other slot."),
    seat: Optional[str] = typer.Option(None, help="With --partner: POLICY's slot, 0 … agents−1, or 'all' for "
                                                  "each seat in turn (default: all)."),
    as_json: bool = JSON_OPTION,
):
    """Evaluate a policy: mean, std and 95% interval of the team return and every score.

    Alone, the policy plays every slot (self-play); with --partner, it plays --seat and the
    partner the others (Carroll et al. 2019's evaluation with a human proxy)."""
    from teamsift import envs as registry
    from teamsift.collect import behaviours
    from teamsift.evaluate import evaluate, evaluate_paired
    from teamsift.nets import PolicyFileError, read_header

    if seat is not None and partner is None:
        fail("--seat: only with --partner (alone, the policy plays every slot)")

    env_kwargs = {}
    if env_id is None:
        if policy == "random" or policy.startswith("scripted:"):
            fail("--env is required for 'random' and scripted policies")
        try:
            header = read_header(policy)
        except PolicyFileError as exc:
            fail(str(exc))
        env_id = (header.get("spec") or {}).get("env_id")
        env_kwargs = header.get("extra", {}).get("env_kwargs", {})
        if env_id is None:
            fail(f"{policy}: the policy does not record its environment; pass --env")
    try:
        env = registry.make(env_id, **env_kwargs)
        resolved, _ = behaviours.resolve(policy, env)
        partner_policy = None if partner is None else behaviours.resolve(partner, env)[0]
        seats = None if partner is None else parse_seats(seat, env.spec.num_agents)
    except (KeyError, ValueError, PolicyFileError) as exc:
        fail(error_text(exc))
    if partner_policy is None:
        result = evaluate(env, resolved, key(seed), episodes)
        emit(result.to_dict(), as_json,
             lambda r: [OUT.print(f"{name}: {summary}", soft_wrap=True) for name, summary in result.scores.items()])
        return
    results = {s: evaluate_paired(env, resolved, partner_policy, key(seed), episodes, seat=s) for s in seats}
    payload = {"env_id": env.spec.env_id, "policy": policy, "partner": partner,
               "seats": {str(s): r.to_dict() for s, r in results.items()}}

    def render(_payload):
        for s, result in results.items():
            for name, summary in result.scores.items():
                OUT.print(f"seat {s}: {name}: {summary}", soft_wrap=True)

    emit(payload, as_json, render)


def parse_seats(text: Optional[str], num_agents: int) -> list[int]:
    """--seat: 'all' (or nothing) = every slot; else one slot index."""
    if text is None or text.strip() == "all":
        return list(range(num_agents))
    if not text.strip().isdigit() or not int(text) < num_agents:
        raise ValueError(f"--seat: expected a slot 0 … {num_agents - 1} or 'all', got {text!r}")
    return [int(text)]


@app.command()
def imitate(
    dataset: Path = typer.Argument(..., help="Expert dataset directory (e.g. from `teamsift suite expert`)."),
    algo: str = typer.Option("mild2", help="Adversarial imitation learner: magail, mild2, mild2_gd."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help=RUN_DIR_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what --run-dir (and --out) holds."),
    checkpoint_every: int = typer.Option(0, min=0, help="Checkpoint every K iterations (0: only at the end)."),
    out: Optional[Path] = typer.Option(None, help="Also copy seed 0's generator policy here."),
    timesteps: Optional[int] = typer.Option(None, min=1, help="Environment steps (default: the env's MAPPO budget)."),
    seeds: int = typer.Option(1, min=1, help="Seeds trained together as one vmapped program."),
    seed: int = typer.Option(0),
    centralised: bool = typer.Option(False, "--centralised", help="magail: one centralised discriminator."),
    bc_warm_start: bool = typer.Option(False, "--bc-warm-start", help="magail: start the generator from BC."),
    eval_episodes: int = typer.Option(100, min=0, help="Evaluate each seed in the environment afterwards (0: skip)."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="Set a hyperparameter, FIELD=VALUE "
                                                                      "(e.g. disc_lr=1e-4, generator.lr=3e-4)."),
    as_json: bool = JSON_OPTION,
):
    """Imitate expert demonstrations by interacting with the dataset's environment.

    MAGAIL, MILD² or MILD²-GD; prints the discriminator diagnostics and the evaluated return."""
    check_output_file("--out", out, overwrite or resume)
    import numpy as np

    from teamsift.algos import pipeline
    from teamsift.collect.onpolicy import default_log_every
    from teamsift.engine import RunConfig, RunDirError, parse_assignment

    if algo not in pipeline.IMITATORS:
        fail(f"--algo: expected one of {', '.join(pipeline.IMITATORS)}, got {algo!r}")
    if resume and run_dir is None:
        fail("--resume: give the --run-dir of the run to continue")
    ds = load_dataset_or_fail(dataset)
    try:
        assignments = dict(parse_assignment(text) for text in overrides or [])
        if algo == "magail":
            assignments.update({"centralised": centralised, "bc_warm_start": bc_warm_start})
        elif centralised or bc_warm_start:
            raise ValueError("--centralised and --bc-warm-start belong to --algo magail")
        env = pipeline.dataset_env(ds)
        if env is None:
            raise ValueError(f"{dataset}/meta.json: field 'env_id' must name a registered environment to interact "
                             f"with, found {ds.meta.get('env_id')!r}")
        config = pipeline.imitation_config(algo, env.spec.env_id, timesteps=timesteps, overrides=assignments)
        updates = config.generator.num_updates
        run = RunConfig(updates=updates, seeds=seeds, log_every=default_log_every(updates),
                        eval_episodes=eval_episodes, checkpoint_every=checkpoint_every,
                        run_dir=str(run_dir or default_run_dir(algo, dataset)), resume=resume, overwrite=overwrite,
                        progress=not as_json)
        result = pipeline.imitate(algo, ds, key(seed), run, config=config, env=env)
    except (ValueError, RunDirError) as exc:
        fail(error_text(exc))
    logs, fitted = result.logs, result.fit
    pick = (lambda x: np.asarray(x)[0]) if seeds > 1 else np.asarray
    payload = {"algo": algo, "dataset": str(dataset), "seeds": seeds, "run_dir": str(fitted.run_dir),
               "policies": [str(fitted.run_dir / "policies" / f"seed-{s}.msgpack") for s in range(seeds)],
               "env_steps": int(np.asarray(result.checkpoint_steps)[-1]), "wall_seconds": float(result.wall_time),
               "final_disc_loss": float(pick(logs["disc_loss"])[-1]),
               "generator_reward_var_first_last": [float(pick(logs["generator_reward_var"])[0]),
                                                   float(pick(logs["generator_reward_var"])[-1])],
               "advantage_var_first_last": [float(pick(logs["gen_advantage_var"])[0]),
                                            float(pick(logs["gen_advantage_var"])[-1])]}
    if fitted.evaluations:
        payload["return_per_seed"] = fitted.final_returns()
    if out is not None:
        payload["policy"] = str(copy_policy(Path(payload["policies"][0]), out, overwrite or resume))
    emit(payload, as_json, lambda r: OUT.print(
        f"run {r['run_dir']}: {r['env_steps']:,} env steps in {r['wall_seconds']:.0f} s; final disc loss "
        f"{r['final_disc_loss']:.3f}" + (f"; return per seed {[round(x, 2) for x in r['return_per_seed']]}"
                                         if "return_per_seed" in r else "")))
