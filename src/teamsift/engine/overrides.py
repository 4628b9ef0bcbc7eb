"""`--set FIELD=VALUE`: overriding fields of frozen config dataclasses, nested with dots.

    with_overrides(SITConfig(), {"beta": 1.0})                       → SITConfig(beta=1.0)
    with_overrides(spec, {"hyperparameters.beta": 1.0, "sampler.alpha": 2})
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any


def with_overrides(config, assignments: dict[str, Any]):
    """A copy of the frozen config dataclass `config` with fields replaced, nested configs
    addressed with dots. Values are checked against the field's current value: ints become
    floats where the field holds a float, lists become tuples where it holds a tuple;
    anything else of the wrong type, or an unknown field, raises a ValueError naming the
    field (and the config's own validation runs on the result)."""
    for name, value in assignments.items():
        config = _override(config, name.split("."), value, name)
    return config


def _override(config, path: list[str], value, full_name: str):
    if not dataclasses.is_dataclass(config):
        raise ValueError(f"{full_name}: {type(config).__name__} has no fields to set")
    names = [f.name for f in dataclasses.fields(config)]
    head = path[0]
    if head not in names:
        raise ValueError(f"{full_name}: {type(config).__name__} has no field {head!r}; expected one of {names}")
    current = getattr(config, head)
    if len(path) > 1:
        return dataclasses.replace(config, **{head: _override(current, path[1:], value, full_name)})
    return dataclasses.replace(config, **{head: _coerce(current, value, full_name)})


def _coerce(current, value, full_name: str):
    if current is None:  # an optional field at its default: the config's own validation checks the value
        return value
    if isinstance(current, bool) or isinstance(value, bool):
        if isinstance(current, bool) and isinstance(value, bool):
            return value
    elif isinstance(current, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(current, int) and isinstance(value, int):
        return value
    elif isinstance(current, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    elif isinstance(value, type(current)):
        return value
    raise ValueError(f"{full_name}: expected a value like {current!r} ({type(current).__name__}), "
                     f"got {value!r} ({type(value).__name__})")


def parse_assignment(text: str) -> tuple[str, Any]:
    """'dper.alpha=2' → ("dper.alpha", 2): the value is read as JSON (numbers, true/false,
    lists), and as a plain string when it is not JSON."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--set {text!r}: expected FIELD=VALUE, e.g. beta=1.0 or dper.alpha=2")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip(), value
