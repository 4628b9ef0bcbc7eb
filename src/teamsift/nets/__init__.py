"""Shared network blocks and the policy objects that wrap them."""

from teamsift.nets.agent import (
    MLP, AgentGRU, AgentMLP, AgentNetConfig, action_std, apply_agent, apply_sequence, apply_step, init_params,
    initial_carry, masked_logits, with_agent_ids,
)
from teamsift.nets.gat import GATLayer
from teamsift.nets.policy import (
    CheckpointBank, FunctionPolicy, NetworkPolicy, PolicyBank, PolicyFileError, RandomPolicy, load_policy, save_policy,
    slot_policy,
)

__all__ = [
    "MLP", "AgentMLP", "AgentGRU", "AgentNetConfig", "action_std", "apply_agent", "CheckpointBank", "apply_step", "apply_sequence", "init_params",
    "initial_carry", "masked_logits", "with_agent_ids", "NetworkPolicy", "RandomPolicy",
    "FunctionPolicy", "PolicyBank", "slot_policy", "save_policy", "load_policy", "PolicyFileError",
    "GATLayer",
]
