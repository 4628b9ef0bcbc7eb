"""Critics scoring many actions at one input (`central_q_actions`, `agent_q_actions`: the
first layer split into the input's part, computed once, and each action's part) equal the
straightforward critics on the concatenated inputs, and so do the CQL terms of MADDPG+CQL
and OMAR built on them: loss and gradient, on a small random batch.

Each test is one jitted program (set-up included): op-by-op dispatch would cost more than
the arithmetic."""

import jax
import jax.numpy as jnp
import numpy as np

from teamsift.algos import maddpg_cql, omar
from teamsift.nets import AgentNetConfig, init_params
from teamsift.nets.critic import (
    AgentCriticConfig, CentralCriticConfig, agent_q, agent_q_actions, central_q, central_q_actions,
    init_agent_critic, init_central_critic, one_head,
)
from teamsift.nets.ops import masked_mean

B, T, M, N, D, S, O = 3, 4, 5, 2, 3, 7, 6


def close(pairs):
    """pairs: {name: (fast, straightforward)} of equal pytrees."""
    for name, (actual, expected) in pairs.items():
        jax.tree.map(lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-5, atol=1e-5,
                                                             err_msg=name), actual, expected)


def uniform(key, shape):
    return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)


def test_maddpg_cql_terms_equal_the_straightforward_ones():
    """The centralised critic on M joint actions per state; eqs. (2)–(3) with the sampled
    joint actions scored at explicit copies of s_t; eq. (5) with BRUD's N joint actions."""
    config = maddpg_cql.MADDPGCQLConfig(recurrent=False, policy_hidden=(8,), critic_hidden=(16, 16), cql_samples=2)
    critic_cfg = CentralCriticConfig(state_dim=S, num_agents=N, action_dim=D, hidden=config.critic_hidden)
    net = AgentNetConfig(num_agents=N, obs_dim=O, num_actions=D, discrete=False, recurrent=False, hidden=(8,))

    @jax.jit
    def pairs(key):
        keys = jax.random.split(key, 10)
        critic, policy = init_central_critic(critic_cfg, keys[0]), init_params(net, keys[1])
        batch = {"obs": jax.random.normal(keys[2], (B, T, N, O)), "state": jax.random.normal(keys[3], (B, T, S)),
                 "actions": uniform(keys[4], (B, T, N, D)),
                 "mask": jnp.arange(T)[None, :] < jnp.array([[T], [T - 1], [2]])}
        targets = jax.random.normal(keys[5], (B, T))
        sampled, log_density = maddpg_cql.cql_joint_samples(keys[6], uniform(keys[7], (B, T, N, D)),
                                                            uniform(keys[8], (B, T, N, D)), config)
        many = uniform(keys[9], (B, T, M, N, D))

        def critic_loss(critic):
            q_data = central_q(critic_cfg, critic, batch["state"], batch["actions"])  # [K, B, T]
            td = jnp.mean(jnp.stack([masked_mean(0.5 * (q - targets) ** 2, batch["mask"]) for q in q_data]))
            states = jnp.repeat(batch["state"][:, :, None], sampled.shape[2], axis=2)  # [B, T, 3M, S] copies
            soft_max = jax.nn.logsumexp(central_q(critic_cfg, critic, states, sampled) - log_density, axis=-1)
            cql = jnp.mean(jnp.stack([masked_mean(s - q, batch["mask"]) for s, q in zip(soft_max, q_data)]))
            return td + config.cql_weight * cql, cql

        def policy_loss(policy):
            actions, _ = maddpg_cql.unroll_policy(net, policy, batch["obs"])
            joint = maddpg_cql.brud_joint_actions(actions, batch["actions"])  # [B, T, N, N, D]
            q = jnp.min(central_q(critic_cfg, critic, batch["state"][:, :, None], joint), axis=0)
            mask = batch["mask"][..., None]
            return -masked_mean(q, mask) + config.action_l2 * masked_mean(jnp.mean(actions**2, axis=-1), mask)

        fast_critic = lambda c: maddpg_cql.critic_loss(c, critic_cfg, batch, targets, sampled, log_density, config)
        fast_policy = lambda p: maddpg_cql.policy_loss(p, net, critic, critic_cfg, batch, config)[0]
        q_many = central_q_actions(critic_cfg, critic, batch["state"], many)
        return {
            "central_q_actions": (q_many, central_q(critic_cfg, critic, batch["state"][:, :, None], many)),
            "one head": (central_q_actions(critic_cfg, one_head(critic_cfg, critic, 1), batch["state"], many),
                         q_many[1:]),
            "critic loss and gradient": (jax.value_and_grad(lambda c: fast_critic(c)[0])(critic),
                                         jax.value_and_grad(lambda c: critic_loss(c)[0])(critic)),
            "cql term": (fast_critic(critic)[1][1], critic_loss(critic)[1]),
            "policy loss and gradient": (jax.value_and_grad(fast_policy)(policy),
                                         jax.value_and_grad(policy_loss)(policy)),
        }

    close(pairs(jax.random.key(0)))


