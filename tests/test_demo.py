"""`teamsift demo`: the whole idea end to end from the CLI (quick sizes) — Exchange Values
from the team score find the good individuals, and the four learners are evaluated."""

import json

import pytest
from typer.testing import CliRunner

from teamsift.bench.demo import LEARNERS, PARTS, PLOT_FILE, RESULTS_FILE
from teamsift.cli.main import app


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--quick", "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_demo_prints_one_json_object_with_every_part_and_row(quick_demo):
    out, report = quick_demo
    assert [part["env_id"] for part in report["parts"]] == [part.env_id for part in PARTS]
    for part in report["parts"]:
        assert [row["name"] for row in part["rows"]] == [name for name, _, _ in LEARNERS]
        for row in part["rows"]:
            assert len(row["score"]["per_seed"]) == part["sizes"]["seeds"]
            assert row["score"]["std"] >= 0.0
    assert json.loads((out / RESULTS_FILE).read_text())["parts"] == report["parts"]
    assert (out / PLOT_FILE).stat().st_size > 0
    assert all((out / f"{part.env_id}-population" / "meta.json").is_file() for part in PARTS)


def test_exchange_values_rank_the_good_individuals_above_the_bad(quick_demo):
    _, report = quick_demo
    for part in report["parts"]:
        valuation = part["valuation"]
        assert valuation["auc_good_vs_bad"] >= 0.9, (part["env_id"], valuation["ranking"])
        ranking = valuation["ranking"]
        assert [row["rank"] for row in ranking] == list(range(1, len(ranking) + 1))
        assert all(ranking[i]["value"] >= ranking[i + 1]["value"] for i in range(len(ranking) - 1))


def test_ev2bc_imitates_exactly_the_individuals_with_positive_exchange_value(quick_demo):
    _, report = quick_demo
    for part in report["parts"]:
        rows = {row["name"]: row for row in part["rows"]}
        positive = sorted(row["id"] for row in part["valuation"]["ranking"] if row["value"] > 0)
        assert rows["EV2BC"]["kept_individuals"] == positive
        good = sorted(row["id"] for row in part["valuation"]["ranking"] if row["good"])
        assert rows["oracle"]["kept_individuals"] == good and rows["oracle"]["good_share"] == 1.0
        assert rows["BC"]["kept_fraction"] == 1.0
        assert rows["EV2BC"]["good_share"] > rows["BC"]["good_share"]


def test_demo_refuses_a_non_empty_out_before_any_work(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--quick", "--json"])
    assert result.exit_code == 2 and result.stdout == ""
    assert "not empty" in result.stderr and "--overwrite" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
