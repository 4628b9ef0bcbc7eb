"""Policies: small pytrees that act inside jitted, vmapped rollouts, and save without pickle.

Every joint policy implements the same two pure methods, for one environment and all
its agents at once:

    carry = policy.initial_carry()
    actions, carry = policy.act(key, obs[A, O], avail[A, nA] | None, carry)

`actions` are int32[A] (discrete) or float32[A, D] (continuous). Policies are
`flax.struct` dataclasses, so they can be passed through `jit` and stacked and
`vmap`ped (e.g. several seeds of one learner).

Kinds here: `NetworkPolicy` (a parameter-shared agent network), `BCQPolicy` (greedy
on Q among the actions a behaviour model finds familiar: MABCQ), `RandomPolicy` (uniform
over available actions / uniform in [−1, 1]), `FunctionPolicy` (a scripted rule),
`PolicyBank` (one of K policies per agent slot, chosen per episode — a mixed team) and
`CheckpointBank`; `teamsift.nets.mat.MATPolicy` is the Multi-Agent Transformer's.
Trained policies of every kind save to one file format (`teamsift.nets.policy_io`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from teamsift.nets import agent as agent_net


def sample_discrete(key, logits, avail, deterministic: bool):
    logits = agent_net.masked_logits(logits, avail)
    if deterministic:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@struct.dataclass
class NetworkPolicy:
    """A parameter-shared agent network (MLP or GRU) acting for all agents."""

    params: Any
    config: agent_net.AgentNetConfig = struct.field(pytree_node=False)
    deterministic: bool = struct.field(pytree_node=False, default=True)
    # Std of Gaussian noise for continuous actions when not deterministic (a network with
    # `learned_std` uses its own learned std instead).
    noise_std: float = struct.field(pytree_node=False, default=0.1)

    def initial_carry(self):
        return agent_net.initial_carry(self.config)

    def act(self, key, obs, avail, carry):
        out, carry = agent_net.apply_step(self.config, self.params, obs, carry)
        if self.config.discrete:
            return sample_discrete(key, out, avail, self.deterministic), carry
        if not self.deterministic:
            std = agent_net.action_std(self.config, self.params)
            std = self.noise_std if std is None else std
            out = out + std * jax.random.normal(key, out.shape)
        return jnp.clip(out, -1.0, 1.0), carry

    def replace_mode(self, deterministic: bool) -> "NetworkPolicy":
        return self.replace(deterministic=deterministic)


@struct.dataclass
class RandomPolicy:
    """Uniform over available actions (discrete) or uniform in [−1, 1] (continuous)."""

    num_agents: int = struct.field(pytree_node=False)
    num_actions: int = struct.field(pytree_node=False)
    discrete: bool = struct.field(pytree_node=False)

    @classmethod
    def for_spec(cls, spec) -> "RandomPolicy":
        return cls(spec.num_agents, spec.num_actions, spec.discrete)

    def initial_carry(self):
        return None

    def act(self, key, obs, avail, carry):
        del obs
        if self.discrete:
            logits = jnp.zeros((self.num_agents, self.num_actions))
            return sample_discrete(key, logits, avail, deterministic=False), carry
        return jax.random.uniform(key, (self.num_agents, self.num_actions), minval=-1.0, maxval=1.0), carry


@struct.dataclass
class FunctionPolicy:
    """A scripted joint policy: `fn(key, obs, avail) -> actions` (stateless)."""

    fn: Callable = struct.field(pytree_node=False)

    def initial_carry(self):
        return None

    def act(self, key, obs, avail, carry):
        return self.fn(key, obs, avail), carry


@struct.dataclass
class PolicyBank:
    """K joint policies; in each episode slot i is played by policy `assignment[i]`.

    `assignment` ([A] int32) is set per episode with `assign` — `teamsift.evaluate.rollout`
    does so from its `assignment` argument ([E, A]), which is how datasets of mixed
    quality record their per-slot ground truth. Every policy acts for the whole team and
    row i of policy `assignment[i]` is kept.
    """

    policies: tuple
    assignment: Any = None

    def assign(self, assignment) -> "PolicyBank":
        return self.replace(assignment=jnp.asarray(assignment, jnp.int32))

    def initial_carry(self):
        return tuple(p.initial_carry() for p in self.policies)

    def act(self, key, obs, avail, carry):
        if self.assignment is None:
            raise ValueError("PolicyBank.act: no slot assignment; call .assign(indices[A]) first")
        keys = jax.random.split(key, len(self.policies))
        outputs = [p.act(k, obs, avail, c) for p, k, c in zip(self.policies, keys, carry)]
        joint = jnp.stack([actions for actions, _ in outputs])  # [K, A, ...]
        actions = joint[self.assignment, jnp.arange(joint.shape[1])]
        return actions, tuple(c for _, c in outputs)


@struct.dataclass
class CheckpointBank:
    """K checkpoints of one agent network (params stacked on a leading [K] axis); in each
    episode slot i plays checkpoint `assignment[i]`, and only that slot's network is run.

    This is how datasets are drawn from policy pools: every slot of every episode can be
    a different checkpoint, at the cost of one network evaluation per slot.
    """

    params: Any  # leaves [K, ...]
    config: agent_net.AgentNetConfig = struct.field(pytree_node=False)
    deterministic: bool = struct.field(pytree_node=False, default=False)
    noise_std: float = struct.field(pytree_node=False, default=0.1)
    assignment: Any = None

    @property
    def size(self) -> int:
        return jax.tree.leaves(self.params)[0].shape[0]

    def assign(self, assignment) -> "CheckpointBank":
        return self.replace(assignment=jnp.asarray(assignment, jnp.int32))

    def checkpoint(self, index: int) -> NetworkPolicy:
        """One checkpoint as a stand-alone joint policy."""
        params = jax.tree.map(lambda x: x[index], self.params)
        return NetworkPolicy(params, self.config, self.deterministic, self.noise_std)

    def initial_carry(self):
        return agent_net.initial_carry(self.config)

    def act(self, key, obs, avail, carry):
        if self.assignment is None:
            raise ValueError("CheckpointBank.act: no slot assignment; call .assign(indices[A]) first")
        num_agents = obs.shape[0]
        slot_params = jax.tree.map(lambda x: x[self.assignment], self.params)  # [A, ...]

        def one_slot(params, slot_obs, index, slot_carry):
            return agent_net.apply_agent(self.config, params, slot_obs, index, slot_carry)

        if self.config.recurrent:
            out, carry = jax.vmap(one_slot)(slot_params, obs, jnp.arange(num_agents), carry)
        else:
            out, _ = jax.vmap(lambda p, o, i: one_slot(p, o, i, None))(slot_params, obs, jnp.arange(num_agents))
        if self.config.discrete:
            return sample_discrete(key, out, avail, self.deterministic), carry
        if not self.deterministic:
            std = jax.vmap(lambda p: agent_net.action_std(self.config, p))(slot_params) if self.config.learned_std \
                else self.noise_std
            out = out + std * jax.random.normal(key, out.shape)
        return jnp.clip(out, -1.0, 1.0), carry


    # --- many environments at once, grouped by checkpoint -------------------------------------

    def subset(self, indices) -> "CheckpointBank":
        """The bank of checkpoints `indices` only (in that order), e.g. those a dataset uses."""
        indices = jnp.asarray(indices, jnp.int32)
        return self.replace(params=jax.tree.map(lambda x: x[indices], self.params), assignment=None)

    def plan(self, assignment, block: int = 64) -> "BankPlan":
        """How `act_planned` evaluates slots [M, A] (`assignment`: checkpoint per slot): the
        M·A rows are ordered by checkpoint and cut into blocks of `block` rows that share one
        checkpoint, each group padded to whole blocks. A block is then one dense matrix
        product per layer instead of one matrix-vector product per row with its own
        gathered weights. The number of blocks, (M·A + K·(block − 1)) // block for a bank
        of K checkpoints (enough for any assignment), depends only on the shapes, so one
        compiled program serves every assignment."""
        rows = assignment.size
        groups = self.size
        checkpoint = jnp.asarray(assignment, jnp.int32).reshape(rows)
        member = checkpoint[:, None] == jnp.arange(groups)  # [R, K]
        rank = jnp.take_along_axis(jnp.cumsum(member, axis=0), checkpoint[:, None], axis=1)[:, 0] - 1
        blocks_per_group = (jnp.sum(member, axis=0) + block - 1) // block
        group_end = jnp.cumsum(blocks_per_group)
        position = (group_end - blocks_per_group)[checkpoint] * block + rank  # row r's place in block order
        num_blocks = (rows + groups * (block - 1)) // block
        # Padding places read row 0 and are never read back.
        source = jnp.zeros(num_blocks * block, jnp.int32).at[position].set(jnp.arange(rows, dtype=jnp.int32))
        block_group = jnp.minimum(jnp.searchsorted(group_end, jnp.arange(num_blocks), side="right"), groups - 1)
        return BankPlan(source=source, position=position,
                        params=jax.tree.map(lambda x: x[block_group], self.params))

    def act_planned(self, plan: "BankPlan", keys, obs, avail, carry):
        """`act` for M environments at once (keys [M], obs [M, A, O], avail [M, A, nA],
        carry [M, A, H] | None), slot (m, i) played by the checkpoint `plan` was made for.
        Each environment samples with its own key exactly as `act` does."""
        num_envs, num_agents = obs.shape[:2]
        rows = num_envs * num_agents
        inputs = obs
        if self.config.agent_ids:
            inputs = agent_net.with_agent_ids(obs, num_agents)
        num_blocks = jax.tree.leaves(plan.params)[0].shape[0]
        block = plan.source.shape[0] // num_blocks
        blocked = inputs.reshape(rows, -1)[plan.source].reshape(num_blocks, block, -1)
        net = agent_net.build(self.config)
        if self.config.recurrent:
            slot_carry = carry.reshape(rows, -1)[plan.source].reshape(num_blocks, block, -1)
            new_carry, out = jax.vmap(net.apply)(plan.params, slot_carry, blocked)
            carry = new_carry.reshape(num_blocks * block, -1)[plan.position].reshape(carry.shape)
        else:
            out = jax.vmap(net.apply)(plan.params, blocked)
        out = out.reshape(num_blocks * block, -1)[plan.position].reshape(num_envs, num_agents, -1)
        if self.config.discrete:
            actions = jax.vmap(lambda k, o, a: sample_discrete(k, o, a, self.deterministic))(keys, out, avail)
            return actions, carry
        if not self.deterministic:
            if self.config.learned_std:
                block_std = jax.vmap(lambda p: agent_net.action_std(self.config, p))(plan.params)  # [blocks, D]
                std = jnp.repeat(block_std, block, axis=0)[plan.position].reshape(out.shape)
            else:
                std = self.noise_std
            noise = jax.vmap(lambda k: jax.random.normal(k, out.shape[1:]))(keys)
            out = out + std * noise
        return jnp.clip(out, -1.0, 1.0), carry


@struct.dataclass
class BankPlan:
    """A `CheckpointBank`'s slots ordered into blocks of one checkpoint (`CheckpointBank.plan`)."""

    source: Any  # [blocks * block] row read into each block place
    position: Any  # [rows] block place of each row
    params: Any  # leaves [blocks, ...]: the checkpoint of each block


