"""Behaviour-policy pools: SIT's recipe (Appendix C.2) for policies of known quality.

1. Train a joint policy online (MAPPO, `teamsift.collect.ppo`) and keep checkpoints at
   fixed intervals, the untrained initial network included.
2. Evaluate every checkpoint as a joint policy, and a uniformly random policy.
3. Cut the return range from the random policy to the best checkpoint into thirds
   (SIT Tables 4–6): checkpoints below the first cut form the `random` pool, between the
   cuts the `medium` pool, above the second cut the `expert` pool. Cuts can be given
   explicitly instead.

A pool set is stored in one directory per environment:

    <root>/<env_id>/pools.json          metadata, evaluated returns, levels (human-readable)
    <root>/<env_id>/checkpoints.msgpack actor parameters of every checkpoint, stacked

Where pools are looked for, in order (`search_roots`; the first holding the environment's
pools wins):

1. the directory given explicitly (`--pools DIR`, `root=`): only there;
2. `$TEAMSIFT_POOLS`, when set;
3. `./pools` in the current directory (where `teamsift pools train` writes by default);
4. the pools shipped with teamsift: `teamsift/pools` inside an installed package, or
   `pools/` at the root of a source checkout.

New pools are written to `--dir`, else `$TEAMSIFT_POOLS`, else `./pools` (`default_root`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from teamsift.collect.composition import LEVELS
from teamsift.envs.base import Env
from teamsift.evaluate import ScoreSummary, evaluate
from teamsift.fileio import atomic_write_bytes, atomic_write_text
from teamsift.nets import AgentNetConfig, CheckpointBank, RandomPolicy

# Checkpoints kept per training run: MAPPO learns the MPE and SMAX tasks within a few
# updates, so a dense grid is needed for every return third to receive checkpoints.
POOL_CHECKPOINTS = 41

POOLS_FORMAT = "teamsift-pools"
POOLS_FORMAT_VERSION = 1


class PoolError(ValueError):
    """Missing, corrupt or unusable pools; the message says which and what to do."""


def default_root() -> Path:
    """Where new pools are written: `$TEAMSIFT_POOLS`, else `./pools`."""
    return Path(os.environ.get("TEAMSIFT_POOLS") or "pools")


def shipped_root() -> Path | None:
    """The pools shipped with teamsift: `teamsift/pools` in an installed package (package
    data), or `pools/` at the root of the source checkout teamsift is imported from."""
    package = Path(__file__).resolve().parents[1]
    if (package / "pools").is_dir():
        return package / "pools"
    checkout = package.parents[1]
    if package.parent.name == "src" and (checkout / "pyproject.toml").is_file() and (checkout / "pools").is_dir():
        return checkout / "pools"
    return None


def search_roots(root: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """The pool directories looked in, in order, each with where it comes from."""
    if root is not None:
        return [(Path(root), "given")]
    roots = []
    if os.environ.get("TEAMSIFT_POOLS"):
        roots.append((Path(os.environ["TEAMSIFT_POOLS"]), "$TEAMSIFT_POOLS"))
    roots.append((Path("pools"), "current directory"))
    shipped = shipped_root()
    if shipped is not None:
        roots.append((shipped, "shipped with teamsift"))
    return roots


def _has_pools(directory: Path) -> bool:
    return (directory / "pools.json").is_file() and (directory / "checkpoints.msgpack").is_file()


def find_pools(env_id: str, root: str | os.PathLike | None = None) -> Path:
    """The directory holding `env_id`'s pools: the first of `search_roots(root)` that has them.

    Raises PoolError listing every place looked in and the environments that have pools."""
    roots = search_roots(root)
    for base, _ in roots:
        if _has_pools(base / env_id):
            return base / env_id
    looked = "; ".join(f"{(base / env_id).absolute()} ({origin})" for base, origin in roots)
    if root is None and shipped_root() is None:
        looked += "; this installation ships no pools"
    available = list_pools(root)
    hint = f"Pools exist for {', '.join(available)}" if available else "No pools there at all"
    raise PoolError(f"no pools for {env_id}; looked in {looked}. {hint}. Point --pools or $TEAMSIFT_POOLS at a "
                    f"pools directory, or train them: teamsift pools train {env_id}")


@dataclasses.dataclass
class PoolSet:
    """Checkpoints of one training run, each evaluated and given a level."""

    env_id: str
    env_kwargs: dict
    net: AgentNetConfig
    params: Any  # leaves [C, ...]
    steps: np.ndarray  # [C] env steps at each checkpoint
    returns: list[dict]  # per checkpoint: ScoreSummary as dict
    random_return: dict  # the uniform random policy's evaluation
    cuts: tuple[float, float]
    cut_rule: str
    levels: list[str]  # per checkpoint
    info: dict = dataclasses.field(default_factory=dict)  # algo, seed, timings, config

    @property
    def num_checkpoints(self) -> int:
        return len(self.levels)

    def members(self, level: str) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.levels) == level)

    def bank(self, deterministic: bool = False) -> CheckpointBank:
        return CheckpointBank(self.params, self.net, deterministic=deterministic)

    def require(self, levels) -> None:
        for level in set(levels):
            if len(self.members(level)) == 0:
                low, high = self.level_range(level)
                raise PoolError(
                    f"pool '{level}' of {self.env_id} is empty: no checkpoint has a return in [{low:.3f}, {high:.3f}). "
                    "Train longer or with more checkpoints (teamsift pools train), or set the cuts (--cuts)."
                )

    def level_range(self, level: str) -> tuple[float, float]:
        bounds = [-np.inf, self.cuts[0], self.cuts[1], np.inf]
        index = LEVELS.index(level)
        return bounds[index], bounds[index + 1]

    def summary(self) -> dict:
        return {
            "env_id": self.env_id,
            "checkpoints": self.num_checkpoints,
            "random_policy_return": self.random_return["mean"],
            "best_return": max(r["mean"] for r in self.returns),
            "cuts": list(self.cuts),
            "cut_rule": self.cut_rule,
            "pools": {
                level: [{"checkpoint": int(i), "step": int(self.steps[i]), "return": self.returns[i]["mean"],
                         "ci95": [self.returns[i]["ci95_low"], self.returns[i]["ci95_high"]]}
                        for i in self.members(level)]
                for level in LEVELS
            },
            "info": self.info,
        }


# --- cutting -------------------------------------------------------------------------------

def thirds(random_return: float, best_return: float) -> tuple[float, float]:
    """SIT's cuts: thirds of the range from the random policy to the best checkpoint."""
    span = best_return - random_return
    return random_return + span / 3.0, random_return + 2.0 * span / 3.0


