"""`teamsift bench`: the papers' tables on our environments, one resumable cell at a time."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from teamsift.cli.common import JSON_OPTION, OUT, emit, fail

app = typer.Typer(no_args_is_help=True, help="Benchmarks of the papers' tables on our environments.")

OVERWRITE_HELP = "Replace result files of another budget in --out (a run of the same budget adds to them)."
RERUN_HELP = ("Train again, from scratch, the cells the result file already holds (default: keep them, so the same "
              "command continues an interrupted run; unfinished cells resume from their checkpoints).")


def _device_stem(prefix: str) -> str:
    from teamsift.machine import machine

    return f"{prefix}-{machine()['device'].split(':')[0]}"


def _check_result_file(path: Path, config: dict, budget_fields: tuple[str, ...], overwrite: bool) -> None:
    """Before any work: a run merges into an earlier result file of the same budget and
    replaces one of another budget, which needs --overwrite."""
    import json

    from teamsift.bench.report import budget_differences

    if overwrite or not (path.exists() or path.is_symlink()):
        return
    if not path.is_file():
        fail(f"--out: {path} is not a file; give another --out")
    try:
        previous = json.loads(path.read_text())
        differ = budget_differences({"config": config}, previous, budget_fields)
    except (OSError, ValueError, AttributeError) as exc:
        fail(f"--out: {path} is not a result file to add to ({exc}); pass --overwrite to replace it, or give "
             f"another --out")
    if differ:
        was = ", ".join(f"{f} {previous.get('config', {}).get(f)} (now {config.get(f)})" for f in differ)
        fail(f"--out: {path} holds results of another budget: {was}; pass --overwrite to replace them, or give "
             f"another --out")


@app.command("sit")
def bench_sit(
    envs: Optional[str] = typer.Option(None, help="Comma-separated environments (default: the table's five)."),
    quality: str = typer.Option("low,medium", help="Dataset qualities: low, medium or both."),
    study: str = typer.Option("table", help="Comma-separated studies: table, ablations, stress, sweep, pjap, "
                                                    "reward-scale (smax_3s_vs_5z at --quality)."),
    stress_env: str = typer.Option("smax_2s3z", help="The map of the stress study (SIT Figure 4(b, c): 2s3z)."),
    methods: Optional[str] = typer.Option(None, help="Comma-separated methods to run, e.g. 'SIT,SIT*' "
                                                     "(default: every method of each study)."),
    name: str = typer.Option("sit", help="Result file stem: <name>-<device>.{json,md}."),
    episodes: int = typer.Option(10_000, min=1, help="Episodes per dataset (SIT: 10 000)."),
    seeds: int = typer.Option(5, min=1, help="Seeds per learner, trained as one vmapped program."),
    updates: Optional[int] = typer.Option(None, min=1, help="Updates of every learner (default: the papers')."),
    ardnem_updates: Optional[int] = typer.Option(None, min=1, help="SIT Stage I updates (default: 20 000)."),
    eval_episodes: int = typer.Option(100, min=1, help="Evaluation episodes per seed."),
    data_dir: Path = typer.Option(Path("datasets/bench-sit"), help="Where the generated datasets are cached."),
    pools_dir: Optional[Path] = typer.Option(None, "--pools"),
    out: Path = typer.Option(Path("benchmarks/results"), help="Directory for the result files."),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    rerun: bool = typer.Option(False, "--rerun", help=RERUN_HELP),
    as_json: bool = JSON_OPTION,
):
    """SIT's Table 1 on our environments, with SIT's ablations, stress cases and α × β sweep.

    Discrete: Behavior, BC, MABCQ, MACQL, ICQ, SIT and SIT*; continuous: BC, TD3+BC, OMAR,
    MADDPG+CQL, SIT and SIT*."""
    import dataclasses

    from teamsift.bench import sit as sit_bench
    from teamsift.machine import describe, machine

    try:
        config = sit_bench.SITBenchConfig(
            envs=tuple(e.strip() for e in envs.split(",")) if envs else sit_bench.TABLE_ENVS,
            qualities=tuple(q.strip() for q in quality.split(",")), episodes=episodes, num_seeds=seeds,
            updates=updates, ardnem_updates=ardnem_updates, eval_episodes=eval_episodes, data_dir=str(data_dir),
            pools_dir=str(pools_dir) if pools_dir else None, seed=seed, stress_env=stress_env)
        studies = tuple(s.strip() for s in study.split(","))
        info = machine()
        stem = f"{name}-{info['device'].split(':')[0]}"
        _check_result_file(out / f"{stem}.json", dataclasses.asdict(config), sit_bench.BUDGET_FIELDS, overwrite)
        report = sit_bench.run(config, studies, progress=not as_json, machine=describe(info),
                               command="teamsift bench sit " + shlex.join(sys.argv[3:]), out_dir=out, stem=stem,
                               methods=tuple(m.strip() for m in methods.split(",")) if methods else None,
                               rerun=rerun)
    except ValueError as exc:
        fail(str(exc))
    emit(report, as_json, lambda r: OUT.print(sit_bench.render(r)))


@app.command("imitation")
def bench_imitation(
    envs: Optional[str] = typer.Option(None, help="Comma-separated environments (default: the expert suite's four)."),
    methods: Optional[str] = typer.Option(None, help="Comma-separated methods (default: all the action space allows)."),
    transitions: int = typer.Option(100_000, min=1, help="Expert transitions per dataset."),
    seeds: int = typer.Option(5, min=1, help="Seeds per method, trained as one vmapped program."),
    timesteps: Optional[int] = typer.Option(None, min=1, help="Env steps per adversarial run (default: the env's MAPPO budget)."),
    updates: Optional[int] = typer.Option(None, min=1, help="Updates of the offline learners (default: the papers')."),
    eval_episodes: int = typer.Option(100, min=1, help="Evaluation episodes per seed."),
    data_dir: Path = typer.Option(Path("datasets/bench-imitation"), help="Where the expert datasets are cached."),
    pools_dir: Optional[Path] = typer.Option(None, "--pools"),
    out: Path = typer.Option(Path("benchmarks/results"), help="Directory for <name>-<device>.{json,md} and plots."),
    name: str = typer.Option("imitation", help="Result file stem: <name>-<device>.{json,md}; runs go under "
                             "<data-dir>/runs/<stem>/ (resumable)."),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    rerun: bool = typer.Option(False, "--rerun", help=RERUN_HELP),
    as_json: bool = JSON_OPTION,
):
    """MILD²'s table: MILD², MILD²-GD, MAGAIL, BC and offline baselines on the expert datasets."""
    import dataclasses

    from teamsift.bench import imitation
    from teamsift.machine import describe, machine

    try:
        config = imitation.ImitationBenchConfig(
            envs=tuple(e.strip() for e in envs.split(",")) if envs else imitation.ImitationBenchConfig.envs,
            methods=tuple(m.strip() for m in methods.split(",")) if methods else None, transitions=transitions,
            num_seeds=seeds, timesteps=timesteps, updates=updates, eval_episodes=eval_episodes,
            data_dir=str(data_dir), pools_dir=str(pools_dir) if pools_dir else None, seed=seed)
        info = machine()
        stem = f"{name}-{info['device'].split(':')[0]}"
        _check_result_file(out / f"{stem}.json", dataclasses.asdict(config), imitation.BUDGET_FIELDS, overwrite)
        report = imitation.run(config, progress=not as_json, machine=describe(info),
                               command="teamsift bench imitation " + shlex.join(sys.argv[3:]), out_dir=out, stem=stem,
                               rerun=rerun)
    except ValueError as exc:
        fail(str(exc))
    emit(report, as_json, lambda r: OUT.print(imitation.render(r)))


