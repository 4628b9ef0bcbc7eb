"""`teamsift bench imitation` and `teamsift imitate`: configuration and the report."""

import pytest
from typer.testing import CliRunner

from teamsift.bench import imitation
from teamsift.cli.main import app


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="ImitationBenchConfig.envs"):
        imitation.ImitationBenchConfig(envs=("CN_3ls3l",))
    with pytest.raises(ValueError, match="ImitationBenchConfig.methods"):
        imitation.ImitationBenchConfig(methods=("GAIL++",))
    with pytest.raises(ValueError, match="ImitationBenchConfig.timesteps"):
        imitation.ImitationBenchConfig(timesteps=0)


def test_methods_follow_the_action_space():
    bench = imitation.ImitationBenchConfig()
    assert imitation.methods_for(bench, discrete=True) == ("MILD²", "MILD²-GD", "MAGAIL", "BC", "ICQ")
    assert imitation.methods_for(bench, discrete=False) == ("MILD²", "MILD²-GD", "MAGAIL", "BC", "TD3+BC", "OMAR")
    chosen = imitation.ImitationBenchConfig(methods=("MAGAIL", "ICQ", "OMAR"))
    assert imitation.methods_for(chosen, discrete=True) == ("MAGAIL", "ICQ")
    assert imitation.methods_for(chosen, discrete=False) == ("MAGAIL", "OMAR")


def test_render_marks_the_best_and_reports_speed():
    report = {"machine": "m", "command": "c", "config": {"timesteps": 1000, "updates": 10, "num_seeds": 2,
                                                         "eval_episodes": 5},
              "rows": {"smax_3m": {"env": "smax_3m", "transitions": 1000, "expert_return": 1.7, "cells": {
                  "MAGAIL": {"mean": 1.2, "std": 0.1, "win_mean": 0.5, "env_steps": 1000, "train_seconds": 10.0,
                             "env_steps_per_s": 200.0,
                             "diagnostics": {"generator_reward_var": [0.5, 0.1], "disc_loss": [0.7, 0.6],
                                             "final_reward_histogram": [1, 1, 2], "histogram_edges": [0, 1, 2, 3],
                                             "advantage_var_end": [0.2, 0.4]}},
                  "BC": {"mean": 1.5, "std": 0.2},
                  "MILD²": {"error": "ImportError: not here"}}}}}
    text = imitation.render(report)
    assert "**1.50 ± 0.20**" in text and "1.20 ± 0.10 (50% won)" in text and "| n/a |" in text
    # half the rewards below 2; the advantage variance's mean ± std over the two seeds
    assert "| smax_3m | MAGAIL | 1,000 | 10 s | 200 | 0.5 → 0.1 | 2.00 | 0.6 | 0.3 ± 0.1 |" in text
    assert "Notes:" not in text
    assert "- ICQ ran at scale 1." in imitation.render({**report, "notes": ["ICQ ran at scale 1."]})


def test_the_reward_median_is_read_off_the_histogram():
    assert imitation.histogram_median([2, 0, 2], [0.0, 1.0, 2.0, 3.0]) == 1.0  # the CDF reaches 1/2 at bin 0's end
    assert imitation.histogram_median([1, 2, 1], [0.0, 1.0, 2.0, 3.0]) == 1.5  # the middle of the middle bin
    assert imitation.histogram_median([0, 0, 4], [0.0, 1.0, 2.0, 3.0]) == 2.5


def test_imitate_refuses_unknown_algorithms(tmp_path):
    result = CliRunner().invoke(app, ["imitate", str(tmp_path), "--algo", "gail"])
    assert result.exit_code == 2 and "--algo" in result.output


