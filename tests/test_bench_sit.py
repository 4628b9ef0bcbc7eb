"""`teamsift bench sit`: the table runner (a tiny budget; the recorded run is `make bench`)."""

import dataclasses
import json
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift.bench import sit as sit_bench
from teamsift.bench.report import named_key


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="SITBenchConfig.envs"):
        sit_bench.SITBenchConfig(envs=("nowhere",))
    with pytest.raises(ValueError, match="SITBenchConfig.qualities"):
        sit_bench.SITBenchConfig(qualities=("high",))
    with pytest.raises(ValueError, match="SITBenchConfig.updates"):
        sit_bench.SITBenchConfig(updates=0)
    with pytest.raises(ValueError, match="SITBenchConfig.stress_env.*discrete map"):
        sit_bench.SITBenchConfig(stress_env="halfcheetah_2x3")  # ICQ and SIT's discrete critic need actions to pick


def test_stress_study_runs_on_the_chosen_map_and_says_so():
    assert [env for env, *_ in sit_bench.stress_rows()] == [sit_bench.STRESS_ENV] * 2  # the paper's 2s3z
    rows = sit_bench.stress_rows(sit_bench.SITBenchConfig(stress_env="CN_3ls3l").stress_env)
    assert [(env, name, spec) for env, name, spec, _ in rows] == [
        ("CN_3ls3l", "balanced (medium)", "100%[all m]"), ("CN_3ls3l", "extreme low", "99.5%[all r] + 0.5%[all m]")]
    cells = {"ICQ": {"mean": -40.0, "std": 1.0}, "SIT*": {"mean": -35.0, "std": 1.0}}
    stress = {f"CN_3ls3l {name}": {"env": "CN_3ls3l", "episodes": 10, "behavior": -50.0, "cells": cells}
              for _, name, *_ in rows}
    text = sit_bench.render({"machine": "m", "command": "c", "studies": {"stress": stress},
                             "config": dataclasses.asdict(sit_bench.SITBenchConfig())})
    assert "## Stress cases on CN_3ls3l (SIT Figure 4(b, c))" in text
    assert "| CN_3ls3l extreme low (10 ep.) | -50.00 | — | -40.00 ± 1.00 | **-35.00 ± 1.00** | — |" in text


def test_rows_follow_the_action_space():
    rows = sit_bench.table_rows(sit_bench.SITBenchConfig(envs=("CN_3ls3l", "halfcheetah_2x3")))
    assert [(env, quality) for env, quality, *_ in rows] == [
        ("CN_3ls3l", "low"), ("CN_3ls3l", "medium"), ("halfcheetah_2x3", "low"), ("halfcheetah_2x3", "medium")]
    assert rows[0][3] == sit_bench.DISCRETE_METHODS
    assert rows[2][3] == sit_bench.CONTINUOUS_METHODS
    assert rows[0][2] == "50%[r,r,r] + 50%[r,r,m]"