def plan_batch(policy, assignment):
    """What `act_batch` needs for environments [M] whose slots are played as `assignment`
    [M, A] says (None: the policy plays every slot): a `BankPlan` for a `CheckpointBank`,
    else the assignment itself."""
    if isinstance(policy, CheckpointBank):
        return policy.plan(assignment)
    return assignment


def act_batch(policy, plan, keys, obs, avail, carry):
    """`policy.act` for M environments at once (leading [M] on keys, obs, avail, carry),
    environment m with its own key; `plan` from `plan_batch`."""
    if isinstance(policy, CheckpointBank):
        return policy.act_planned(plan, keys, obs, avail, carry)
    if plan is None:
        return jax.vmap(policy.act)(keys, obs, avail, carry)
    return jax.vmap(lambda a, k, o, v, c: policy.assign(a).act(k, o, v, c))(plan, keys, obs, avail, carry)


def slot_policy(policies) -> PolicyBank:
    """A fixed mixed team: slot i is always played by `policies[i]`."""
    return PolicyBank(tuple(policies)).assign(jnp.arange(len(policies)))


# --- MABCQ's policy -----------------------------------------------------------------------

def familiar_actions(behaviour_logits: jax.Array, avail: jax.Array | None, threshold: float) -> jax.Array:
    """avail ∧ μ(a)/max μ > ζ  [..., nA] — the most likely available action is always familiar."""
    probs = jax.nn.softmax(agent_net.masked_logits(behaviour_logits, avail), axis=-1)
    familiar = probs / jnp.max(probs, axis=-1, keepdims=True) > threshold
    return familiar if avail is None else familiar & avail


