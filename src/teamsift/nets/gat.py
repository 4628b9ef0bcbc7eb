"""Graph attention over a set of nodes (Veličković et al. 2018), as SIT's critic uses it.

For nodes x_1 … x_N (e.g. the agents' observations, a fully connected graph) and each
head h, with h_i = W_1 x_i:

    w_ij  = exp(LeakyReLU(W_2ᵀ [h_i; h_j])) / Σ_{k ∈ N(i)} exp(LeakyReLU(W_2ᵀ [h_i; h_k]))
    out_i = Σ_{j ∈ N(i)} w_ij h_j

which is SIT's eq. 8 with one head (e_{i,global} = out_i) and N(i) = every node, i
included. W_2ᵀ[h_i; h_j] is computed as a_srcᵀ h_i + a_dstᵀ h_j (the two halves of W_2),
so the N × N logits cost O(N²) per head and the aggregation is one matrix product.

Options: several heads (concatenated, or averaged), neighbourhoods restricted by a
node mask (absent nodes are never attended to) and/or without self-loops. No
non-linearity is applied to the output (eq. 8 has none); callers add one if they want.
The layer is permutation-equivariant over nodes: permuting the inputs permutes the
outputs (and the rows and columns of the attention) the same way.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

NEG_INF = -1e9


class GATLayer(nn.Module):
    """nodes [..., N, F] (, node_mask [..., N]) → (out [..., N, H·heads | H], attention [..., heads, N, N]).

    attention[..., h, i, j] is w_ij of head h; every row sums to 1 over the neighbours j
    of i (a row with no neighbour at all is uniform over all nodes, to stay finite).
    """

    features: int  # H, the width of W_1 per head
    num_heads: int = 1
    negative_slope: float = 0.2  # LeakyReLU slope (the GAT paper's 0.2)
    self_loops: bool = True  # i ∈ N(i) (SIT eq. 8 sums over all agents, i included)
    concat_heads: bool = True  # False: average the heads (output width H)

    @nn.compact
    def __call__(self, nodes: jax.Array, node_mask: jax.Array | None = None):
        if self.features < 1 or self.num_heads < 1:
            raise ValueError(f"GATLayer: expected features >= 1 and num_heads >= 1, got {self.features}, "
                             f"{self.num_heads}")
        n, heads, width = nodes.shape[-2], self.num_heads, self.features
        h = nn.Dense(heads * width, use_bias=False, name="W_1")(nodes)
        h = h.reshape(h.shape[:-1] + (heads, width))  # [..., N, heads, H]
        init = nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)
        w_2 = self.param("W_2", init, (heads, 2 * width))  # W_2ᵀ [h_i; h_j] = a_srcᵀ h_i + a_dstᵀ h_j
        src = jnp.einsum("...nhf,hf->...hn", h, w_2[:, :width])  # [..., heads, N]
        dst = jnp.einsum("...nhf,hf->...hn", h, w_2[:, width:])
        logits = nn.leaky_relu(src[..., :, None] + dst[..., None, :], self.negative_slope)  # [..., heads, N, N]
        allowed = jnp.ones((n, n), bool) if self.self_loops else ~jnp.eye(n, dtype=bool)
        if node_mask is not None:
            allowed = allowed & node_mask[..., None, None, :].astype(bool)  # never attend to absent nodes
        logits = jnp.where(allowed, logits, NEG_INF)
        attention = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("...hij,...jhf->...ihf", attention, h)  # [..., N, heads, H]
        if self.concat_heads:
            out = out.reshape(out.shape[:-2] + (heads * width,))
        else:
            out = out.mean(axis=-2)
        return out, attention
