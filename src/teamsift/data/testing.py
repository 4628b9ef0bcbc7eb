"""Small synthetic datasets and vaults for tests (of this layer and the ones above).

Nothing here depends on a real environment: specs are built with `EnvSpec(...)`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from teamsift.envs.base import EnvSpec


def tiny_spec(discrete: bool = True, num_agents: int = 3, obs_dim: int = 4, state_dim: int = 5,
              num_actions: int = 3, episode_length: int = 8, env_id: str = "tiny") -> EnvSpec:
    """A made-up spec: agents a0.., types alternating "x"/"y", last agent's obs narrower."""
    widths = tuple(obs_dim if i < num_agents - 1 else max(1, obs_dim - 1) for i in range(num_agents))
    return EnvSpec(
        env_id=env_id,
        agents=tuple(f"a{i}" for i in range(num_agents)),
        agent_types=tuple("xy"[i % 2] for i in range(num_agents)),
        obs_dim=obs_dim,
        obs_widths=widths,
        state_dim=state_dim,
        discrete=discrete,
        num_actions=num_actions,
        action_dims=(num_actions,) * num_agents,
        episode_length=episode_length,
        scores=("return", "coverage"),
    )


def make_arrays(spec: EnvSpec, lengths, seed: int = 0, *, scores: bool = True, behaviour: bool = True) -> dict:
    """Random but valid keyword arguments for `write_dataset` (minus out_dir)."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int64)
    n, e, a = int(lengths.sum()), len(lengths), spec.num_agents
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    last = starts + lengths - 1
    terminated = np.zeros(n, bool)
    truncated = np.zeros(n, bool)
    ends_terminal = rng.random(e) < 0.5
    terminated[last[ends_terminal]] = True
    truncated[last[~ends_terminal]] = True
    out = dict(
        spec=spec,
        obs=rng.normal(size=(n, a, spec.obs_dim)).astype(np.float32),
        state=rng.normal(size=(n, spec.state_dim)).astype(np.float32),
        reward=rng.normal(size=n).astype(np.float32),
        terminated=terminated,
        truncated=truncated,
        episode_lengths=lengths,
        final_obs=rng.normal(size=(e, a, spec.obs_dim)).astype(np.float32),
        final_state=rng.normal(size=(e, spec.state_dim)).astype(np.float32),
        agent_ids=np.asarray([[f"p{rng.integers(0, 5)}" for _ in range(a)] for _ in range(e)]),
        provenance={"seed": seed, "maker": "teamsift.data.testing"},
        notes="synthetic",
    )
    if spec.discrete:
        out["actions"] = rng.integers(0, spec.num_actions, size=(n, a)).astype(np.int32)
        avail = rng.random((n, a, spec.num_actions)) < 0.8
        np.put_along_axis(avail, out["actions"][..., None].astype(np.int64), True, axis=2)  # logged: available
        out["avail"] = avail
        out["final_avail"] = rng.random((e, a, spec.num_actions)) < 0.8
    else:
        out["actions"] = rng.uniform(-1, 1, size=(n, a, spec.num_actions)).astype(np.float32)
    if scores:
        out["scores"] = {"coverage": rng.uniform(0, 1, size=e), "incidents": rng.integers(0, 4, size=e).astype(float)}
    if behaviour:
        levels = np.asarray(["random", "medium", "expert"])
        out["behaviour"] = levels[rng.integers(0, 3, size=(e, a))]
        out["policy_ids"] = np.char.add(out["behaviour"], "-0")
    return out


def random_dataset(path: str | os.PathLike, discrete: bool = True, seed: int = 0, episodes: int = 40,
                   episode_length: int = 9):
    """A loaded `tiny_spec` dataset of random but valid steps, with episode lengths drawn from
    1 … episode_length (one-step episodes included): lengths from `seed`, values from seed + 1."""
    from teamsift.data.format import load_dataset, write_dataset

    spec = tiny_spec(discrete=discrete, episode_length=episode_length)
    lengths = np.random.default_rng(seed).integers(1, episode_length + 1, size=episodes)
    return load_dataset(write_dataset(path, **make_arrays(spec, lengths, seed=seed + 1)))


def write_flashbax_vault(vault_dir: str | os.PathLike, leaves: Mapping[str, np.ndarray], vault_index: int,
                         *, version: float = 1.2, time_capacity: int | None = None, extra_metadata=None) -> Path:
    """Write a vault in flashbax's on-disk layout (metadata "version" 1.x) with tensorstore.

    `leaves` maps dotted leaf paths ("observations", "infos.state", ...) to arrays
    (B, T, ...); each goes to a zarr array at key "<path>." of one OCDBT store rooted at
    `vault_dir` (as flashbax names them), with a time axis of `time_capacity` (default
    the arrays' T; flashbax uses 10**13) of which `vault_index` steps are marked written.
    """
    import tensorstore as ts

    root = Path(vault_dir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    shapes: dict = {}
    dtypes: dict = {}
    for path, arr in leaves.items():
        node_s, node_d = shapes, dtypes
        parts = path.split(".")
        for p in parts[:-1]:
            node_s, node_d = node_s.setdefault(p, {}), node_d.setdefault(p, {})
        node_s[parts[-1]] = str(tuple(arr.shape))
        node_d[parts[-1]] = np.dtype(arr.dtype).name
    meta = {"version": version, "structure_shape": shapes, "structure_dtype": dtypes, **(extra_metadata or {})}
    (root / "metadata.json").write_text(json.dumps(meta))

    def spec(name):
        return {"driver": "zarr", "kvstore": {"driver": "ocdbt", "base": f"file://{root}", "path": name},
                "metadata": {"compressor": {"id": "gzip", "level": 5}}}

    for path, arr in leaves.items():
        cap = time_capacity or arr.shape[1]
        ds = ts.open(spec(path + "."), shape=(arr.shape[0], cap, *arr.shape[2:]), dtype=arr.dtype, create=True).result()
        ds[:, : arr.shape[1]].write(arr).result()
    index = ts.open(spec("vault_index"), dtype=np.int32, shape=(1,), create=True).result()
    index.write(np.asarray([vault_index], np.int32)).result()
    return root


def contribution_dataset(path: str | os.PathLike, terms: np.ndarray, hit_rate: Mapping[str, float], *,
                         episodes: int, length: int = 10, width: int = 6, seed: int = 0,
                         agent_types: tuple[str, ...] = ("x", "x", "y", "y"), random_final_obs: bool = False):
    """A dataset whose team reward is the sum of individual contributions, with known levels.

    Each episode's slot levels are the row `terms[e % len(terms)]`; at every step an agent
    scores 1 when its binary action matches a target read off its own observation
    (obs[..., 0] > 0), with probability `hit_rate[level]`. The reward decomposition and SIT
    tests use it: the good agents are known, and only the team reward is recorded.
    """
    from teamsift.data.format import load_dataset, write_dataset

    terms = np.asarray(terms)
    rng = np.random.default_rng(seed)
    a = terms.shape[1]
    spec = EnvSpec(env_id="contribution", agents=tuple(f"a{i}" for i in range(a)), agent_types=agent_types,
                   obs_dim=width, obs_widths=(width,) * a, state_dim=a * width, discrete=True, num_actions=2,
                   action_dims=(2,) * a, episode_length=length)
    levels = terms[np.arange(episodes) % len(terms)]  # [E, A]
    n = episodes * length
    obs = rng.normal(size=(n, a, width)).astype(np.float32)
    target = (obs[..., 0] > 0).astype(np.int32)
    hit = rng.random((n, a)) < np.vectorize(hit_rate.get)(np.repeat(levels, length, axis=0))
    truncated = np.zeros(n, bool)
    truncated[length - 1::length] = True
    final_obs = (rng.normal(size=(episodes, a, width)) if random_final_obs else np.zeros((episodes, a, width)))
    return load_dataset(write_dataset(
        path, spec=spec, obs=obs, state=obs.reshape(n, -1), actions=np.where(hit, target, 1 - target),
        reward=hit.sum(axis=1).astype(np.float32), terminated=np.zeros(n, bool), truncated=truncated,
        episode_lengths=np.full(episodes, length), final_obs=final_obs.astype(np.float32),
        final_state=np.zeros((episodes, a * width), np.float32), behaviour=levels))


def cue_dataset(path: str | os.PathLike, seed: int = 0, episodes: int = 60, length: int = 20,
                levels: Mapping[str, float] | None = None):
    """Anonymised groups of 3 with two kinds of individual: a "follower" acts on a cue (the
    quadrant of observation dims 6–7), a "random" one acts uniformly. The observations
    sit in 4 far-apart blobs (dims 0–5) that the histogram's observation bins find, and
    inside every blob the cue is independent of the blob, so both kinds have the same
    uniform action histogram in every bin. Each follower adds 1 to the episode's score.

    `levels` (level -> probability of acting on the cue at each step, e.g. {"random": 0,
    "medium": 0.5, "expert": 0.9}) makes graded kinds instead, drawn uniformly per slot;
    each adds its probability to the score."""
    from teamsift.data.format import load_dataset, write_dataset

    rng = np.random.default_rng(seed)
    spec = tiny_spec(num_agents=3, obs_dim=8, num_actions=4, episode_length=length)
    arrays = make_arrays(spec, [length] * episodes, seed=seed)
    steps = episodes * length
    if levels is None:
        follower = rng.random((episodes, 3)) < 0.5
        names, follow = np.where(follower, "expert", "random"), follower.astype(np.float64)
    else:
        kind = rng.integers(0, len(levels), (episodes, 3))
        names, follow = np.asarray(list(levels))[kind], np.asarray(list(levels.values()), np.float64)[kind]
    blobs = 10.0 * rng.normal(size=(4, 6))
    obs = np.concatenate([blobs[rng.integers(0, 4, (steps, 3))] + rng.normal(0.0, 0.3, (steps, 3, 6)),
                          rng.normal(size=(steps, 3, 2))], axis=2).astype(np.float32)
    cue = 2 * (obs[..., 6] > 0) + (obs[..., 7] > 0)
    acting = np.repeat(follow, length, axis=0) if levels is None else \
        rng.random((steps, 3)) < np.repeat(follow, length, axis=0)
    actions = np.where(acting, cue, rng.integers(0, 4, (steps, 3))).astype(np.int32)
    arrays.update(obs=obs, actions=actions, avail=np.ones((steps, 3, 4), bool),
                  agent_ids=np.array([[f"anon{e}_{s}" for s in range(3)] for e in range(episodes)]),
                  behaviour=names, policy_ids=np.where(follow > 0, "cue", "uniform"),
                  scores={"coverage": follow.sum(axis=1) + rng.normal(0.0, 0.5, episodes)})
    return load_dataset(write_dataset(path, **arrays))


def continuous_contribution_target(obs: np.ndarray, action_dim: int, scale: float = 0.8) -> np.ndarray:
    """The good action a*(o) = scale · tanh(o[..., :action_dim]) of `continuous_contribution_dataset`."""
    return (scale * np.tanh(np.asarray(obs, np.float64)[..., :action_dim])).astype(np.float32)


def continuous_contribution_dataset(path: str | os.PathLike, terms: np.ndarray, noise: Mapping[str, float | None], *,
                                    episodes: int, length: int = 5, width: int = 3, action_dim: int = 2,
                                    seed: int = 0, agent_types: tuple[str, ...] = ("x", "x", "y", "y"),
                                    random_final_obs: bool = True):
    """The continuous analogue of `contribution_dataset`: a short-horizon game of independent
    contextual bandits whose team reward is the sum of individual contributions.

    Observations are i.i.d. N(0, 1) at every step; agent i's good action is
    a*(o_i) = 0.8·tanh(o_i[:D]) (`continuous_contribution_target`), its contribution
    1 − mean_d (a_i − a*(o_i))², and the team reward their sum. Episode e's slot levels are
    the row `terms[e % len(terms)]`; a slot of level L acts clip(a* + noise[L]·ε, −1, 1),
    ε ~ N(0, I), or uniformly in [−1, 1]^D when noise[L] is None. Only the team reward is
    recorded (and the levels as ground truth).
    """
    from teamsift.data.format import load_dataset, write_dataset

    terms = np.asarray(terms)
    if width < action_dim:
        raise ValueError(f"width: expected at least action_dim={action_dim}, got {width}")
    rng = np.random.default_rng(seed)
    a = terms.shape[1]
    spec = EnvSpec(env_id="continuous-contribution", agents=tuple(f"a{i}" for i in range(a)),
                   agent_types=agent_types, obs_dim=width, obs_widths=(width,) * a, state_dim=a * width,
                   discrete=False, num_actions=action_dim, action_dims=(action_dim,) * a, episode_length=length)
    levels = terms[np.arange(episodes) % len(terms)]  # [E, A]
    step_levels = np.repeat(levels, length, axis=0)  # [N, A]
    n = episodes * length
    obs = rng.normal(size=(n, a, width)).astype(np.float32)
    target = continuous_contribution_target(obs, action_dim)
    gaussian = rng.normal(size=(n, a, action_dim))
    uniform = rng.uniform(-1.0, 1.0, size=(n, a, action_dim))
    actions = np.empty((n, a, action_dim), np.float32)
    for level in np.unique(step_levels):
        at = step_levels == level
        sigma = noise[str(level)]
        actions[at] = uniform[at] if sigma is None else np.clip(target[at] + sigma * gaussian[at], -1.0, 1.0)
    contribution = 1.0 - np.mean((actions - target) ** 2, axis=-1)
    truncated = np.zeros(n, bool)
    truncated[length - 1::length] = True
    final_obs = rng.normal(size=(episodes, a, width)) if random_final_obs else np.zeros((episodes, a, width))
    return load_dataset(write_dataset(
        path, spec=spec, obs=obs, state=obs.reshape(n, -1), actions=actions,
        reward=contribution.sum(axis=1).astype(np.float32), terminated=np.zeros(n, bool), truncated=truncated,
        episode_lengths=np.full(episodes, length), final_obs=final_obs.astype(np.float32),
        final_state=np.zeros((episodes, a * width), np.float32), behaviour=levels))