THIRDS_RULE = "thirds of [random policy, best checkpoint] (SIT)"


def choose_cuts(random_return: float, means: np.ndarray, cuts) -> tuple[tuple[float, float], str]:
    """Explicit cuts as given, else SIT's thirds; returns (cuts, the rule's description)."""
    if cuts is None:
        return thirds(random_return, float(np.max(means))), THIRDS_RULE
    return (float(cuts[0]), float(cuts[1])), "explicit"


def assign_levels(returns: np.ndarray, cuts: tuple[float, float]) -> list[str]:
    low, high = cuts
    if high < low:
        raise PoolError(f"cuts must be increasing, got {cuts}")
    return [LEVELS[int(r >= low) + int(r >= high)] for r in np.asarray(returns)]


# --- building --------------------------------------------------------------------------------

def evaluate_checkpoints(env: Env, net: AgentNetConfig, params, key, episodes: int) -> list[ScoreSummary]:
    """Evaluate each checkpoint as a joint policy acting stochastically (as it does in datasets)."""
    bank = CheckpointBank(params, net)
    size = bank.size
    return [evaluate(env, bank.checkpoint(i), jax.random.fold_in(key, i), episodes).team_return for i in range(size)]


def build_pools(env: Env, net: AgentNetConfig, params, steps, key, *, episodes: int = 100,
                cuts: tuple[float, float] | None = None, info: dict | None = None) -> PoolSet:
    summaries = evaluate_checkpoints(env, net, params, jax.random.fold_in(key, 0), episodes)
    random_eval = evaluate(env, RandomPolicy.for_spec(env.spec), jax.random.fold_in(key, 1), episodes).team_return
    means = np.array([s.mean for s in summaries])
    cuts, rule = choose_cuts(random_eval.mean, means, cuts)
    return PoolSet(
        env_id=env.spec.env_id, env_kwargs=dict(env.kwargs), net=net, params=params,
        steps=np.asarray(steps, np.int64), returns=[dataclasses.asdict(s) for s in summaries],
        random_return=dataclasses.asdict(random_eval), cuts=(float(cuts[0]), float(cuts[1])), cut_rule=rule,
        levels=assign_levels(means, cuts), info=dict(info or {}),
    )


def evaluate_level(env: Env, pools: PoolSet, level: str, key, episodes: int = 200) -> ScoreSummary:
    """Evaluate a pool as datasets use it: in every episode each slot plays a checkpoint
    drawn uniformly from the pool (the composition `[all level]`)."""
    pools.require([level])
    members = pools.members(level)
    picks = jax.random.randint(key, (episodes, env.spec.num_agents), 0, len(members))
    assignment = members[np.asarray(picks)]
    return evaluate(env, pools.bank(), jax.random.fold_in(key, 1), episodes, assignment=assignment).team_return


def evaluate_levels(env: Env, pools: PoolSet, key, episodes: int = 200) -> dict[str, dict]:
    """`evaluate_level` for every non-empty pool."""
    return {level: dataclasses.asdict(evaluate_level(env, pools, level, jax.random.fold_in(key, i), episodes))
            for i, level in enumerate(LEVELS) if len(pools.members(level))}