def bcq_actions(q: jax.Array, behaviour_logits: jax.Array, avail: jax.Array | None, threshold: float) -> jax.Array:
    """argmax of Q over the familiar available actions [..., nA] → int32 [...]."""
    allowed = familiar_actions(behaviour_logits, avail, threshold)
    return jnp.argmax(jnp.where(allowed, q, agent_net.NEG_INF), axis=-1).astype(jnp.int32)


@struct.dataclass
class BCQPolicy:
    """Greedy w.r.t. Q_i among familiar actions (MABCQ, SIT appendix B eq. 12). `params` =
    {"q": …, "behaviour": …}, two networks of one `config`."""

    params: Any
    config: agent_net.AgentNetConfig = struct.field(pytree_node=False)
    threshold: float = struct.field(pytree_node=False, default=0.3)
    deterministic: bool = struct.field(pytree_node=False, default=True)

    def initial_carry(self):
        return agent_net.initial_carry(self.config), agent_net.initial_carry(self.config)

    def act(self, key, obs, avail, carry):
        del key  # greedy
        q_carry, behaviour_carry = carry
        q, q_carry = agent_net.apply_step(self.config, self.params["q"], obs, q_carry)
        logits, behaviour_carry = agent_net.apply_step(self.config, self.params["behaviour"], obs, behaviour_carry)
        return bcq_actions(q, logits, avail, self.threshold), (q_carry, behaviour_carry)

    def replace_mode(self, deterministic: bool) -> "BCQPolicy":
        return self  # always greedy
