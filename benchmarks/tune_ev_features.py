"""EV-Clustering behaviour features on tuning draws: the draws the policy-mixture settings
were chosen on, apart from those `run_valuation.py` reports.

Anonymised pool populations as in `run_valuation.py` (30 checkpoints, 10 per level,
--appearances episodes each, one-time ids), drawn from root key 1 with `fold_in` 100,
101, 102 — the reported rows use root keys 0 (run_valuation.py) and 2–4
(run_valuation_appearances.py). Prints, per draw and setting, the number of clusters
chosen by held-out error, Spearman of value vs level and AUC expert vs random. A setting
holds FeatureConfig fields and, optionally, "k_rule" (ClusterConfig's).

    python benchmarks/tune_ev_features.py [--envs CN_3ls3l,PP_3p1p,smax_3m] [--draws 100,101,102]
        [--appearances 40] [--settings '[{"kind": "histogram"}, {"kind": "policy-mixture"}]']
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import jax

from teamsift.collect.datasets import generate_population, pool_population
from teamsift.collect.pools import load_pools
from teamsift.collect.suites import ENV_KWARGS
from teamsift.data import load_dataset
from teamsift.envs import make
from teamsift.value.accuracy import ground_truth_levels
from teamsift.value.clustering import ClusterConfig, FeatureConfig, ev_cluster
from teamsift.value.report import accuracy_report

ROOT = Path(__file__).resolve().parents[1]
TUNING_ROOT = 1  # run_valuation.py reports draws of root key 0


def tuning_population(env_id: str, draw: int, out: Path, appearances: int = 40) -> Path:
    key = jax.random.fold_in(jax.random.key(TUNING_ROOT), draw)
    env = make(env_id, **ENV_KWARGS.get(env_id, {}))
    bank, policy, levels = pool_population(load_pools(env_id, ROOT / "pools"), 30, jax.random.fold_in(key, 0))
    return generate_population(env, bank, policy, levels, jax.random.fold_in(key, 1), out, appearances=appearances,
                               anonymise=True, overwrite=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", default="CN_3ls3l,PP_3p1p,smax_3m")
    parser.add_argument("--draws", default="100,101,102")
    parser.add_argument("--appearances", type=int, default=40, help="episodes per individual")
    parser.add_argument("--settings", default='[{"kind": "histogram"}, {"kind": "policy-mixture"}, '
                                              '{"kind": "policy-mixture", "mixture_components": 3}]',
                        help="JSON list of FeatureConfig keyword arguments")
    args = parser.parse_args(argv)
    settings = json.loads(args.settings)
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in args.envs.split(","):
            for draw in map(int, args.draws.split(",")):
                dataset = load_dataset(tuning_population(env_id, draw, Path(tmp) / f"{env_id}-{draw}",
                                                         args.appearances))
                for setting in settings:
                    k_rule = setting.get("k_rule", "one-se")
                    features = FeatureConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in setting.items()
                                                if k != "k_rule"})
                    start = time.perf_counter()
                    result = ev_cluster(dataset, None, jax.random.fold_in(jax.random.key(TUNING_ROOT), 500 + draw),
                                        config=ClusterConfig(features=features, k_rule=k_rule))
                    accuracy = accuracy_report(result.ids, result.values, ground_truth_levels(dataset))
                    print(json.dumps({"env": env_id, "draw": draw, "appearances": args.appearances,
                                      "features": setting, "clusters": result.num_clusters,
                                      "spearman": accuracy.get("spearman"), "auc": accuracy.get("auc_expert_vs_random"),
                                      "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