def test_sit_variants_switch_what_the_ablation_names():
    bench = sit_bench.SITBenchConfig(updates=7, ardnem_updates=3)
    full = sit_bench.method_spec("SIT", bench)
    assert full.algorithm == "sit" and full.sampler == "dper"
    assert (full.sampler_config.alpha, full.hyperparameters.beta) == (0.2, 0.1)  # the paper's Table 11
    swept = sit_bench.method_spec("SIT*", bench)
    assert (swept.sampler_config.alpha, swept.hyperparameters.beta) == (sit_bench.SWEPT_ALPHA, sit_bench.SWEPT_BETA)
    assert dataclasses.replace(swept, sampler_config=full.sampler_config, hyperparameters=full.hyperparameters) == full
    nodecomp = sit_bench.method_spec("SIT* w/o decomp", bench)
    assert not nodecomp.hyperparameters.decomposition and nodecomp.sampler == "uniform" and nodecomp.ardnem is None
    assert not sit_bench.method_spec("SIT* w/o attention", bench).ardnem.attention
    assert sit_bench.method_spec("SIT* w/o ensemble", bench).ardnem.ensemble_size == 1
    gatless = sit_bench.method_spec("SIT* w/o GAT", bench)
    assert not gatless.hyperparameters.use_gat and gatless.hyperparameters.beta == sit_bench.SWEPT_BETA
    assert sit_bench.method_spec("SIT* w/o priority", bench).sampler_config.alpha > 1e5
    assert not sit_bench.method_spec("SIT w/o GAT", bench).hyperparameters.use_gat
    mnc = sit_bench.method_spec("SIT* w/ MNC", bench)  # Fig. 7: Stage I's mixer replaced, SIT*'s other settings
    assert mnc.ardnem.mixer == "monotonic" and mnc.ardnem.attention
    assert dataclasses.replace(mnc, ardnem=swept.ardnem) == swept
    point = sit_bench.method_spec(sit_bench.sweep_name(5.0, 0.3), bench)
    assert (point.sampler_config.alpha, point.hyperparameters.beta) == (5.0, 0.3)
    assert len(sit_bench.SWEEP_METHODS) == len(sit_bench.SWEEP_ALPHAS) * len(sit_bench.SWEEP_BETAS)
    assert sit_bench.method_spec("MABCQ", bench).algorithm == "mabcq"
    for bad in ("SIT++", "SIT* w/o everything", "SIT* w/ VDN"):
        with pytest.raises(ValueError, match="unknown method"):
            sit_bench.method_spec(bad, bench)


def test_sweep_renders_as_an_alpha_beta_grid():
    cells = {sit_bench.sweep_name(a, b): {"mean": -40.0 - a - b, "std": 1.0, "returns": [-40.0]}
             for a in sit_bench.SWEEP_ALPHAS for b in sit_bench.SWEEP_BETAS}
    lines = sit_bench.render_sweep({"CN_3ls3l low": {"cells": cells}})
    header = next(line for line in lines if line.startswith("| DPER α"))
    assert header.count("|") == len(sit_bench.SWEEP_BETAS) + 2
    first = next(line for line in lines if line.startswith(f"| {sit_bench.SWEEP_ALPHAS[0]:g} |"))
    assert f"{-40.0 - sit_bench.SWEEP_ALPHAS[0] - sit_bench.SWEEP_BETAS[0]:.2f} ± 1.00" in first


def test_greedy_and_sampled_returns_render_once_per_cell_with_the_own_mode_marked():
    bc_cell = {"mean": -40.0, "std": 1.0, "mode": "sampled", "other_mode": {"mode": "greedy", "mean": -38.0, "std": 2.0}}
    sit_cell = {"mean": -33.0, "std": 1.0, "mode": "greedy", "other_mode": {"mode": "sampled", "mean": -36.0, "std": 0.5}}
    row = {"cells": {"BC": bc_cell, "SIT*": sit_cell, "MABCQ": {"mean": -140.0, "std": 7.0}}}
    studies = {"table": {"CN_3ls3l low": row}, "ablations": {"CN_3ls3l low": {"cells": {"SIT*": sit_cell}}}}
    lines = sit_bench.render_modes(studies)
    assert "| CN_3ls3l low | BC | -38.00 ± 2.00 | -40.00 ± 1.00* |" in lines
    assert "| CN_3ls3l low | SIT* | -33.00 ± 1.00* | -36.00 ± 0.50 |" in lines
    assert sum(line.startswith("| CN_3ls3l") for line in lines) == 2  # the copied SIT* cell once; no MABCQ
    assert sit_bench.render_modes({"table": {"x": {"cells": {"MABCQ": row["cells"]["MABCQ"]}}}}) == []


def _report(machine, updates, command, studies):
    config = dataclasses.asdict(sit_bench.SITBenchConfig(updates=updates))
    return {"machine": machine, "command": command, "config": config, "studies": studies, "notes": ["kept"]}


