"""`teamsift value` and `teamsift train --algo ev2bc|group_bc` on a commons population."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from teamsift.cli.main import app

runner = CliRunner()


def run_json(*args):
    result = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    out = tmp_path_factory.mktemp("value") / "pop"
    run_json("generate", "commons", str(out), "--population", "6", "--appearances", "20",
             "--kinds", "sustainable,greedy")
    return out


def test_value_ev_ranks_sustainable_above_greedy_and_plots(population):
    report = run_json("value", str(population), "--score", "v_final")
    levels = [row["true_level"] for row in report["table"]]
    assert levels == ["sustainable"] * 3 + ["greedy"] * 3
    assert all(row["stderr"] > 0 and row["count"] == 20 for row in report["table"])
    per_level = report["accuracy"]["per_level"]
    assert per_level["sustainable"]["mean_value"] > 0 > per_level["greedy"]["mean_value"]
    assert all(p.endswith("values.png") for p in report["plots"])
    assert report["warnings"] == []  # 6 individuals in many different groups: EV fits


def test_value_shapley_agrees_in_sign_with_ev(population):
    report = run_json("value", str(population), "--method", "shapley", "--score", "v_final",
                      "--permutations", "20")
    per_level = report["accuracy"]["per_level"]
    assert per_level["sustainable"]["mean_value"] > per_level["greedy"]["mean_value"]


def test_value_rejects_unknown_method_and_score(population):
    for args in (["--method", "magic"], ["--score", "nope"]):
        result = runner.invoke(app, ["value", str(population), *args])
        assert result.exit_code == 2 and "Traceback" not in result.output


def test_train_ev2bc_and_group_bc_from_the_cli(population, tmp_path):
    for algo in ("ev2bc", "group_bc"):
        payload = run_json("train", str(population), "--algo", algo, "--score", "v_final", "--updates", "50",
                           "--out", str(tmp_path / f"{algo}.msgpack"), "--eval-episodes", "4",
                           "--run-dir", str(tmp_path / algo))
        assert 0.0 < payload["kept_fraction"] < 1.0
    assert set(payload) >= {"policy", "eval"}


POOLS = __import__("pathlib").Path(__file__).resolve().parents[1] / "pools"


@pytest.fixture(scope="module")
def sit_medium(tmp_path_factory):
    """SIT's medium-quality CN_3ls3l data, 100%[r, m, e], drawn from the committed pools."""
    out = tmp_path_factory.mktemp("sit") / "cn_medium"
    run_json("generate", "CN_3ls3l", str(out), "--spec", "100%[r,m,e]", "--episodes", "600",
             "--pools", str(POOLS), "--seed", "1")
    return out


def test_value_ardnem_ranks_the_expert_slot_above_the_random_slot(sit_medium, tmp_path):
    """SIT Stage I on real MPE data: the decomposed returns put the expert agent above the
    random agent (SIT Figure 3(a)), and the Figure 3 plots are written. Two ensemble members,
    not the paper's five, rank the slots alike here (AUC 0.55 with 2 and with 5, measured) at
    two fifths of the cost."""
    report = run_json("value", str(sit_medium), "--method", "ardnem", "--updates", "1500",
                      "--learning-rate", "1e-3", "--ensemble", "2", "--out", str(tmp_path / "values"),
                      "--run-dir", str(tmp_path / "run"), "--checkpoint-every", "500")
    stage1 = tmp_path / "values" / "ardnem-stage1.msgpack"
    assert report["stage1"] == str(stage1) and stage1.is_file() and (tmp_path / "run" / "metrics.csv").is_file()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["1000", "1500", "500"]
    # SIT reuses that Stage I instead of training ARDNEM again
    sit = run_json("train", str(sit_medium), "--algo", "sit", "--updates", "2", "--stage1", str(stage1),
                   "--eval-episodes", "0", "--run-dir", str(tmp_path / "sit"))
    assert sit["sampler"] == "dper" and not (tmp_path / "sit" / "stages").exists()
    slot_priority = report["slot_mean_priority"]  # slots: random, medium, expert
    assert slot_priority[2] > slot_priority[0]
    per_level = report["accuracy"]["per_level"]
    assert per_level["expert"]["mean_value"] > per_level["random"]["mean_value"]
    assert report["trajectory_accuracy"]["auc_expert_vs_random"] > 0.5
    assert {p.rsplit("/", 1)[-1] for p in report["plots"]} == {"values.png", "ardnem_decomposition.png",
                                                                "dper_priorities.png"}


