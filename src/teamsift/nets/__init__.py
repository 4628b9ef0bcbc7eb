"""Shared network blocks and the policy objects that wrap them."""

from teamsift.nets.agent import (
    MLP, AgentGRU, AgentMLP, AgentNetConfig, action_std, apply_agent, apply_sequence, apply_step, init_params,
    initial_carry, masked_logits, with_agent_ids,
)
from teamsift.nets.gat import GATLayer
from teamsift.nets.policy import (
    BCQPolicy, CheckpointBank, FunctionPolicy, NetworkPolicy, PolicyBank, RandomPolicy, slot_policy,
)
from teamsift.nets.policy_io import PolicyFileError, load_policy, read_header, save_policy

__all__ = [
    "MLP", "AgentMLP", "AgentGRU", "AgentNetConfig", "action_std", "apply_agent", "CheckpointBank", "apply_step",
    "apply_sequence", "init_params", "initial_carry", "masked_logits", "with_agent_ids", "NetworkPolicy",
    "BCQPolicy", "RandomPolicy", "FunctionPolicy", "PolicyBank", "slot_policy", "save_policy", "load_policy",
    "read_header", "PolicyFileError", "GATLayer",
]
