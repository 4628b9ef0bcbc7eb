"""Name behaviour policies on the command line and turn the names into policies.

A behaviour token is one of
    random                      uniform over available actions / uniform in [−1, 1]
    scripted:<rule>             a scripted rule of the environment (`scripted_rules(env_id)`)
    path/to/policy.msgpack      a saved teamsift policy (e.g. from `teamsift train`)
"""

from __future__ import annotations

from pathlib import Path

from teamsift.collect import scripted
from teamsift.nets import load_policy


def scripted_rules(env_id: str) -> dict:
    """Scripted rules available for an environment: name -> policy factory (spec -> policy)."""
    if env_id == "commons":
        return {kind: (lambda spec, kind=kind: scripted.commons_policy(kind)) for kind in scripted.COMMONS_TYPES}
    rules = getattr(scripted, "SCRIPTED_RULES", {})
    return dict(rules.get(env_id, {}))


def resolve(token: str, env) -> tuple[object, str]:
    """Behaviour token → (policy, label). Raises ValueError with the accepted forms."""
    spec = env.spec
    token = token.strip()
    if token == "random":
        return scripted.random_policy(spec), "random"
    if token.startswith("scripted:"):
        rule = token.split(":", 1)[1]
        rules = scripted_rules(spec.env_id)
        if rule not in rules:
            known = ", ".join(f"scripted:{name}" for name in rules) or "none"
            raise ValueError(f"behaviour {token!r}: no scripted rule {rule!r} for {spec.env_id} (available: {known})")
        return rules[rule](spec), f"scripted:{rule}"
    path = Path(token)
    if path.suffix == ".msgpack" or path.exists():
        policy, header = load_policy(path)
        saved_env = (header.get("spec") or {}).get("env_id")
        if saved_env and saved_env != spec.env_id:
            raise ValueError(f"{path}: policy was trained for {saved_env!r}, not {spec.env_id!r}")
        if policy.config.obs_dim != spec.obs_dim or policy.config.num_agents != spec.num_agents:
            raise ValueError(
                f"{path}: policy expects {policy.config.num_agents} agents with obs width "
                f"{policy.config.obs_dim}; {spec.env_id} has {spec.num_agents} agents with obs width {spec.obs_dim}"
            )
        return policy, path.stem
    raise ValueError(
        f"behaviour {token!r} not understood; expected 'random', 'scripted:<rule>' or a policy file (.msgpack)"
    )
