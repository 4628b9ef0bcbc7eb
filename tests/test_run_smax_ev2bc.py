"""benchmarks/run_smax_ev2bc.py's table: the benchmark's learners on every map (a missing
one marks the file partial), its diagnostic variants only where they ran."""

import pytest


@pytest.fixture(scope="module")
def script(benchmark_script):
    return benchmark_script("run_smax_ev2bc")


def cell(win: float) -> dict:
    return {"win": {"mean": win, "ci95": [win - 0.05, win + 0.05]},
            "return": {"mean": 2 * win, "ci95": [2 * win - 0.1, 2 * win + 0.1]}, "train_seconds": 1.0}


def row(cells: dict) -> dict:
    return {"dataset": {"episodes": 10, "transitions": 100, "behaviour": {"return": 0.5, "win": 0.1},
                        "ev_accuracy": {"spearman": 0.9, "auc_expert_vs_random": 1.0, "per_level": {}}},
            "cells": cells}


def report(script, rows: dict, learners: list[str]) -> dict:
    return {"commands": ["python benchmarks/run_smax_ev2bc.py"], "machine": "test",
            "config": {"envs": list(script.ENVS), "learners": learners, "updates": 10, "seeds": 2, "population": 3,
                       "appearances": 2, "eval_episodes": 4, "score": "return"},
            "rows": rows}


def test_every_variant_has_a_label_and_the_defaults_leave_out_the_diagnostic_ones(script):
    assert set(script.VARIANTS) <= set(script.LEARNERS)
    assert set(script.DIAGNOSTIC) <= set(script.VARIANTS)
    assert not set(script.DIAGNOSTIC) & set(script.DEFAULT_LEARNERS)
    assert all(script.VARIANTS[name][0] == "icq" for name in script.DIAGNOSTIC)


def test_a_diagnostic_variant_shows_only_where_it_ran(script):
    full = {name: cell(0.4) for name in script.DEFAULT_LEARNERS}
    rows = {"smax_3m": row(full), "smax_2s3z": row({**full, "icq_beta_x10": cell(0.5)})}
    text = script.render(report(script, rows, [*script.DEFAULT_LEARNERS, "icq_beta_x10"]))
    assert text.count(script.LEARNERS["icq_beta_x10"]) == 1
    assert "not run" not in text and "Partial" not in text
    assert "**50% [45, 55]**" in text  # the best win rate of its map is bold, variants included


def test_a_missing_learner_of_the_benchmark_marks_the_table_partial(script):
    rows = {"smax_3m": row({name: cell(0.4) for name in script.DEFAULT_LEARNERS if name != "bc"}),
            "smax_2s3z": row({name: cell(0.4) for name in script.DEFAULT_LEARNERS})}
    text = script.render(report(script, rows, list(script.DEFAULT_LEARNERS)))
    assert "| BC | not run | not run | | |" in text
    assert "**Partial**: cells not run yet: smax_3m/bc." in text