def test_parallel_results_merge_cell_by_cell_and_only_at_one_budget():
    cell = lambda mean: {"mean": mean, "std": 0.0, "returns": [mean]}  # noqa: E731
    row = lambda env, cells: {"env": env, "dataset": "low", "episodes": 10, "behavior": 0.0, "cells": cells}  # noqa: E731
    main = _report("cpu", 1500, "run a", {"table": {"CN_3ls3l low": row("CN_3ls3l", {"BC": cell(-48.0),
                                                                                       "ICQ": cell(-35.0)})}})
    other = _report("cpu", 1500, "run b", {"table": {"CN_3ls3l low": row("CN_3ls3l", {"ICQ": cell(-30.0)}),
                                                     "PP_3p1p low": row("PP_3p1p", {"BC": cell(8.0)})},
                                           "stress": {"x": row("CN_3ls3l", {"BC": cell(1.0)})}})
    merged = sit_bench.merge_reports(main, other)
    table = merged["studies"]["table"]
    assert {m: c["mean"] for m, c in table["CN_3ls3l low"]["cells"].items()} == {"BC": -48.0, "ICQ": -30.0}
    assert table["PP_3p1p low"]["cells"]["BC"]["mean"] == 8.0 and "x" in merged["studies"]["stress"]
    assert merged["commands"] == ["run a", "run b"] and merged["notes"] == ["kept"]
    assert main["studies"]["table"]["CN_3ls3l low"]["cells"]["ICQ"]["mean"] == -35.0  # inputs untouched
    with pytest.raises(ValueError, match="updates 1500 vs 3000"):
        sit_bench.merge_reports(main, _report("cpu", 3000, "run c", {}))
    elsewhere = _report("gpu", 1500, "run d", {"table": {"PP_3p1p low": row("PP_3p1p", {"ICQ": cell(9.0)})}})
    with pytest.raises(ValueError, match="machines differ.*--allow-other-machine"):
        sit_bench.merge_reports(main, elsewhere)
    # Allowed, the other machine's cells keep their machine and the tables mark them.
    mixed = sit_bench.merge_reports(merged, elsewhere, other_machine=True)
    cells = mixed["studies"]["table"]["PP_3p1p low"]["cells"]
    assert cells["ICQ"]["machine"] == "gpu" and "machine" not in cells["BC"] and mixed["machine"] == "cpu"
    text = sit_bench.render(mixed)
    assert "**9.00 ± 0.00**†" in text and "8.00 ± 0.00 |" in text and "† ran on gpu, not the machine named above." in text
    # A third machine gets its own mark; its cell joins the existing row under that row's dataset,
    # and the footnote gives the Behavior of the dataset it regenerated.
    regenerated = row("PP_3p1p", {"MACQL": cell(7.0)}) | {"behavior": 0.5}
    third = _report("tpu", 1500, "run e", {"table": {"PP_3p1p low": regenerated}})
    both = sit_bench.merge_reports(mixed, third, other_machine=True)
    joined = both["studies"]["table"]["PP_3p1p low"]
    assert joined["behavior"] == 0.0 and joined["cells"]["MACQL"]["dataset_behavior"] == 0.5
    assert set(joined["cells"]) == {"BC", "ICQ", "MACQL"}
    text = sit_bench.render(both)
    assert "**9.00 ± 0.00**†" in text and "7.00 ± 0.00‡" in text
    assert "‡ ran on tpu, not the machine named above. Its regenerated datasets' Behavior: PP_3p1p low 0.5 (the row's 0)." in text


