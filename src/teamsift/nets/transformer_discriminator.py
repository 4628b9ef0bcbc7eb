"""MILD²'s transformer discriminator (§4.1 and Figure 2 of "Big Picture Thinking"): one
logit d^k per agent from the whole joint transition, under Lipschitz control.

    encoder:  o^1 … o^N (+ one-hot ids)  →  SpectralDense → GELU → n_block × EncoderBlock
              (unmasked L2 self-attention)                               →  ô^1 … ô^N
    decoder:  x^k = SpectralDense(feat(a^k)) + ô^k     (token k: agent k's action AND its own
              encoded observation, so token k knows whose action it carries)
              → n_block × DecoderBlock(UNMASKED L2 self-attention over the joint action
                tokens, L2 cross-attention x → ô, MLP)
              → head SpectralDense → GELU → SpectralDense(1)         →  d^1 … d^N

    feat(a) = one-hot(a) (discrete) | clip(a, −1, 1) (continuous, the environment's range:
              unclipped generator samples would otherwise give the generator away)

Lipschitz control as in ViTGAN (Lee et al. 2022): every attention is `L2Attention` with a
tied query/key projection, softmax(−‖XW − X'W‖²/√d_h)·V, and every projection (embeddings,
attention, MLPs, head) is a `SpectralDense` / spectrally normalised kernel W·σ(W_init)/σ(W).
`l2_value="free"` (default) is the paper's value map X'W_V; "kim" is Kim et al.'s provably
Lipschitz one. LayerNorm (pre-norm, ViT-style) can be switched off (`layer_norm=False`;
LayerNorm is not Lipschitz).

`global_dependencies=False` is MILD²-GD, the ablation without global dependency modelling:
the SAME blocks run on a sequence of ONE token per agent (agent k's (o^k, id^k, a^k) alone),
so d^k depends only on agent k's own observation and action — an independent per-agent
discriminator with the same architecture and parameter count (attention over one token
is the identity on its value projection).

With `agent_ids=False` the network is permutation-equivariant over agents (attention
without masks or positions is): permuting the agents' (o, a) permutes the logits.

Sign of d: the learner (`teamsift.algos.mild2`) trains d LOW on expert data, so that the
paper's reward r^k = −log σ(d^k) is HIGHER for expert-like transitions; see there.

Power iteration: the spectral-norm vectors u live in the "spectral" collection; `apply`
here never updates them (deterministic, no key). `with_power_iteration(tx)` wraps an
optax optimiser over the whole variables dict {"params", "spectral"}: after each gradient
step it runs one power-iteration step on every NEW kernel and writes the new u (Miyato et
al.'s one step per training step), so a discriminator trained through the plain optax
protocol keeps its spectral estimates current.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from teamsift.nets.agent import with_agent_ids
from teamsift.nets.transformer import SPECTRAL, DecoderBlock, EncoderBlock, SpectralDense, power_iteration

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class TransformerDiscriminatorConfig:
    """Everything that shapes the discriminator (static under jit)."""

    num_agents: int
    obs_dim: int
    num_actions: int  # nA (discrete) or D, the padded action width (continuous)
    discrete: bool
    n_block: int = 1
    n_embd: int = 64
    n_head: int = 1
    agent_ids: bool = True  # append one-hot agent ids to the observations
    global_dependencies: bool = True  # False: MILD²-GD, d^k from (o^k, a^k) only
    layer_norm: bool = True  # pre-norm LayerNorm in the blocks (False: none, fully Lipschitz-friendly)
    l2_value: str = "free"  # L2Attention value map: "free" (X W_V, the paper's) | "kim"
    rescale: bool = True  # ViTGAN's σ(W_init) rescaling of the spectral norm

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"TransformerDiscriminatorConfig: n_embd = {self.n_embd} is not divisible by "
                             f"n_head = {self.n_head}")
        if self.l2_value not in ("free", "kim"):
            raise ValueError(f"TransformerDiscriminatorConfig.l2_value: expected 'free' or 'kim', "
                             f"got {self.l2_value!r}")

    @classmethod
    def for_spec(cls, spec, **kwargs) -> "TransformerDiscriminatorConfig":
        return cls(spec.num_agents, spec.obs_dim, spec.num_actions, spec.discrete, **kwargs)

    @property
    def obs_width(self) -> int:
        """Width of one agent's observation input (with ids)."""
        return self.obs_dim + (self.num_agents if self.agent_ids else 0)


def action_features(config: TransformerDiscriminatorConfig, actions: Array) -> Array:
    """actions [..., A] (int) | [..., A, D] (float) → [..., A, nA | D]: one-hot or clipped raw."""
    if config.discrete:
        return jax.nn.one_hot(actions.astype(jnp.int32), config.num_actions, dtype=jnp.float32)
    return jnp.clip(actions.astype(jnp.float32), -1.0, 1.0)


