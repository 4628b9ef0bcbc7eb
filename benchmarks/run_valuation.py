"""Valuation accuracy against ground truth, and EV estimator throughput.

Datasets (all from the committed pools, so every slot's true level is known):
* population datasets (Exchange-Value data): 30 individuals drawn from the random /
  medium / expert pools (10 each), groups of the environment's size, each individual
  in 40 episodes; and the same data anonymised (one-time ids, as the human data);
* SIT-style composition datasets (`100%[r,m,e]`-like medium datasets of the SIT suite).
Methods: ev (dataset estimator), ev-cluster (EV-Clustering on the anonymised data, K
chosen by held-out error; once with the action-histogram features, once with the
policy-mixture features, `FeatureConfig(kind="policy-mixture")`), ardnem (SIT Stage I: per-trajectory returns ĝ, averaged per
individual; Table 10's 20 000 updates, 300 with --quick). Accuracy: Spearman of value vs
level (random < medium < expert) and AUC of expert vs random, per individual (per
trajectory for ARDNEM's trajectory AUC).

    python benchmarks/run_valuation.py [--quick] [--only-populations]

Writes benchmarks/results/valuation-<device>.{md,json}. `--only-populations` reruns the
population rows only and merges them into the existing results (the ARDNEM rows take
about an hour on a 2-core CPU), keeping every other row and the command that made it.

The population draws here (root key 0) were never used to choose the policy-mixture
settings; those were chosen on other draws (root key 1, fold_in 100–102).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from teamsift.collect.datasets import generate_from_spec, generate_population, pool_population
from teamsift.collect.pools import load_pools
from teamsift.collect.suites import ENV_KWARGS, SIT_SUITE
from teamsift.data import load_dataset
from teamsift.envs import make
from teamsift.value.accuracy import ground_truth_levels
from teamsift.value.clustering import FEATURE_KINDS, ClusterConfig, FeatureConfig, ev_cluster
from teamsift.value.exchange import dataset_ev
from teamsift.value.report import accuracy_report, value_dataset

ROOT = Path(__file__).resolve().parents[1]
POPULATION_ENVS = ("CN_3ls3l", "smax_3m", "PP_3p1p")
COMPOSITION_ENVS = ("CN_3ls3l", "PP_3p1p", "smax_3s_vs_5z")


def population_datasets(env_id: str, key, workdir: Path, appearances: int) -> dict[str, Path]:
    env = make(env_id, **ENV_KWARGS.get(env_id, {}))
    pools = load_pools(env_id, ROOT / "pools")
    bank, policy, levels = pool_population(pools, 30, jax.random.fold_in(key, 0))
    out = {}
    for anonymise in (False, True):
        name = f"{env_id} population" + (" (anonymised)" if anonymise else "")
        out[name] = generate_population(env, bank, policy, levels, jax.random.fold_in(key, 1),
                                        workdir / name.replace(" ", "_"), appearances=appearances,
                                        anonymise=anonymise, overwrite=True,
                                        provenance={"individuals": "checkpoints drawn from pools",
                                                    "policy_of_individual": list(map(int, policy))})
    return out


def composition_dataset(env_id: str, key, workdir: Path, episodes: int) -> dict[str, Path]:
    env = make(env_id, **ENV_KWARGS.get(env_id, {}))
    pools = load_pools(env_id, ROOT / "pools")
    spec = SIT_SUITE[env_id]["medium"]
    name = f"{env_id} {spec}"
    return {name: generate_from_spec(env, pools, spec, episodes, key, workdir / env_id, overwrite=True)}


def measure(dataset_name: str, path: Path, method: str, key, **options) -> dict:
    dataset = load_dataset(path)
    start = time.perf_counter()
    report = value_dataset(dataset, method, key, **options)
    seconds = time.perf_counter() - start
    accuracy = report.get("accuracy", {})
    return {"dataset": dataset_name, "method": method, "episodes": dataset.num_episodes,
            "individuals": report.get("individuals"), "spearman": accuracy.get("spearman"),
            "auc": accuracy.get("auc_expert_vs_random"),
            "trajectory_auc": report.get("trajectory_accuracy", {}).get("auc_expert_vs_random"),
            "seconds": seconds}


def measure_clusters(dataset_name: str, path: Path, kind: str, key, k_rule: str = "one-se") -> dict:
    """EV-Clustering (K chosen by held-out error, `k_rule`) with behaviour features of `kind`."""
    dataset = load_dataset(path)
    start = time.perf_counter()
    result = ev_cluster(dataset, None, key, config=ClusterConfig(features=FeatureConfig(kind=kind), k_rule=k_rule))
    seconds = time.perf_counter() - start
    accuracy = accuracy_report(result.ids, result.values, ground_truth_levels(dataset))
    return {"dataset": dataset_name, "method": f"ev-cluster ({kind})", "episodes": dataset.num_episodes,
            "individuals": len(result.ids), "clusters": result.num_clusters, "spearman": accuracy.get("spearman"),
            "auc": accuracy.get("auc_expert_vs_random"), "trajectory_auc": None, "seconds": seconds}


def merge_rows(old_rows, new_rows):
    """`old_rows` with the rows of `new_rows` put in place (same dataset and method) or
    after the last row of their dataset."""
    rows = [dict(r) for r in old_rows]
    for new in new_rows:
        same = [i for i, r in enumerate(rows) if (r["dataset"], r["method"]) == (new["dataset"], new["method"])]
        if same:
            rows[same[0]] = new
            continue
        base = new["dataset"].replace(" (anonymised)", "")
        related = [i for i, r in enumerate(rows) if r["dataset"].replace(" (anonymised)", "") == base]
        rows.insert(related[-1] + 1 if related else len(rows), new)
    return rows


def ev_throughput(num_episodes: int, group_size: int, population: int, key) -> dict:
    ids = np.asarray(jax.random.randint(key, (num_episodes, group_size), 0, population))
    scores = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (num_episodes,)))
    dataset_ev(ids, scores)  # warm up
    start = time.perf_counter()
    dataset_ev(ids, scores)
    seconds = time.perf_counter() - start
    return {"episodes": num_episodes, "group_size": group_size, "population": population, "seconds": seconds,
            "episodes_per_second": num_episodes / seconds}


def render(rows, throughput, command, machine, rerun=None) -> str:
    def cell(x):
        return "—" if x is None else f"{x:.2f}"

    lines = ["# Valuation accuracy", "", f"Command: `{command}`"]
    if rerun:
        lines.append(f"Population rows (ev, ev-cluster) rerun with: `{rerun}`")
    lines += [f"Machine: {machine}", "",
              "| dataset | method | episodes | individuals | Spearman (level) | AUC expert vs random | "
              "trajectory AUC | runtime |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        method = r["method"] + (f", K = {r['clusters']}" if r.get("clusters") else "")
        lines.append(f"| {r['dataset']} | {method} | {r['episodes']} | {r['individuals']} | "
                     f"{cell(r['spearman'])} | {cell(r['auc'])} | {cell(r['trajectory_auc'])} | "
                     f"{r['seconds']:.1f} s |")
    lines += ["", "Anonymised data: every individual appears once under a one-time id; the truth is the level "
              "of the checkpoint that played. ev-cluster (histogram): action histograms per coarse observation "
              "bin; ev-cluster (policy-mixture): responsibilities of an EM mixture of two behaviour-cloning "
              "policies (docs/valuation.md). K: the number of clusters chosen by held-out error. The policy-mixture "
              "settings were chosen on other population draws (root key 1); these draws (root key 0) were not used "
              "to choose them. Spearman — : every value equal (one cluster).", "",
              f"EV dataset estimator: {throughput['episodes']:,} episodes × {throughput['group_size']} agents "
              f"({throughput['population']} individuals) in {throughput['seconds']:.2f} s = "
              f"{throughput['episodes_per_second']:,.0f} episodes/s."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--methods", default="ev,ev-cluster,ardnem")
    parser.add_argument("--only-populations", action="store_true",
                        help="rerun the population rows only; merge them into the existing results")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if not (args.only_populations and m == "ardnem")]
    key = jax.random.key(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i, env_id in enumerate(POPULATION_ENVS):
            for name, path in population_datasets(env_id, jax.random.fold_in(key, i), work,
                                                  10 if args.quick else 40).items():
                anonymised = "anonymised" in name
                if "ev" in methods and not anonymised:
                    rows.append(measure(name, path, "ev", jax.random.fold_in(key, 100 + i)))
                    print(json.dumps(rows[-1]), file=sys.stderr)
                if "ev-cluster" in methods and anonymised:
                    for kind in FEATURE_KINDS:
                        rows.append(measure_clusters(name, path, kind, jax.random.fold_in(key, 100 + i)))
                        print(json.dumps(rows[-1]), file=sys.stderr)
        if "ardnem" in methods:
            for i, env_id in enumerate(COMPOSITION_ENVS):
                for name, path in composition_dataset(env_id, jax.random.fold_in(key, 200 + i), work,
                                                      300 if args.quick else 2000).items():
                    for label, options in (("ardnem", {}), ("ardnem w/o attention", {"attention": False})):
                        row = measure(name, path, "ardnem", jax.random.fold_in(key, 300 + i),
                                      **options, **({"updates": 300} if args.quick else {}))
                        rows.append(dict(row, method=label))
                        print(json.dumps(rows[-1]), file=sys.stderr)
    device = jax.devices()[0].platform
    machine = f"{platform.processor() or platform.machine()}, JAX {jax.__version__} on {device}"
    command = "python benchmarks/run_valuation.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"valuation-{device}.json"
    rerun = None
    if args.only_populations:
        if not json_path.exists():
            raise SystemExit(f"--only-populations: expected existing results to merge into at {json_path}")
        old = json.loads(json_path.read_text())
        if old.get("machine") != machine:
            print(f"note: merging rows from {machine} into results from {old.get('machine')}", file=sys.stderr)
        # Rows of an earlier version named the histogram features' EV-Clustering "ev-cluster".
        old_rows = [dict(r, method="ev-cluster (histogram)") if r["method"] == "ev-cluster" else r for r in old["rows"]]
        rows = merge_rows(old_rows, rows)
        throughput, rerun, command = old["ev_throughput"], command, old["command"]
    else:
        throughput = ev_throughput(10**5 if args.quick else 10**6, 10, 1000, jax.random.fold_in(key, 999))
    text = render(rows, throughput, command, machine, rerun)
    json_path.write_text(json.dumps({"command": command, **({"population_rows_command": rerun} if rerun else {}),
                                     "machine": machine, "rows": rows, "ev_throughput": throughput}, indent=1))
    (args.out / f"valuation-{device}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