@pytest.mark.slow
def test_tiny_table_run_reports_every_learner(tmp_path, monkeypatch):
    bench = sit_bench.SITBenchConfig(envs=("CN_3ls3l",), qualities=("low",), episodes=60, num_seeds=2, updates=4,
                                     ardnem_updates=4, eval_episodes=5, data_dir=str(tmp_path / "data"))
    report = sit_bench.run(bench, ("table",), progress=False, machine="test", command="test",
                           out_dir=tmp_path / "out", stem="sit-test")
    row = report["studies"]["table"]["CN_3ls3l low"]
    assert row["episodes"] == 60 and row["spec"] == "50%[r,r,r] + 50%[r,r,m]"
    # Behavior is the dataset's mean return: a low-quality CN dataset is far below zero.
    assert row["behavior"] < -20
    for method in sit_bench.DISCRETE_METHODS:
        cell = row["cells"][method]
        assert len(cell["returns"]) == 2 and np.all(np.isfinite(cell["returns"]))
        assert cell["mean"] == pytest.approx(np.mean(cell["returns"]))
        assert cell["updates"] == 4
    assert set(row["cells"]["SIT"]["stage_seconds"]) == {"stage1", "stage3"}
    assert row["cells"]["MABCQ"]["behaviour_updates"] == 4
    # Every cell trained in a run directory of its own: an interrupted cell resumes from it.
    for method in sit_bench.DISCRETE_METHODS:
        run_dir = Path(row["cells"][method]["run_dir"])
        assert (run_dir / "config.json").is_file() and (run_dir / "policies" / "seed-1.msgpack").is_file()
    # So did Stage I (shared by SIT and SIT*), checkpointed as it trains.
    stage1_dirs = list((tmp_path / "data" / "runs" / "sit-test").glob("*_stage1-seed0-*/stages/ardnem"))
    assert len(stage1_dirs) == 1 and list((stage1_dirs[0] / "checkpoints").iterdir())
    assert "aggregate over 1 row × 2 seeds (rliable)" in (tmp_path / "out" / "sit-test.md").read_text()
    saved = json.loads((tmp_path / "out" / "sit-test.json").read_text())
    assert saved["studies"]["table"]["CN_3ls3l low"]["cells"].keys() == row["cells"].keys()
    text = (tmp_path / "out" / "sit-test.md").read_text()
    assert "| CN_3ls3l low (60 ep.) |" in text and "**" in text  # the row's best learner is bold
    # Discrete actors are also evaluated in their other action mode; MABCQ and MACQL act on Q only.
    assert (row["cells"]["BC"]["mode"], row["cells"]["BC"]["other_mode"]["mode"]) == ("sampled", "greedy")
    assert (row["cells"]["ICQ"]["mode"], row["cells"]["SIT*"]["other_mode"]["mode"]) == ("greedy", "sampled")
    assert "other_mode" not in row["cells"]["MABCQ"] and "other_mode" not in row["cells"]["MACQL"]
    assert "## Greedy and sampled actions" in text
    # The dataset is cached: a second run reuses it.
    assert sit_bench.dataset_path(bench, "CN_3ls3l", "low").is_dir()
    # A later study on the same row copies the table's cells instead of rerunning them.
    later = sit_bench.run(bench, ("ablations",), progress=False, machine="test", command="test ablations",
                          out_dir=tmp_path / "out", stem="sit-test", methods=("SIT*", "SIT* w/o GAT"))
    ablations = later["studies"]["ablations"]["CN_3ls3l low"]["cells"]
    assert ablations["SIT*"] == row["cells"]["SIT*"]
    assert np.all(np.isfinite(ablations["SIT* w/o GAT"]["returns"]))
    assert later["studies"]["table"]["CN_3ls3l low"]["cells"].keys() == row["cells"].keys()  # merged, kept
    # The same command again keeps every finished cell (an interrupted run goes on where it
    # stopped); --rerun trains them again.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(sit_bench, "run_cell", no_training)
    again = sit_bench.run(bench, ("table",), progress=False, machine="test", command="test",
                          out_dir=tmp_path / "out", stem="sit-test", methods=("BC", "ICQ"))
    assert again["studies"]["table"]["CN_3ls3l low"]["cells"]["BC"] == row["cells"]["BC"]
    with pytest.raises(AssertionError, match="trained again"):
        sit_bench.run(bench, ("table",), progress=False, machine="test", command="test", out_dir=tmp_path / "out",
                      stem="sit-test", methods=("BC",), rerun=True)


def test_pjap_study_compares_uniform_and_pjap_sampling_on_mabrax():
    rows = sit_bench.pjap_rows()
    assert {env for env, *_ in rows} == {"halfcheetah_2x3"}
    assert all(methods == ("MADDPG+CQL", "MADDPG+CQL+PJAP") for *_, methods in rows)
    spec = sit_bench.method_spec("MADDPG+CQL+PJAP", sit_bench.SITBenchConfig(updates=20_000))
    assert spec.algorithm == "maddpg_cql_pjap" and spec.sampler == "pjap"
    assert spec.sampler_config.ramp_steps == 6_000  # the paper's K/updates = 150 000 / 500 000
    full = sit_bench.method_spec("MADDPG+CQL+PJAP", sit_bench.SITBenchConfig())
    assert full.sampler_config.ramp_steps == 150_000  # full budget: the paper's K