@app.command("pjap")
def bench_pjap(
    quick: bool = typer.Option(False, help="One broad twin-peaks dataset, MADDPG vs MADDPG+PJAP."),
    updates: int = typer.Option(6000, min=1, help="Updates per polynomial-game run."),
    seeds: int = typer.Option(3, min=1, help="Seeds per polynomial-game run."),
    mabrax: bool = typer.Option(False, "--mabrax", help="Instead: MADDPG+CQL vs MADDPG+CQL+PJAP on halfcheetah_2x3 "
                                                        "datasets from the pools (pjap-mabrax-<device>.{json,md})."),
    mabrax_updates: int = typer.Option(20_000, min=1, help="--mabrax: updates per learner (paper: 500 000)."),
    mabrax_seeds: int = typer.Option(5, min=1, help="--mabrax: seeds, one vmapped program per learner."),
    episodes: int = typer.Option(2_000, min=1, help="--mabrax: episodes per dataset (200 steps each)."),
    data_dir: Path = typer.Option(Path("datasets/bench-sit"), help="--mabrax: where datasets are cached."),
    out: Path = typer.Option(Path("benchmarks/results"), help="Directory for the result files and plots."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier result files in --out (--mabrax: "
                                                              "those of another budget)."),
    rerun: bool = typer.Option(False, "--rerun", help="--mabrax: " + RERUN_HELP),
    as_json: bool = JSON_OPTION,
):
    """PJAP's polynomial games: MADDPG (BRUD) vs MADDPG+PJAP, with the trajectory plots.

    With --mabrax instead: MADDPG+CQL vs MADDPG+CQL+PJAP on MaBrax halfcheetah_2x3."""
    import dataclasses

    if rerun and not mabrax:
        fail("--rerun belongs to --mabrax (the polynomial games write new result files; --overwrite replaces them)")
    if mabrax:
        from teamsift.bench import sit as sit_bench
        from teamsift.machine import describe, machine

        config = sit_bench.SITBenchConfig(envs=(sit_bench.PJAP_ENV,), episodes=episodes, num_seeds=mabrax_seeds,
                                          updates=mabrax_updates, data_dir=str(data_dir))
        info = machine()
        stem = f"pjap-mabrax-{info['device'].split(':')[0]}"
        _check_result_file(out / f"{stem}.json", dataclasses.asdict(config), sit_bench.BUDGET_FIELDS, overwrite)
        report = sit_bench.run(config, ("pjap",), progress=not as_json, machine=describe(info),
                               command="teamsift bench pjap " + shlex.join(sys.argv[3:]), out_dir=out, stem=stem,
                               rerun=rerun)
        emit(report, as_json, lambda r: OUT.print(sit_bench.render(r)))
        return
    from teamsift.bench import poly

    stem = out / _device_stem("poly-pjap")
    taken = [stem.with_suffix(s) for s in (".json", ".md", ".png") if stem.with_suffix(s).exists()]
    if taken and not overwrite:
        fail(f"--out: {taken[0]} already exists; pass --overwrite to replace the study's files, or give another --out")
    report = poly.run_study(quick=quick, num_updates=updates, num_seeds=seeds, out_dir=out)
    emit(report, as_json, lambda r: OUT.print(f"wrote {', '.join(r['files'])}", soft_wrap=True))