def agent_inputs(config: TransformerDiscriminatorConfig, obs: Array, actions: Array) -> tuple[Array, Array]:
    """(observation features [..., A, obs_width], action features [..., A, nA | D]): exactly
    what the network reads (also the space in which the learner measures distances)."""
    obs = obs.astype(jnp.float32)
    if config.agent_ids:
        obs = with_agent_ids(obs, config.num_agents)
    return obs, action_features(config, actions)


class TransformerDiscriminator(nn.Module):
    """(obs [..., A, O], actions [..., A] | [..., A, D]) → logits d [..., A]."""

    config: TransformerDiscriminatorConfig

    @nn.compact
    def __call__(self, obs: Array, actions: Array, update_stats: bool = False) -> Array:
        c = self.config
        o, a = agent_inputs(c, obs, actions)
        if not c.global_dependencies:  # MILD²-GD: every agent its own sequence of one token
            o, a = o[..., None, :], a[..., None, :]
        block = dict(d_model=c.n_embd, num_heads=c.n_head, lipschitz=True, pre_norm=True, layer_norm=c.layer_norm,
                     rescale=c.rescale, l2_value=c.l2_value)
        enc = nn.gelu(SpectralDense(c.n_embd, rescale=c.rescale, name="obs_embed")(o, update_stats))
        for i in range(c.n_block):
            enc = EncoderBlock(**block, name=f"encoder_{i}")(enc, update_stats)
        x = SpectralDense(c.n_embd, rescale=c.rescale, name="act_embed")(a, update_stats) + enc
        for i in range(c.n_block):
            x = DecoderBlock(**block, causal=False, mat_layout=False, name=f"decoder_{i}")(x, enc, update_stats)
        if c.layer_norm:
            x = nn.LayerNorm(name="ln_head")(x)
        h = nn.gelu(SpectralDense(c.n_embd, rescale=c.rescale, name="head_hidden")(x, update_stats))
        d = SpectralDense(1, rescale=c.rescale, name="head_out")(h, update_stats)[..., 0]
        return d if c.global_dependencies else d[..., 0]


def _dummy_inputs(config: TransformerDiscriminatorConfig) -> tuple[Array, Array]:
    obs = jnp.zeros((config.num_agents, config.obs_dim), jnp.float32)
    if config.discrete:
        return obs, jnp.zeros((config.num_agents,), jnp.int32)
    return obs, jnp.zeros((config.num_agents, config.num_actions), jnp.float32)


def init_transformer_discriminator(config: TransformerDiscriminatorConfig, key: Array):
    """Fresh variables {"params", "spectral"} (spectral vectors exact at initialisation)."""
    return TransformerDiscriminator(config).init(key, *_dummy_inputs(config))


def transformer_discriminator_logits(config: TransformerDiscriminatorConfig, variables, obs: Array,
                                     actions: Array) -> Array:
    """Per-agent logits d [..., A] for any leading batch shape (spectral vectors not updated)."""
    return TransformerDiscriminator(config).apply(variables, obs, actions)


# --- power iteration inside the optimiser ---------------------------------------------------

class PowerIterationState(NamedTuple):
    inner: optax.OptState


def refresh_spectral(variables) -> dict:
    """The "spectral" collection after one power-iteration step on every current kernel:
    `{name}_u` next to the param `{name}` of the same module; σ(W_init) unchanged."""
    params = traverse_util.flatten_dict(variables["params"])
    spectral = traverse_util.flatten_dict(variables[SPECTRAL])
    out = {}
    for path, value in spectral.items():
        leaf = path[-1]
        if leaf.endswith("_u"):
            kernel = params[path[:-1] + (leaf[:-2],)]
            out[path] = power_iteration(jax.lax.stop_gradient(kernel.reshape(kernel.shape[0], -1)), value)
        else:
            out[path] = value
    return traverse_util.unflatten_dict(out)


def with_power_iteration(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` on variables["params"]; the "spectral" collection's update moves every u to one
    power-iteration step on the updated kernel (its gradient, if any, is ignored). Needs
    `params` in `update`. Other collections are left unchanged."""

    def init(variables):
        return PowerIterationState(tx.init(variables["params"]))

    def update(grads, state, variables=None):
        if variables is None:
            raise ValueError("with_power_iteration: update needs the current variables (params=...)")
        updates, inner = tx.update(grads["params"], state.inner, variables["params"])
        new_params = optax.apply_updates(variables["params"], updates)
        fresh = refresh_spectral({**variables, "params": new_params})
        out = {k: jax.tree.map(jnp.zeros_like, v) for k, v in variables.items()}
        out["params"] = updates
        out[SPECTRAL] = jax.tree.map(lambda new, old: new - old, fresh, variables[SPECTRAL])
        return out, PowerIterationState(inner)

    return optax.GradientTransformation(init, update)
