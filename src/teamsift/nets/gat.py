"""Graph attention over a set of nodes (Veličković et al. 2018), as SIT's critic uses it.

For nodes x_1 … x_N (e.g. the agents' observations, a fully connected graph) and each
head h, with h_i = W_1 x_i:

    w_ij  = exp(LeakyReLU(W_2ᵀ [h_i; h_j])) / Σ_{k ∈ N(i)} exp(LeakyReLU(W_2ᵀ [h_i; h_k]))
    out_i = Σ_{j ∈ N(i)} w_ij h_j

which is SIT's eq. 8 with one head (e_{i,global} = out_i) and N(i) = every node, i
included. W_2ᵀ[h_i; h_j] is computed as a_srcᵀ h_i + a_dstᵀ h_j (the two halves of W_2),
so the N × N logits cost O(N²) per head and the aggregation is one matrix product.

Options: several heads (concatenated, or averaged), neighbourhoods restricted by a
node mask (absent nodes are never attended to) and/or without self-loops, and a query
node: `query` [...] gives only that node's output and attention row (one row of the N × N
logits instead of all of them, for callers that read one node, as SIT's critic does). No
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
    def __call__(self, nodes: jax.Array, node_mask: jax.Array | None = None, query: jax.Array | None = None):
        """(out, attention) for every node, or with `query` [...] (int node indices) for that
        node only: (out [..., H·heads | H], attention [..., heads, N])."""
        if self.features < 1 or self.num_heads < 1:
            raise ValueError(f"GATLayer: expected features >= 1 and num_heads >= 1, got {self.features}, "
                             f"{self.num_heads}")
        n, heads, width = nodes.shape[-2], self.num_heads, self.features
        h = nn.Dense(heads * width, use_bias=False, name="W_1")(nodes)
        h = h.reshape(h.shape[:-1] + (heads, width))  # [..., N, heads, H]
        init = nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)
        w_2 = self.param("W_2", init, (heads, 2 * width))  # W_2ᵀ [h_i; h_j] = a_srcᵀ h_i + a_dstᵀ h_j
        if query is not None:
            return self.query_row(h, w_2, node_mask, query)
        src = jnp.einsum("...nhf,hf->...hn", h, w_2[:, :width])  # [..., heads, N]
        dst = jnp.einsum("...nhf,hf->...hn", h, w_2[:, width:])
        logits = nn.leaky_relu(src[..., :, None] + dst[..., None, :], self.negative_slope)  # [..., heads, N, N]
        allowed = jnp.ones((n, n), bool) if self.self_loops else ~jnp.eye(n, dtype=bool)
        if node_mask is not None:
            allowed = allowed & node_mask[..., None, None, :].astype(bool)  # never attend to absent nodes
        logits = jnp.where(allowed, logits, NEG_INF)
        attention = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("...hij,...jhf->...ihf", attention, h)  # [..., N, heads, H]
        return self.merge_heads(out), attention

    def query_row(self, h, w_2, node_mask, query):
        """Row i = `query` of the attention and out_i: h [..., N, heads, H] →
        (out [..., H·heads | H], attention [..., heads, N]). Every node's a_srcᵀ h and
        a_dstᵀ h come from one matrix product with the heads' blocks of W_2, and row i is
        picked by a one-hot contraction (no gather, no N × N logits)."""
        n, heads, width = h.shape[-3], self.num_heads, self.features
        eye = jnp.eye(heads, dtype=h.dtype)
        blocks = [(eye[:, None, :] * w_2[:, part, None]).reshape(heads * width, heads)
                  for part in (slice(0, width), slice(width, 2 * width))]  # [heads·H, heads] each
        scores = h.reshape(h.shape[:-2] + (heads * width,)) @ jnp.concatenate(blocks, axis=-1)  # [..., N, 2·heads]
        own = jax.nn.one_hot(query, n, dtype=h.dtype)  # [..., N]
        src = jnp.einsum("...n,...nk->...k", own, scores[..., :heads])  # a_srcᵀ h_i [..., heads]
        logits = nn.leaky_relu(src[..., None, :] + scores[..., heads:], self.negative_slope)  # [..., N, heads]
        allowed = jnp.ones(own.shape, bool) if self.self_loops else own == 0
        if node_mask is not None:
            allowed = allowed & node_mask.astype(bool)  # never attend to absent nodes
        logits = jnp.where(allowed[..., None], logits, NEG_INF)
        attention = jax.nn.softmax(logits, axis=-2)  # over the neighbours j
        out = jnp.einsum("...nk,...nkf->...kf", attention, h)  # Σ_j w_ij h_j [..., heads, H]
        return self.merge_heads(out), jnp.swapaxes(attention, -1, -2)

    def merge_heads(self, out):
        """[..., heads, H] → [..., heads·H] (concatenated) or [..., H] (averaged)."""
        return out.reshape(out.shape[:-2] + (-1,)) if self.concat_heads else out.mean(axis=-2)