def recut(pools: PoolSet, cuts: tuple[float, float] | None) -> PoolSet:
    """The same checkpoints with other cuts (None: back to SIT's thirds)."""
    means = np.array([r["mean"] for r in pools.returns])
    cuts, rule = choose_cuts(pools.random_return["mean"], means, cuts)
    return dataclasses.replace(pools, cuts=cuts, cut_rule=rule, levels=assign_levels(means, cuts),
                               info={k: v for k, v in pools.info.items() if k != "level_returns"})


def train_pools(env: Env, key, *, config=None, episodes: int = 100, cuts=None, progress: bool = True,
                run=None) -> PoolSet:
    """Train MAPPO on `env` (its DEFAULT_CONFIGS entry unless `config`), then cut pools.

    The training runs through `teamsift.engine.fit` (`ppo.train`); `run` (an
    `engine.RunConfig` of one seed, updates = config.num_updates) gives it a run directory,
    checkpoints and resumption. The pool checkpoints are the run's snapshots."""
    from teamsift.collect import ppo

    config = config or ppo.config_for(env.spec.env_id, num_checkpoints=POOL_CHECKPOINTS)
    if run is not None and run.seeds != 1:
        raise ValueError(f"RunConfig.seeds = {run.seeds}: a pool set holds the checkpoints of one training run")
    start = time.perf_counter()
    result = ppo.train(config, env, jax.random.fold_in(key, 0), progress=progress, run=run)
    jax.block_until_ready(result.checkpoints)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    info = {"algo": config.algo, "config": _jsonable(dataclasses.asdict(config)), "train_seconds": train_seconds,
            "timesteps": int(result.checkpoint_steps[-1])}
    pools = build_pools(env, result.net, result.checkpoints, result.checkpoint_steps, jax.random.fold_in(key, 1),
                        episodes=episodes, cuts=cuts, info=info)
    pools.info["level_returns"] = evaluate_levels(env, pools, jax.random.fold_in(key, 2), max(episodes, 200))
    pools.info["evaluate_seconds"] = time.perf_counter() - start
    return pools


# --- storage -------------------------------------------------------------------------------

def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


def pool_dir(env_id: str, root: str | os.PathLike | None = None) -> Path:
    """Where `save_pools` writes `env_id`'s pools: under `root`, else `default_root()`."""
    return Path(root or default_root()) / env_id


def save_pools(pools: PoolSet, root: str | os.PathLike | None = None) -> Path:
    directory = pool_dir(pools.env_id, root)
    blob = serialization.msgpack_serialize(serialization.to_state_dict(jax.tree.map(np.asarray, pools.params)))
    atomic_write_bytes(directory / "checkpoints.msgpack", blob)
    meta = {
        "format": POOLS_FORMAT, "format_version": POOLS_FORMAT_VERSION, "env_id": pools.env_id,
        "env_kwargs": pools.env_kwargs, "net": _jsonable(dataclasses.asdict(pools.net)),
        "steps": pools.steps.tolist(), "returns": pools.returns, "random_policy_return": pools.random_return,
        "cuts": list(pools.cuts), "cut_rule": pools.cut_rule, "levels": pools.levels, "info": _jsonable(pools.info),
    }
    atomic_write_text(directory / "pools.json", json.dumps(meta, indent=1) + "\n")
    return directory


def load_pools(env_id: str, root: str | os.PathLike | None = None) -> PoolSet:
    """`env_id`'s pools from `root`, or from the first of `search_roots()` that has them."""
    directory = find_pools(env_id, root)
    meta_path, blob_path = directory / "pools.json", directory / "checkpoints.msgpack"
    try:
        meta = json.loads(meta_path.read_text())
        params = serialization.msgpack_restore(blob_path.read_bytes())
    except Exception as exc:
        raise PoolError(f"{directory}: corrupt pool files ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != POOLS_FORMAT or meta.get("format_version") != POOLS_FORMAT_VERSION:
        raise PoolError(f"{meta_path}: field 'format' expected {POOLS_FORMAT!r} version {POOLS_FORMAT_VERSION}, "
                        f"found {meta.get('format')!r} version {meta.get('format_version')!r}")
    net = AgentNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["net"].items()})
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(params)}
    if sizes != {len(meta["levels"])}:
        raise PoolError(f"{blob_path}: expected {len(meta['levels'])} stacked checkpoints, found leading sizes {sizes}")
    return PoolSet(
        env_id=meta["env_id"], env_kwargs=meta.get("env_kwargs", {}), net=net,
        params=jax.tree.map(jnp.asarray, params), steps=np.asarray(meta["steps"], np.int64),
        returns=meta["returns"], random_return=meta["random_policy_return"], cuts=tuple(meta["cuts"]),
        cut_rule=meta["cut_rule"], levels=list(meta["levels"]), info=meta.get("info", {}),
    )


def list_pools(root: str | os.PathLike | None = None) -> list[str]:
    """The environments with pools in `root`, or in any of `search_roots()`."""
    names = set()
    for base, _ in search_roots(root):
        if base.is_dir():
            names.update(p.name for p in base.iterdir() if _has_pools(p))
    return sorted(names)
