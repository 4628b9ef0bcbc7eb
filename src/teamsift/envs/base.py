"""The one functional environment interface every teamsift environment exposes.

An environment is a pair of pure functions plus a static description (`EnvSpec`):

    reset(key)                      -> Reset(obs[A,O], state[S], avail[A,nA] | None, env_state)
    step(key, env_state, actions)   -> Step(obs, state, avail, reward, done, info, env_state)

* `obs` is zero-padded to one width `O`; the true width of each agent's observation
  is `spec.obs_widths[i]`.
* `actions` are `int32[A]` for discrete environments and `float32[A, D]` in [-1, 1]
  for continuous ones (`D` = the widest agent's action dimension, the rest padded).
* `avail` is a boolean mask `[A, nA]` of available actions (discrete only; `None`
  for continuous environments, which is an empty pytree and so costs nothing under jit).
* `reward` is the float32 team reward of the step; `done` is a bool scalar, True when
  the episode terminated or reached `spec.episode_length`. `info` always holds the
  bool scalars `terminated` and `truncated`, plus whatever the environment needs for
  its named scores.
* `step` does **not** reset: after `done` the caller decides what happens (our rollouts
  keep stepping a finished episode and mask it out, so every episode is one fixed-shape
  scan of `episode_length` steps).

Scores (the "desired value functions" of Select to Perfect) are computed from a whole
episode: `env.scores(rewards[T], infos[T], valid[T]) -> {name: scalar}`. Every
environment has the score `return` (sum of team rewards).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class Reset(NamedTuple):
    obs: Array  # [A, O] float32
    state: Array  # [S] float32
    avail: Array | None  # [A, nA] bool, or None (continuous)
    env_state: Any


class Step(NamedTuple):
    obs: Array
    state: Array
    avail: Array | None
    reward: Array  # [] float32 team reward
    done: Array  # [] bool
    info: dict
    env_state: Any


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Static facts about an environment, shared by datasets, learners and evaluation."""

    env_id: str
    agents: tuple[str, ...]
    agent_types: tuple[str, ...]
    obs_dim: int  # padded width O
    obs_widths: tuple[int, ...]  # true width per agent
    state_dim: int
    discrete: bool
    num_actions: int  # nA for discrete; D (padded action dim) for continuous
    action_dims: tuple[int, ...]  # per agent: nA (discrete) or D_i (continuous)
    episode_length: int
    scores: tuple[str, ...] = ("return",)
    # Higher-is-better for every score unless listed here (e.g. a count of incidents).
    lower_is_better: tuple[str, ...] = ()
    partially_observable: bool = False
    description: str = ""

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of one joint action: (A,) for discrete, (A, D) for continuous."""
        if self.discrete:
            return (self.num_agents,)
        return (self.num_agents, self.num_actions)

    @property
    def type_names(self) -> tuple[str, ...]:
        """Distinct agent types, in order of first appearance."""
        return tuple(dict.fromkeys(self.agent_types))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "EnvSpec":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(fields)
        if unknown:
            raise ValueError(f"EnvSpec: unknown fields {sorted(unknown)}")
        kwargs = {}
        for name, value in d.items():
            kwargs[name] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)


def return_score(rewards: Array, infos: dict, valid: Array) -> dict[str, Array]:
    """The default score set: the undiscounted team return."""
    del infos
    return {"return": jnp.sum(rewards * valid)}


@dataclasses.dataclass(frozen=True)
class Env:
    """A functional multi-agent environment: pure `reset`/`step` plus its `spec`.

    Instances are hashable (frozen, compared by identity of their functions), so they
    can be passed as static arguments to `jax.jit`.
    """

    spec: EnvSpec
    reset: Callable[[Array], Reset]
    step: Callable[[Array, Any, Array], Step]
    scores: Callable[[Array, dict, Array], dict[str, Array]] = return_score
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    def __hash__(self) -> int:
        return hash((self.spec, self.reset, self.step, self.scores))

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Env)
            and self.spec == other.spec
            and self.reset is other.reset
            and self.step is other.step
            and self.scores is other.scores
        )


def pad_obs(obs_list: list[Array], width: int) -> Array:
    """Stack per-agent observations of different widths into one zero-padded [A, width]."""
    rows = [jnp.pad(o.astype(jnp.float32), (0, width - o.shape[-1])) for o in obs_list]
    return jnp.stack(rows)


def step_info(terminated: Array, truncated: Array, **extra) -> dict:
    """The `info` dict every environment returns: terminated/truncated plus extras."""
    return {"terminated": jnp.asarray(terminated, bool), "truncated": jnp.asarray(truncated, bool), **extra}
