"""Valuation: who in a multi-agent dataset was good.

* Exchange Values (`exchange`): exact, sampled (with a simulator) and the dataset
  estimator with standard errors, also over Parquet episode tables larger than memory
  (`tables`, with DuckDB); EV-Clustering (`clustering`) for anonymised data.
* Shapley values (`shapley`) by enumeration or permutation sampling.
* Reward decomposition (`ardnem`), SIT Stage I (its priorities drive the DPER sampler,
  `teamsift.data.samplers`).
* Weights from any valuation for any learner (`weights`).
* Accuracy against ground truth (`accuracy`), selection rules for filtered imitation
  (`selection`), simulators that score groups (`simulate`).
"""

from teamsift.value.accuracy import (LEVEL_ORDER, aligned, auc, average_ranks, estimation_error, ground_truth_levels,
                                     level_ranks, spearman, true_individuals)
from teamsift.value.clustering import (BehaviourFeatures, ClusterConfig, ClusterResult, FeatureConfig,
                                       behaviour_features, ev_cluster)
from teamsift.value.exchange import (EVResult, all_groups, dataset_ev, dataset_ev_from, exact_ev,
                                     index_ids, sample_groups, sampled_ev)
from teamsift.value.shapley import exact_shapley, sampled_shapley
from teamsift.value.simulate import group_scorer
from teamsift.value.tables import table_ev, table_statistics