def test_cell_keys_depend_on_names_not_on_positions():
    root = jax.random.key(0)
    same = [named_key(root, "CN_3ls3l", "low", "SIT") for _ in range(2)]
    assert jnp.array_equal(jax.random.key_data(same[0]), jax.random.key_data(same[1]))
    others = [named_key(root, "CN_3ls3l", "low", "ICQ"), named_key(root, "CN_3ls3l", "medium", "SIT"),
              named_key(root, "CN_4ls4l", "low", "SIT")]
    assert all(not jnp.array_equal(jax.random.key_data(same[0]), jax.random.key_data(k)) for k in others)


def test_reward_scaled_variants_change_only_the_reward_scale_and_share_their_base_key():
    bench = sit_bench.SITBenchConfig(updates=7, ardnem_updates=3)
    assert sit_bench.SMAC_SCALE_ON_SMAX == 10.0  # SMAC's best return 20 over SMAX's 2
    # both scales named: the study does not change with the default rule
    assert sit_bench.REWARD_SCALE_METHODS == ("SIT reward×1", "SIT reward×10", "SIT* reward×1", "SIT* reward×10",
                                              "ICQ reward×1", "ICQ reward×10")
    for base in ("SIT", "SIT*", "ICQ"):
        plain = sit_bench.method_spec(base, bench)
        unscaled = sit_bench.method_spec(sit_bench.reward_scaled_name(base, 1), bench)
        scaled = sit_bench.method_spec(sit_bench.reward_scaled_name(base, 10), bench)
        assert plain.hyperparameters.reward_scale is None and plain.hyperparameters.reward_scale_rule == "smac"
        assert unscaled.hyperparameters.reward_scale == 1.0 and scaled.hyperparameters.reward_scale == 10.0
        assert dataclasses.replace(scaled, hyperparameters=unscaled.hyperparameters) == unscaled
        # paired: both cells start from the same networks and draw the same batches
        assert sit_bench.key_name(sit_bench.reward_scaled_name(base, 1)) == base
        assert sit_bench.key_name(sit_bench.reward_scaled_name(base, 10)) == base
    assert sit_bench.key_name("SIT* w/o GAT") == "SIT* w/o GAT"
    discrete = types.SimpleNamespace(spec=types.SimpleNamespace(discrete=True))
    assert all(sit_bench.has_action_distribution(m, discrete) for m in sit_bench.REWARD_SCALE_METHODS)  # + sampled
    assert not sit_bench.has_action_distribution("MACQL", discrete)
    with pytest.raises(ValueError, match="scales the rewards of SIT and ICQ"):
        sit_bench.method_spec("BC reward×10", bench)
    with pytest.raises(ValueError, match="expected a number"):
        sit_bench.method_spec("SIT reward×ten", bench)
    [(env, quality, _, methods)] = sit_bench.reward_scale_rows()
    assert (env, quality, methods) == ("smax_3s_vs_5z", "low", sit_bench.REWARD_SCALE_METHODS)
    assert [q for _, q, _, _ in sit_bench.reward_scale_rows(qualities=("low", "medium"))] == ["low", "medium"]
    cells = {m: {"mean": 0.3 + 0.01 * i, "std": 0.01, "returns": [0.3]}  # the last (ICQ reward×10) best
             for i, m in enumerate(sit_bench.REWARD_SCALE_METHODS)}
    report = {"machine": "m", "command": "c", "config": dataclasses.asdict(bench),
              "studies": {"reward-scale": {"smax_3s_vs_5z low": {"cells": cells, "episodes": 10, "behavior": 0.24,
                                                                 "env": "smax_3s_vs_5z", "dataset": "low"}}}}
    text = sit_bench.render(report)
    assert "SMAC's reward scale" in text and "| SIT* reward×10 |" in text and "**0.35 ± 0.01**" in text
