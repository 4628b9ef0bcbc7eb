"""Evaluate a policy beside a partner: the policy plays one seat, the partner every other.

Carroll et al. (2019, "On the Utility of Learning about Humans for Human-AI
Coordination") and Select to Perfect (Section 5, Overcooked) judge a learned policy by
how well it cooks *with someone else* — a human proxy, a behaviour-cloning model of
held-out human games — and report both seats, because the layouts' two roles differ
(asymmetric_advantages, forced_coordination). Self-play, the policy in every seat, is
`evaluate` itself.

    paired(policy, partner, seat, num_agents)         a joint policy: slot `seat` acts
                                                      as `policy`, every other slot as `partner`
    evaluate_paired(env, policy, partner, key, n, seat)
    evaluate_seats(env, policy, partner, key, n)      {seat: EvalResult} for every seat

Both policies act for the whole team at every step (each sees every slot's observation,
as a parameter-shared network does) and the joint action keeps `policy`'s row `seat` and
`partner`'s other rows (`teamsift.nets.policy.PolicyBank`). Their random keys are split
from the step's key, so a seat's outcome depends only on the key and the two policies.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from teamsift.envs.base import Env
from teamsift.evaluate.stats import EvalResult, evaluate
from teamsift.nets.policy import PolicyBank


def _check_seat(seat, num_agents: int) -> int:
    if isinstance(seat, bool) or not isinstance(seat, int) or not 0 <= seat < num_agents:
        raise ValueError(f"seat: expected an agent slot in 0 … {num_agents - 1}, got {seat!r}")
    return seat


def paired(policy, partner, seat: int, num_agents: int) -> PolicyBank:
    """A joint policy in which slot `seat` is played by `policy` and every other slot by `partner`."""
    seat = _check_seat(seat, num_agents)
    assignment = jnp.ones(num_agents, jnp.int32).at[seat].set(0)  # 0 = policy, 1 = partner
    return PolicyBank((policy, partner)).assign(assignment)


def evaluate_paired(env: Env, policy, partner, key: jax.Array, num_episodes: int = 100, seat: int = 0,
                    chunk: int = 1024) -> EvalResult:
    """`evaluate` of `policy` in slot `seat` with `partner` in every other slot."""
    return evaluate(env, paired(policy, partner, seat, env.spec.num_agents), key, num_episodes, chunk=chunk)


def evaluate_seats(env: Env, policy, partner, key: jax.Array, num_episodes: int = 100,
                   chunk: int = 1024) -> dict[int, EvalResult]:
    """`evaluate_paired` for every seat, each with the same key (common random numbers)."""
    return {seat: evaluate_paired(env, policy, partner, key, num_episodes, seat, chunk)
            for seat in range(env.spec.num_agents)}