def test_figure_draws_the_return_curves_against_the_offline_levels():
    """The first panel: each adversarial run's training-episode return over env steps, with
    the offline learners' evaluated returns and the expert data's as horizontal levels."""
    row = {"env": "smax_3m", "expert_return": 1.7, "cells": {
        "MAGAIL": {"mean": 1.2, "diagnostics": {"env_steps": [10, 20, 30], "return": [0.2, 0.6, 0.9],
                                                 "generator_reward_var": [0.5, 0.1], "disc_loss": [0.7, 0.6]}},
        "BC": {"mean": 1.5}, "ICQ": {"error": "ValueError: no"}}}
    fig = imitation.diagnostics_figure(row)
    returns = fig.axes[0]
    assert returns.get_title() == "return of the training episodes"
    curves = [list(line.get_ydata()) for line in returns.get_lines()]
    assert [0.2, 0.6, 0.9] in curves  # MAGAIL's curve
    assert [1.5, 1.5] in curves and [1.7, 1.7] in curves  # BC's level and the expert's; ICQ failed: none
    assert len(curves) == 3


def test_the_same_command_keeps_finished_cells_and_rerun_trains_them_again(tmp_path, monkeypatch):
    """An interrupted benchmark goes on where it stopped: a cell the result file holds is
    kept, an unfinished (or failed) one trains and resumes from its run directory, and
    `rerun=True` trains every cell again from scratch."""
    import dataclasses
    import json
    from types import SimpleNamespace

    import numpy as np

    calls = []

    def cell(method, bench, dataset, env, key, runs_dir=None, fresh=False):
        calls.append((method, fresh))
        return {"returns": [1.0], "mean": 1.0, "std": 0.0, "train_seconds": 1.0}

    fake = SimpleNamespace(num_steps=10, episodes={"return": np.zeros(2)}, meta={})
    monkeypatch.setattr(imitation, "ensure_dataset", lambda *args, **kwargs: fake)
    monkeypatch.setattr(imitation, "make", lambda *args, **kwargs: SimpleNamespace(spec=SimpleNamespace(discrete=True)))
    monkeypatch.setattr(imitation, "run_cell", cell)
    monkeypatch.setattr(imitation, "save", lambda report, out_dir, stem: (out_dir / f"{stem}.json").write_text(
        json.dumps(report)))
    bench = imitation.ImitationBenchConfig(envs=("mpe_spread",), methods=("MAGAIL", "BC"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "im.json").write_text(json.dumps({"config": dataclasses.asdict(bench), "rows": {
        "mpe_spread": {"cells": {"MAGAIL": {"returns": [2.0], "mean": 2.0, "std": 0.0},
                                 "BC": {"error": "ValueError: it failed"}}}}}))
    report = imitation.run(bench, progress=False, out_dir=out, stem="im")
    assert calls == [("BC", True)]  # MAGAIL kept; the failed BC cell trained again, its run directory replaced
    assert report["rows"]["mpe_spread"]["cells"]["MAGAIL"]["mean"] == 2.0
    calls.clear()
    imitation.run(bench, progress=False, out_dir=out, stem="im")
    assert calls == []  # both finished: nothing to train
    imitation.run(bench, progress=False, out_dir=out, stem="im", rerun=True)
    assert calls == [("MAGAIL", True), ("BC", True)]

    # A cell made on another machine joins the table under its own machine: the header stays
    (out / "im.json").write_text(json.dumps({"machine": "box A", "config": dataclasses.asdict(bench), "rows": {
        "mpe_spread": {"cells": {"MAGAIL": {"returns": [2.0], "mean": 2.0, "std": 0.0}}}}}))
    report = imitation.run(bench, progress=False, out_dir=out, stem="im", machine="box B")
    cells = report["rows"]["mpe_spread"]["cells"]
    assert report["machine"] == "box A" and "machine" not in cells["MAGAIL"] and cells["BC"]["machine"] == "box B"
    report["rows"]["mpe_spread"].update(env="mpe_spread", transitions=10, expert_return=1.0)
    report["config"].update(num_seeds=1, eval_episodes=1)
    text = imitation.render(report)
    assert "| 1.00 ± 0.00† |" in text and "† ran on box B, not the machine named above" in text


def test_rerun_belongs_to_the_benchmarks_that_keep_cells():
    result = CliRunner().invoke(app, ["bench", "pjap", "--rerun"])
    assert result.exit_code == 2 and "--rerun belongs to --mabrax" in result.output
