"""One registry of learners: name → (hyperparameters, learner, paper), for the CLI, the
benchmarks and the docs (`teamsift algos`).

An entry says what the algorithm is made of: the learner that `fit` runs, its
hyperparameter dataclass (the paper's defaults), the budget the paper trains for, the
sampler and valuation weights it uses by default (EV2BC is BC on Exchange-Value weights,
SIT is ARDNEM + DPER + its own update), and the stages that run before it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from teamsift.data.dper import DPERConfig
from teamsift.data.pjap import PJAPConfig
from teamsift.value.weights import SelectionConfig

KINDS = ("offline", "imitation", "valuation", "online")


@dataclasses.dataclass(frozen=True)
class Algorithm:
    name: str  # the CLI name (`--algo`)
    title: str  # as the paper writes it
    paper: str  # where it comes from
    summary: str  # one line
    config: Callable[[], Any]  # the hyperparameters with the paper's defaults
    learner: Callable | None  # (config, dataset, ...) -> engine.Learner
    kind: str = "offline"
    actions: str = "any"  # discrete | continuous | any
    updates: int = 15_000  # the paper's budget (imitation: environment steps)
    log_every: int = 500
    stages: tuple[tuple[str, int], ...] = ()  # earlier stages and their budgets, e.g. (("ardnem", 20_000),)
    sampler: str = "uniform"  # the default sampler
    sampler_config: Any = None  # its config (DPERConfig, PJAPConfig)
    weights: str | None = None  # the default valuation weights (ev, ev-cluster, group, ardnem)
    selection: SelectionConfig | None = None  # how the weights select
    split_key: bool = False  # (stage key, main key) = split(key) even without a stage (as the learner always did)

    def defaults(self) -> dict:
        """What `teamsift algos --json` lists."""
        config = self.config()
        return {"name": self.name, "title": self.title, "paper": self.paper, "summary": self.summary,
                "kind": self.kind, "actions": self.actions, "updates": self.updates, "log_every": self.log_every,
                "stages": dict(self.stages), "sampler": self.sampler,
                "sampler_config": None if self.sampler_config is None else dataclasses.asdict(self.sampler_config),
                "weights": self.weights,
                "selection": None if self.selection is None else dataclasses.asdict(self.selection),
                "config_class": type(config).__name__, "hyperparameters": dataclasses.asdict(config)}


def _entries() -> dict[str, Algorithm]:
    from teamsift.algos import bc, icq, mabcq, macql, maddpg_cql, omar, sit, td3bc
    from teamsift.value import ardnem

    entries = [
        Algorithm("bc", "BC", "the baseline of every paper here (SIT Table 11 settings)",
                  "behaviour cloning of every agent decision, parameter-shared agent network",
                  bc.BCConfig, bc.learner),
        Algorithm("ev2bc", "EV2BC", "Select to Perfect (Definition 4.5; methods.md §1)",
                  "behaviour cloning of the individuals whose Exchange Value is above 0",
                  bc.BCConfig, bc.learner, weights="ev", selection=SelectionConfig(), split_key=True),
        Algorithm("group_bc", "group-BC", "Select to Perfect's selection baseline (methods.md §1)",
                  "behaviour cloning of the top half of episodes by team score",
                  bc.BCConfig, bc.learner, weights="group", selection=SelectionConfig(fraction=0.5)),
        Algorithm("icq", "ICQ-MA", "Yang et al. 2021; SIT appendix B eq. 14",
                  "implicit constraint Q-learning: a critic that only evaluates the data's actions",
                  icq.ICQConfig, icq.learner, actions="discrete"),
        Algorithm("mabcq", "MABCQ", "SIT appendix B eq. 12 (discrete BCQ)",
                  "Q-learning among the actions a behaviour model finds familiar",
                  mabcq.MABCQConfig, mabcq.learner, actions="discrete", stages=(("behaviour", 15_000),)),
        Algorithm("macql", "MACQL", "SIT appendix B eq. 13 (CQL)",
                  "conservative Q-learning with a linear mixer",
                  macql.MACQLConfig, macql.learner, actions="discrete"),
        Algorithm("sit", "SIT", "Tian et al., AAAI 2023 (Algorithm 1, Tables 10-11)",
                  "ARDNEM reward decomposition + DPER over individual trajectories + CRR actor with a GAT critic",
                  sit.SITConfig, sit.learner, stages=(("ardnem", 20_000),), sampler="dper",
                  sampler_config=DPERConfig(), split_key=True),
        Algorithm("td3bc", "TD3+BC", "Fujimoto & Gu 2021 (per agent)",
                  "TD3 with a behaviour-cloning term, per agent", td3bc.TD3BCConfig, td3bc.learner,
                  actions="continuous", updates=1_000_000, log_every=5_000),
        Algorithm("omar", "OMAR", "Pan et al., ICML 2022", "conservative critics and an actor rectified by CEM",
                  omar.OMARConfig, omar.learner, actions="continuous", updates=1_000_000, log_every=5_000),
        Algorithm("maddpg_cql", "MADDPG+CQL", "Tilbury et al. 2024 (og-marl's pjap branch)",
                  "twin centralised conservative critics, best response under data (BRUD)",
                  maddpg_cql.MADDPGCQLConfig, maddpg_cql.learner, actions="continuous", updates=500_000,
                  log_every=5_000),
        Algorithm("maddpg_cql_pjap", "MADDPG+CQL+PJAP", "Tilbury et al. 2024 (Proximal Joint-Action Prioritisation)",
                  "MADDPG+CQL drawing the windows whose joint action is near the current policy's",
                  maddpg_cql.MADDPGCQLConfig, maddpg_cql.learner, actions="continuous", updates=500_000,
                  log_every=5_000, sampler="pjap", sampler_config=PJAPConfig()),
        Algorithm("ardnem", "ARDNEM", "SIT Stage I (eqs. 1-6, Table 10)",
                  "attention reward decomposition with an ensemble: per-agent rewards, uncertainty, priorities",
                  ardnem.ARDNEMConfig, ardnem.learner, kind="valuation", updates=20_000),
    ]
    entries += _imitation_entries() + _online_entries()
    return {entry.name: entry for entry in entries}


def _imitation_entries() -> list[Algorithm]:
    from teamsift.algos import magail, mild2

    return [
        Algorithm("magail", "MAGAIL", "Song et al., NeurIPS 2018 (MILD²'s baseline)",
                  "adversarial imitation: MAPPO against a per-agent (or centralised) MLP discriminator",
                  magail.MAGAILConfig, None, kind="imitation", updates=0),
        Algorithm("mild2", "MILD²", "Big Picture Thinking (methods.md §3)",
                  "adversarial imitation: MAT against a transformer discriminator over all agents (Wasserstein)",
                  mild2.MILD2Config, None, kind="imitation", updates=0),
        Algorithm("mild2_gd", "MILD²-GD", "Big Picture Thinking (ablation without global dependencies)",
                  "MILD² with an independent per-agent discriminator",
                  lambda: mild2.MILD2Config(global_dependencies=False), None, kind="imitation", updates=0),
    ]


def _online_entries() -> list[Algorithm]:
    """The online trainers that build the behaviour pools (`teamsift pools train`); their
    budget is the config's total_timesteps, per environment (`ppo.config_for`)."""
    import dataclasses as dc

    from teamsift.collect import mat, ppo

    return [
        Algorithm("mappo", "MAPPO", "Yu et al. 2022 (PureJaxRL/JaxMARL style)",
                  "PPO with a centralised critic on the global state; the pools' behaviour policies",
                  ppo.PPOConfig, None, kind="online", updates=0),
        Algorithm("ippo", "IPPO", "de Witt et al. 2020", "PPO with a critic on each agent's own observation",
                  lambda: dc.replace(ppo.PPOConfig(), algo="ippo"), None, kind="online", updates=0),
        Algorithm("mat", "MAT", "Wen et al., NeurIPS 2022", "the Multi-Agent Transformer trained by PPO",
                  mat.MATConfig, None, kind="online", updates=0),
    ]


_REGISTRY: dict[str, Algorithm] | None = None


def algorithms() -> dict[str, Algorithm]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _entries()
    return _REGISTRY


def get(name: str) -> Algorithm:
    entries = algorithms()
    if name not in entries:
        raise ValueError(f"--algo: expected one of {', '.join(entries)}, got {name!r}")
    return entries[name]


def names(kind: str | None = None) -> tuple[str, ...]:
    return tuple(name for name, entry in algorithms().items() if kind is None or entry.kind == kind)