def test_value_ardnem_without_attention_orders_every_level(sit_medium, tmp_path):
    """The 'w/o attention' ablation (λ ≡ 1) orders random < medium < expert per slot and
    separates single trajectories on this data (trajectory AUC ≈ 0.82 measured)."""
    report = run_json("value", str(sit_medium), "--method", "ardnem", "--updates", "1500",
                      "--learning-rate", "1e-3", "--ensemble", "2", "--no-attention", "--out", str(tmp_path / "values"))
    slot_priority = report["slot_mean_priority"]
    assert slot_priority[2] > slot_priority[1] > slot_priority[0]
    assert report["trajectory_accuracy"]["auc_expert_vs_random"] > 0.75
    assert report["config"]["attention"] is False


def test_value_ardnem_mixer_reaches_stage_one_and_is_checked(sit_medium, population, tmp_path):
    """--mixer monotonic trains Stage I with QMIX's mixer (SIT's MNC ablation, Fig. 7);
    it belongs to ardnem, and a mixer that does not exist is named in the error."""
    report = run_json("value", str(sit_medium), "--method", "ardnem", "--updates", "20", "--mixer", "monotonic",
                      "--out", str(tmp_path / "values"))
    assert report["config"]["mixer"] == "monotonic" and report["updates"] == 20
    result = runner.invoke(app, ["value", str(population), "--method", "ev", "--mixer", "monotonic"])
    assert result.exit_code == 2 and "--mixer belong to --method ardnem" in result.output
    result = runner.invoke(app, ["value", str(sit_medium), "--method", "ardnem", "--updates", "2", "--mixer", "vdn",
                                 "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "mixer" in result.output and "monotonic" in result.output


def test_value_ardnem_rejects_episode_scores(population):
    result = runner.invoke(app, ["value", str(population), "--method", "ardnem", "--score", "v_final"])
    assert result.exit_code == 2 and "per-step team reward" in result.output


def test_train_ev2bc_per_slot_from_the_cli(population, tmp_path):
    payload = run_json("train", str(population), "--algo", "ev2bc", "--score", "v_final", "--updates", "20",
                       "--per-slot", "--out", str(tmp_path / "role.msgpack"), "--eval-episodes", "2",
                       "--run-dir", str(tmp_path / "run"))
    assert 0.0 < payload["kept_fraction"] < 1.0


def test_train_offline_learner_from_the_cli(population, tmp_path):
    """`teamsift train --algo icq`: the offline learners share the train command."""
    payload = run_json("train", str(population), "--algo", "icq", "--updates", "20",
                       "--out", str(tmp_path / "icq.msgpack"), "--eval-episodes", "2", "--run-dir", str(tmp_path / "run"))
    assert payload["algo"] == "icq" and payload["updates"] == 20
    assert (tmp_path / "icq.msgpack").is_file() and all(abs(x) < 1e6 for x in payload["final_loss"])
    result = runner.invoke(app, ["train", str(population), "--algo", "magic"])
    assert result.exit_code == 2 and "maddpg_cql" in result.output


def test_features_option_reaches_ev_clustering_in_value_and_train(tmp_path):
    """`--features` chooses EV-Clustering's behaviour features. On anonymised data whose two
    kinds differ only in which action follows which observation (`cue_dataset`), the
    policy mixture finds the individuals who raise the score and the histograms do not."""
    from teamsift.data.testing import cue_dataset

    data = str(cue_dataset(tmp_path / "cue").path)
    common = ("value", data, "--method", "ev-cluster", "--score", "coverage", "--clusters", "2")
    default = run_json(*common, "--out", str(tmp_path / "default"))
    reports = {kind: run_json(*common, "--features", kind, "--out", str(tmp_path / kind))
               for kind in ("histogram", "policy-mixture")}
    assert default["clusters"]["features"] == "histogram" and default["table"] == reports["histogram"]["table"]
    assert reports["policy-mixture"]["clusters"]["features"] == "policy-mixture"
    assert reports["histogram"]["accuracy"]["auc_expert_vs_random"] < 0.8
    assert reports["policy-mixture"]["accuracy"]["auc_expert_vs_random"] > 0.95
    likelihood = run_json("value", data, "--method", "ev-cluster", "--score", "coverage", "--features",
                          "policy-likelihood", "--k-rule", "lowest", "--out", str(tmp_path / "likelihood"))
    assert (likelihood["clusters"]["features"], likelihood["clusters"]["k_rule"]) == ("policy-likelihood", "lowest")
    assert default["clusters"]["k_rule"] == "one-se"
    assert likelihood["accuracy"]["auc_expert_vs_random"] > 0.95
    printed = runner.invoke(app, [*common, "--out", str(tmp_path / "printed")])
    assert printed.exit_code == 0 and "from histogram features (K given)" in printed.output
    for args, message in ((["--method", "ev", "--features", "policy-mixture"], "--features belongs to --method"),
                          (["--method", "ev-cluster", "--features", "embedding"], "--features: expected one of"),
                          (["--method", "ev", "--k-rule", "lowest"], "--k-rule belongs to --method"),
                          (["--method", "ev-cluster", "--k-rule", "smallest"], "--k-rule: expected one of"),
                          (["--method", "ev-cluster", "--k-rule", "lowest", "--clusters", "2"], "give one of them")):
        result = runner.invoke(app, ["value", data, *args, "--out", str(tmp_path / "refused")])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    # EV2BC on EV-Clustering weights: the option reaches the selection (recorded in the run directory)
    payload = run_json("train", data, "--algo", "ev2bc", "--weights", "ev-cluster", "--features", "policy-mixture",
                       "--k-rule", "one-se", "--score", "coverage", "--updates", "10", "--eval-episodes", "0",
                       "--run-dir", str(tmp_path / "run"))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["weights"]["selection"]["features"] == "policy-mixture"
    assert config["weights"]["selection"]["k_rule"] == "one-se"
    follows = {row["id"]: row["true_level"] == "expert" for row in reports["policy-mixture"]["table"]}
    kept = {i for i, v in payload["values"].items() if v > 0}
    assert kept and np.mean([follows[i] for i in kept]) > 0.9
    result = runner.invoke(app, ["train", data, "--algo", "ev2bc", "--features", "policy-mixture"])
    assert result.exit_code == 2 and "belong to --weights ev-cluster" in result.output


# ---------------------------------------------------------------------------------------
# where `value` writes, and when it says the method does not fit the data
# ---------------------------------------------------------------------------------------


def _files(root: Path) -> dict:
    return {p.relative_to(root): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_value_writes_csv_json_and_plot_beside_the_dataset(population, tmp_path):
    before = _files(population)
    report = run_json("value", str(population), "--score", "v_final", "--out", str(tmp_path / "vals"))
    out = tmp_path / "vals"
    assert report["out"] == str(out) and _files(population) == before  # nothing written into the dataset
    assert sorted(Path(p).name for p in report["files"]) == ["values.csv", "values.json", "values.png"]
    assert json.loads((out / "values.json").read_text())["table"] == report["table"]
    rows = list(csv.DictReader((out / "values.csv").open()))
    assert [r["id"] for r in rows] == [str(r["id"]) for r in report["table"]]
    assert [float(r["value"]) for r in rows] == pytest.approx([r["value"] for r in report["table"]])
    assert [r["true_level"] for r in rows] == [r["true_level"] for r in report["table"]]
    assert not list(tmp_path.glob(".vals*"))  # no temporaries left

    # an existing output is kept unless --overwrite, checked before any work
    stamp = _files(out)
    result = runner.invoke(app, ["value", str(population), "--score", "v_final", "--out", str(out)])
    assert result.exit_code == 2 and "not empty (pass --overwrite" in result.stderr and _files(out) == stamp
    again = run_json("value", str(population), "--score", "v_final", "--out", str(out), "--overwrite")
    assert again["table"] == report["table"] and (out / "values.png").is_file()


def test_value_refuses_outputs_inside_the_dataset_or_over_foreign_files(population, tmp_path):
    before = _files(population)
    for target in (population / "values", population):
        result = runner.invoke(app, ["value", str(population), "--out", str(target)])
        assert result.exit_code == 2 and "inside the dataset directory" in result.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["value", str(population), "--out", str(mine), "--overwrite"])
    assert result.exit_code == 2 and "not written by `teamsift value`" in result.stderr
    assert (mine / "notes.txt").read_text() == "keep me" and _files(population) == before


def _ids_dataset(path, agent_ids, seed=0):
    """A tiny dataset whose only interesting part is who played in which episode."""
    from teamsift import data
    from teamsift.data.testing import make_arrays, tiny_spec

    agent_ids = np.asarray(agent_ids)
    e, a = agent_ids.shape
    arrays = make_arrays(tiny_spec(num_agents=a), [3] * e, seed=seed, behaviour=False)
    arrays["agent_ids"] = agent_ids
    return data.load_dataset(data.write_dataset(path, **arrays))


def test_guidance_ev_on_anonymised_and_fixed_slot_data(tmp_path):
    from teamsift.value.guidance import UnsuitableMethod, advise

    anonymous = _ids_dataset(tmp_path / "anon", [[f"e{e}_s{s}" for s in range(3)] for e in range(6)])
    with pytest.raises(UnsuitableMethod, match=r"one episode only \(18 ids over 6 episodes.*--method ev-cluster.*"
                                                r"--method ardnem"):
        advise(anonymous, "ev")
    assert advise(anonymous, "ev-cluster") == [] and advise(anonymous, "ardnem") == []

    fixed = _ids_dataset(tmp_path / "fixed", [["ann", "bob", "cy"]] * 6)
    for method in ("ev", "ev-cluster"):
        with pytest.raises(UnsuitableMethod, match=r"fixed slots.*undefined.*Not identifiable.*Identifiable.*ardnem"):
            advise(fixed, method)
    [warning] = advise(fixed, "ardnem")
    assert "cannot separate the individual from its slot" in warning

    # a mixed population: values stand, with a word on the ids they cannot cover
    mixed = _ids_dataset(tmp_path / "mixed", [["ann", "bob", "x0"], ["ann", "cy", "x1"], ["ann", "bob", "cy"],
                                              ["ann", "cy", "bob"]])
    once, = [w for w in advise(mixed, "ev") if "one episode only" in w]
    everywhere, = [w for w in advise(mixed, "ev") if "every episode" in w]
    assert "2 of 5 individuals" in once and "x0, x1" in once and "1 of 5 individuals" in everywhere


def test_guidance_from_the_cli(tmp_path):
    _ids_dataset(tmp_path / "anon", [[f"e{e}_s{s}" for s in range(3)] for e in range(6)])
    result = runner.invoke(app, ["value", str(tmp_path / "anon")])
    assert result.exit_code == 2 and "--method ev-cluster" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "anon-values-ev").exists()

    _ids_dataset(tmp_path / "mixed", [["ann", "bob", "x0"], ["ann", "cy", "x1"], ["bob", "cy", "ann"],
                                      ["cy", "bob", "dan"], ["dan", "bob", "cy"]])
    result = runner.invoke(app, ["value", str(tmp_path / "mixed"), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["warnings"]) == 1 and "x0, x1" in report["warnings"][0]
    assert report["out"] == str(tmp_path / "mixed-values-ev")  # the default: beside the dataset
    assert "warning: ev: 2 of 6 individuals appear in one episode only" in result.stderr


def test_inspect_writes_its_plot_beside_the_dataset_never_into_it(tmp_path):
    ds = _ids_dataset(tmp_path / "ds", [["ann", "bob", "cy"], ["bob", "cy", "dan"]]).path
    before = _files(ds)
    summary = run_json("inspect", str(ds))
    assert summary["plot"] == str(tmp_path / "ds-summary.png") and (tmp_path / "ds-summary.png").is_file()
    result = runner.invoke(app, ["inspect", str(ds)])
    assert result.exit_code == 2 and "already exists (pass --overwrite" in result.stderr
    assert run_json("inspect", str(ds), "--overwrite")["plot"] == summary["plot"]
    result = runner.invoke(app, ["inspect", str(ds), "--plot", str(ds / "summary.png")])
    assert result.exit_code == 2 and "inside the dataset directory" in result.stderr
    assert _files(ds) == before
