"""Behaviour policies and data generation: random and scripted policies, and rolling any
joint policy (one per slot, chosen per episode) out into a dataset."""

from teamsift.collect.rollouts import collect, collect_arrays, default_chunk, pack
from teamsift.collect.scripted import COMMONS_TYPES, commons_policy, commons_team, random_policy

__all__ = ["collect", "collect_arrays", "default_chunk", "pack", "COMMONS_TYPES", "commons_policy",
           "commons_team", "random_policy"]
