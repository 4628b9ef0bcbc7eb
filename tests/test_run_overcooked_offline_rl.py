"""benchmarks/run_overcooked_offline_rl.py (claim E13): it sets ICQ beside the recorded human
benchmark's learners, and refuses what would mix budgets or miss a recorded layout."""

import json

import pytest


@pytest.fixture(scope="module")
def script(benchmark_script):
    return benchmark_script("run_overcooked_offline_rl")


def cells(mean: float) -> dict:
    return {c: [mean, mean - 1, mean + 1] for c in ("proxy_seat0", "proxy_seat1", "proxy_both", "self")}


def layout_row(script, icq: float) -> dict:
    return {"layout": "cramped_room", "cells": cells(icq),
            "difference": {m: {"proxy_both": [icq - 6, icq - 7, icq - 5], "self": [icq - 7, icq - 8, icq - 6]}
                           for m in script.COMPARED},
            "recorded_cells": {"bc": cells(6.5), "group_bc": cells(5.9), "ev2bc": cells(6.4)},
            "human_soups_per_game": {"train": 17.9, "test": 15.0}, "proxy_self_play_soups": 7.0,
            "bc_at_icq_updates": {"updates": 10, "cells": cells(4.0),
                                  "icq_minus_this": {"proxy_both": [-1.75, -2.5, -1.0], "self": [-2.0, -3.0, -1.0]}},
            "seconds": {"train": 600.0, "total": 700.0}}


def test_the_table_sets_icq_beside_the_recorded_learners_and_names_the_layouts_not_run(script):
    report = {"machine": "test", "commands": ["python benchmarks/run_overcooked_offline_rl.py"], "updates": 10,
              "seeds": 5, "layouts": {"cramped_room": layout_row(script, 2.25)}}
    text = script.render(report)
    header = next(line for line in text.splitlines() if line.startswith("| layout | condition"))
    assert header == "| layout | condition | BC | group-BC | EV2BC | ICQ (offline RL) | BC at 10 updates |"
    both = next(line for line in text.splitlines() if "with proxy, both seats" in line and "[" in line)
    assert both == ("| cramped_room | with proxy, both seats | 6.50 [5.50, 7.50] | 5.90 [4.90, 6.90] | "
                    "6.40 [5.40, 7.40] | 2.25 [1.25, 3.25] | 4.00 [3.00, 5.00] |")
    assert "| cramped_room | EV2BC | -3.75 [-4.75, -2.75] | -4.75 [-5.75, -3.75] |" in text
    assert "| cramped_room | BC at 10 updates | -1.75 [-2.50, -1.00] | -2.00 [-3.00, -1.00] |" in text
    assert "not run: asymmetric_advantages, coordination_ring, forced_coordination, counter_circuit" in text


def test_a_layout_the_recorded_file_lacks_is_refused_by_name(script, tmp_path):
    recorded = tmp_path / "overcooked-human-cpu.json"
    recorded.write_text(json.dumps({"config": {"seeds": 5}, "layouts": {"cramped_room": {}}}))
    with pytest.raises(SystemExit, match=r"overcooked-human-cpu.json: field 'layouts' has no \['counter_circuit'\]"):
        script.main(["--layouts", "counter_circuit", "--recorded", str(recorded), "--out", str(tmp_path)])


def test_results_of_another_budget_are_not_mixed_into(script, tmp_path):
    recorded = tmp_path / "overcooked-human-cpu.json"
    recorded.write_text(json.dumps({"config": {"seeds": 5}, "layouts": {"cramped_room": {}}}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "overcooked-offline-rl-cpu.json").write_text(json.dumps(
        {"updates": 1000, "seeds": 5, "layouts": {"cramped_room": layout_row(script, 2.0)}}))
    with pytest.raises(SystemExit, match="holds layouts at 1000 updates and 5 seeds .asked: 10, 5.; give another --out"):
        script.main(["--layouts", "cramped_room", "--updates", "10", "--recorded", str(recorded), "--out", str(out)])


def test_the_optimiser_grid_sets_icq_beside_bc_under_each_optimiser(script):
    row = layout_row(script, 2.25)
    optimisers = (*script.OPTIMISERS, script.HALF_LOSS)
    row["optimiser_grid"] = {
        "updates": 10, "batch_steps": 9632,
        "cells": {**{f"bc/{o}": cells(3.0 + i) for i, o in enumerate(optimisers)},
                  **{f"icq/{o}": cells(2.25 + 3 * i) for i, o in enumerate(script.OPTIMISERS)}},
        "icq_minus_bc": {o: {"proxy_both": [-0.75 + 2 * i, -1.0, 0.5], "self": [-1.0, -2.0, 0.0]}
                         for i, o in enumerate(script.OPTIMISERS)},
        "icq_minus_bc_half_loss": {"proxy_both": [-2.75, -3.0, -2.5], "self": [-3.0, -4.0, -2.0]}}
    report = {"machine": "test", "commands": ["c"], "updates": 10, "seeds": 5, "layouts": {"cramped_room": row}}
    lines = script.render(report).splitlines()
    grid = lines[lines.index("| layout | optimiser | condition | BC | ICQ | ICQ − BC (seed-paired) |"):]
    assert grid[2] == ("| cramped_room | ε 1e-5 under the root (ICQ's default) | with proxy, both seats | "
                       "3.00 [2.00, 4.00] | 2.25 [1.25, 3.25] | -0.75 [-1.00, 0.50] |")
    assert grid[4].startswith("| cramped_room | ε 1e-5 added to the root (PyMARL's, the reference's) | with proxy, "
                              "both seats | 4.00 [3.00, 5.00] | 5.25 [4.25, 6.25] | 1.25 ")
    assert grid[6] == ("| cramped_room | ε 1e-5 under the root (ICQ's default), BC's loss halved (as ICQ's k_i(s) "
                       "≈ ½ weighs its own) | with proxy, both seats | 5.00 [4.00, 6.00] | 2.25 [1.25, 3.25] | "
                       "-2.75 [-3.00, -2.50] |")


def test_the_optimiser_grid_needs_the_layouts_icq_run_first(script, tmp_path):
    recorded = tmp_path / "overcooked-human-cpu.json"
    recorded.write_text(json.dumps({"config": {"seeds": 5}, "layouts": {"cramped_room": {}, "counter_circuit": {}}}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "overcooked-offline-rl-cpu.json").write_text(json.dumps(
        {"updates": 10, "seeds": 5, "layouts": {"cramped_room": layout_row(script, 2.0)}}))
    with pytest.raises(SystemExit, match="overcooked-offline-rl-cpu.json: field 'layouts' has no 'counter_circuit'; "
                                         "the optimiser grid needs its ICQ run"):
        script.main(["--layouts", "counter_circuit", "--updates", "10", "--optimiser-grid", "--recorded",
                     str(recorded), "--out", str(out)])
