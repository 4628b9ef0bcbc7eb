"""Input checks every learner shares: the dataset has what the learner reads, and
hyperparameters lie in their ranges. Each error names the field, what was expected and
what was found."""

from __future__ import annotations


def require_fields(dataset, learner: str, fields: tuple[str, ...]) -> None:
    for field in fields:
        if field not in dataset.steps:
            raise ValueError(f"{dataset.path}: dataset.steps[{field!r}]: {learner} needs it; the dataset has "
                             f"{sorted(dataset.steps)}")


def require_discrete(dataset, learner: str, fields: tuple[str, ...] = ("avail", "state", "actions", "reward")) -> None:
    """A discrete-action dataset with `fields` (default: avail masks and a global state)."""
    spec = dataset.spec
    if not spec.discrete:
        raise ValueError(f"{dataset.path}: dataset.spec.discrete: {learner} learns discrete actions; expected a "
                         f"discrete-action dataset, got continuous actions of dimension {spec.num_actions} "
                         f"(env {spec.env_id!r})")
    require_fields(dataset, learner, fields)
    if "state" in fields and spec.state_dim < 1:
        raise ValueError(f"{dataset.path}: dataset.spec.state_dim: {learner} needs a global state, got width "
                         f"{spec.state_dim}")


def require_continuous(dataset, learner: str, fields: tuple[str, ...] = ("obs", "actions", "reward")) -> None:
    spec = dataset.spec
    if spec.discrete:
        raise ValueError(f"{dataset.path}: dataset.spec.discrete: {learner} learns continuous actions; expected a "
                         f"continuous-action dataset, got discrete actions with {spec.num_actions} choices "
                         f"(env {spec.env_id!r})")
    require_fields(dataset, learner, fields)


def require_positive(config, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not value > 0:
            raise ValueError(f"{type(config).__name__}.{name}: expected a positive number, got {value!r}")


def require_non_negative(config, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not value >= 0:
            raise ValueError(f"{type(config).__name__}.{name}: expected a number >= 0, got {value!r}")


def require_unit_interval(config, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{type(config).__name__}.{name}: expected a value in [0, 1], got {value!r}")


def require_choice(config, name: str, choices) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise ValueError(f"{type(config).__name__}.{name}: expected one of {tuple(choices)}, got {value!r}")