def test_omar_cql_terms_equal_the_straightforward_ones():
    """Per-agent and shared critics on M actions per observation; eqs. (2)–(3) with the
    sampled actions scored at explicit copies of o_i; Q_{i,1} alone (eq. (5)'s CEM search)."""
    config = omar.OMARConfig(critic_hidden=(16, 16), cql_samples=2)
    critic_cfg = AgentCriticConfig(num_agents=N, obs_dim=O, action_dim=D, hidden=config.critic_hidden)
    shared_cfg = AgentCriticConfig(num_agents=N, obs_dim=O, action_dim=D, hidden=config.critic_hidden, shared=True)

    @jax.jit
    def pairs(key):
        keys = jax.random.split(key, 10)
        critic, shared = init_agent_critic(critic_cfg, keys[0]), init_agent_critic(shared_cfg, keys[1])
        obs = jax.random.normal(keys[2], (B, N, O))
        batch = {"obs": obs, "actions": uniform(keys[3], (B, N, D))}
        targets = jax.random.normal(keys[4], (B, N))
        policy_actions = uniform(keys[5], (B, N, D))
        sampled, log_density = omar.cql_samples(keys[6], policy_actions, uniform(keys[7], (B, N, D)), config)
        many = uniform(keys[8], (B, M, N, D))

        def critic_loss(critic):
            q_data = agent_q(critic_cfg, critic, obs, batch["actions"])  # [K, B, N]
            td = jnp.sum(jnp.mean((q_data - targets) ** 2, axis=(1, 2)))
            copies = jnp.repeat(obs[:, None], sampled.shape[1], axis=1)  # [B, 3M, N, O]
            soft_max = jax.nn.logsumexp(agent_q(critic_cfg, critic, copies, sampled) - log_density, axis=2)
            return td + config.cql_weight * jnp.sum(jnp.mean(soft_max - q_data, axis=(1, 2)))

        fast_critic = lambda c: omar.critic_loss(c, critic_cfg, batch, targets, sampled, log_density, config)[0]
        q_many = agent_q_actions(critic_cfg, critic, obs, many)
        return {
            "agent_q_actions": (q_many, agent_q(critic_cfg, critic, obs[:, None], many)),
            "agent_q_actions, shared": (agent_q_actions(shared_cfg, shared, obs, many),
                                        agent_q(shared_cfg, shared, obs[:, None], many)),
            "one head": (agent_q_actions(critic_cfg, one_head(critic_cfg, critic, 0), obs, many), q_many[:1]),
            "critic loss and gradient": (jax.value_and_grad(fast_critic)(critic),
                                         jax.value_and_grad(critic_loss)(critic)),
        }

    close(pairs(jax.random.key(1)))
