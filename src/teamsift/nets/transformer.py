"""Transformer blocks shared by MILD²'s discriminator and its MAT generator.

Two families of attention live here:

* **Lipschitz attention** for the Wasserstein discriminator (MILD² §4.1 and its
  appendix C.1, following ViTGAN, Lee et al. 2022):
  - `L2Attention`: L2-distance self-attention with a TIED query/key projection
    (Kim et al. 2021, "The Lipschitz constant of self-attention"),
        P^h = softmax(−‖X W^h − X W^h‖² / √d_h),       (row i, column j: ‖x_i W^h − x_j W^h‖²)
        f^h(X) = P^h · V^h,
    with V^h = X W^h (W^h)ᵀ / √d_h · W_V^h (value="kim": Kim et al.'s value map, which
    is what makes the layer provably Lipschitz) or V^h = X W_V^h (value="free": the
    form written in ViTGAN / MILD², `softmax(−‖XW_q − XW_k‖²/√d_h)·XW_v`; not globally
    Lipschitz, see `L2Attention`). Heads are concatenated and projected by W_O.
  - `SpectralDense`: a dense layer whose kernel is spectrally normalised,
        W̄ = W · σ(W_init) / σ(W)   (ViTGAN's "improved" spectral norm, rescale=True)
        W̄ = W / σ(W)               (Miyato et al. 2018, Lipschitz ≤ 1, rescale=False)
    σ(W) estimated by power iteration, its vector `u` kept in the "spectral" collection.
* **Dot-product attention** (`DotProductAttention`) for MAT (Wen et al. 2022): scaled
  dot-product multi-head attention, self-attention with an optional causal mask, or
  cross-attention to a context sequence.

`EncoderBlock` and `DecoderBlock` combine attention, a two-layer GELU MLP, LayerNorm
and residual connections; `lipschitz=True` switches every projection to
`SpectralDense` and every attention to `L2Attention` (the discriminator),
`lipschitz=False` gives MAT's dot-product blocks.

Shapes: tokens are [..., N, D] (any leading batch axes). Every module that may hold
spectral normalisation takes `update_stats` in its call: with `update_stats=True` (and
`mutable=["spectral"]` in `apply`) one power-iteration step per call refines `u`, as in
Miyato et al.; with `update_stats=False` the layer is deterministic and needs no key.
"""

from __future__ import annotations

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
NEG_INF = -1e9
SPECTRAL = "spectral"  # the variable collection of the power-iteration state


# --- spectral normalisation ----------------------------------------------------------------

def _unit(x: Array) -> Array:
    return x / (jnp.linalg.norm(x) + 1e-12)


def power_iteration(kernel: Array, u: Array, steps: int = 1) -> Array:
    """`steps` power-iteration steps for the top right singular vector of kernel [in, out]
    (u ∈ R^out, unit): v ← W u / ‖W u‖, u ← Wᵀ v / ‖Wᵀ v‖."""
    for _ in range(steps):
        v = _unit(kernel @ u)
        u = _unit(kernel.T @ v)
    return u


def spectral_norm_estimate(kernel: Array, u: Array) -> Array:
    """σ̂(W) = ‖W u‖ for the (gradient-stopped) power-iteration vector u. It is ≤ σ(W) and
    equal to it when u is the top right singular vector; gradients flow through W."""
    return jnp.linalg.norm(kernel @ jax.lax.stop_gradient(u))


def spectral_kernel(kernel: Array, u: Array, sigma_init: Array, rescale: bool) -> Array:
    """The normalised kernel W̄ = W · (σ(W_init) if rescale else 1) / σ̂(W) (ViTGAN eq. 4)."""
    scale = sigma_init if rescale else 1.0
    return kernel * scale / spectral_norm_estimate(kernel, u)


def _top_singular(kernel: Array) -> tuple[Array, Array]:
    """(σ_max, top right singular vector) of a 2-D kernel, exactly (SVD)."""
    _, s, vt = jnp.linalg.svd(kernel, full_matrices=False)
    return s[0], vt[0]


def normalize_kernel(module: nn.Module, name: str, kernel: Array, rescale: bool, update_stats: bool,
                     steps: int = 1) -> Array:
    """Spectrally normalise `kernel` (any shape; viewed as [shape[0], rest]) inside a
    compact method of `module`, keeping `{name}_u` and `{name}_sigma_init` in the
    "spectral" collection. At initialisation u is the exact top singular vector and
    σ(W_init) the exact spectral norm of the initial kernel (so the estimate starts
    converged); `update_stats=True` runs `steps` power-iteration steps and stores u."""
    flat = kernel.reshape(kernel.shape[0], -1)
    top = _top_singular(jax.lax.stop_gradient(flat)) if module.is_initializing() else None
    sigma_init = module.variable(SPECTRAL, f"{name}_sigma_init", lambda: top[0])
    u = module.variable(SPECTRAL, f"{name}_u", lambda: top[1])
    if update_stats and not module.is_initializing():
        u.value = power_iteration(jax.lax.stop_gradient(flat), u.value, steps)
    return spectral_kernel(flat, u.value, sigma_init.value, rescale).reshape(kernel.shape)


class SpectralDense(nn.Module):
    """Dense layer x W̄ + b with a spectrally normalised kernel (ViTGAN, Lee et al. 2022).

    rescale=True: W̄ = W σ(W_init)/σ(W) — ViTGAN's rescaling keeps the layer's initial
    scale, its Lipschitz constant is σ(W_init). rescale=False: W̄ = W/σ(W), Lipschitz ≤ 1
    (Miyato et al. 2018). `lipschitz_bound(variables)` says which.
    """

    features: int
    use_bias: bool = True
    rescale: bool = True
    power_steps: int = 1
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: Array, update_stats: bool = False) -> Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
        kernel = normalize_kernel(self, "kernel", kernel, self.rescale, update_stats, self.power_steps)
        y = x @ kernel
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y

    def lipschitz_bound(self, variables) -> float:
        """The Lipschitz constant the layer claims: σ(W_init) (rescale) or 1."""
        return float(variables[SPECTRAL]["kernel_sigma_init"]) if self.rescale else 1.0


class Linear(nn.Module):
    """A dense layer that is `SpectralDense` when `spectral`, else a plain `nn.Dense`."""

    features: int
    use_bias: bool = True
    spectral: bool = False
    rescale: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: Array, update_stats: bool = False) -> Array:
        if self.spectral:
            return SpectralDense(self.features, self.use_bias, self.rescale, kernel_init=self.kernel_init)(
                x, update_stats)
        return nn.Dense(self.features, use_bias=self.use_bias, kernel_init=self.kernel_init)(x)


# --- masks ---------------------------------------------------------------------------------

def causal_mask(n: int) -> Array:
    """[n, n] bool: token i may attend to tokens j ≤ i."""
    return jnp.tril(jnp.ones((n, n), bool))


def _masked(logits: Array, mask: Array | None) -> Array:
    return logits if mask is None else jnp.where(mask, logits, NEG_INF)


def _split_heads(x: Array, heads: int) -> Array:
    """[..., N, H·d] → [..., H, N, d]."""
    x = x.reshape(x.shape[:-1] + (heads, x.shape[-1] // heads))
    return jnp.swapaxes(x, -2, -3)


def _merge_heads(x: Array) -> Array:
    """[..., H, N, d] → [..., N, H·d]."""
    x = jnp.swapaxes(x, -2, -3)
    return x.reshape(x.shape[:-2] + (-1,))


# --- L2 attention --------------------------------------------------------------------------

def l2_self_attention_constant(num_tokens: int) -> float:
    """Lipschitz constant (Frobenius norm on [N, d]) of unit L2 self-attention
    g(Z)_i = Σ_j softmax_j(−‖z_i − z_j‖²) z_j over N tokens:

        Lip(g) ≤ √N · (1 + (N + 1)(N − 1 + √N) / e).

    Our own (crude, dimension-free) bound, derived as in Kim et al. 2021 §3: with
    r_j = ‖z_i − z_j‖, P_ij ≤ exp(−r_j²) because the self term contributes exp(0) to the
    normaliser, and dg_i = Σ_j P_ij dz_j + Σ_j P_ij ds_ij (z_j − g_i) with
    ds_ij = −2 (z_i − z_j)ᵀ(dz_i − dz_j); max_r 2r²e^{−r²} = 2/e, max_r re^{−r²} = 1/√(2e).
    Holds for any mask that keeps every token's own position (e.g. causal), not for
    cross-attention. Kim et al.'s Theorem 3.2 gives a tighter O(√N log N) bound.
    """
    n = float(num_tokens)
    return math.sqrt(n) * (1.0 + (n + 1.0) * (n - 1.0 + math.sqrt(n)) / math.e)


class L2Attention(nn.Module):
    """Multi-head L2-distance attention with tied query/key projection W (W_q = W_k).

    __call__(x [..., N, D], context [..., M, D] | None, mask [N, M] | None, update_stats)
    → [..., N, out_features]. Self-attention when `context` is None; with a context the
    queries x W and keys context·W share the same W (tied cross-attention, as the
    discriminator's decoder may use; no Lipschitz guarantee there).

    value="kim" (default): V^h = C W^h (W^h)ᵀ/√d_h W_V^h — Kim et al. 2021's L2-MHA, which
    is Lipschitz: `lipschitz_bound(variables, N)` returns
        Lip ≤ l2_self_attention_constant(N) · √(Σ_h (‖W^h‖ ‖(W^h)ᵀ W_V^h‖)²) / √d_h · ‖W_O‖
    (the bound of f^h(X) = g(X W^h/d_h^¼) · (W^h)ᵀ W_V^h/d_h^¼, `g` unit L2 attention).
    value="free": V^h = C W_V^h (ViTGAN's and MILD²'s formula). This is NOT globally
    Lipschitz — a token j with x_j W^h = x_i W^h but a huge x_j W_V^h makes the Jacobian
    unbounded — though on random inputs it stays bounded where dot-product attention
    does not; `lipschitz_bound` returns inf.
    spectral=True: W, W_V and W_O are spectrally normalised (`normalize_kernel`).
    The tied projection has no bias (it would cancel in the distance).
    """

    num_heads: int = 1
    head_dim: int | None = None  # default: out_features // num_heads
    out_features: int | None = None  # default: the input width D
    value: str = "kim"  # "kim" | "free"
    spectral: bool = False
    rescale: bool = True  # spectral=True: ViTGAN rescaling by σ(W_init) (else W/σ(W))
    power_steps: int = 1

    def _dims(self, d_in: int) -> tuple[int, int]:
        out = self.out_features or d_in
        head = self.head_dim or max(1, out // self.num_heads)
        return out, head

    def _weight(self, name: str, shape, update_stats: bool) -> Array:
        kernel = self.param(name, nn.initializers.lecun_normal(), shape)
        if self.spectral:
            kernel = normalize_kernel(self, name, kernel, self.rescale, update_stats, self.power_steps)
        return kernel

    @nn.compact
    def __call__(self, x: Array, context: Array | None = None, mask: Array | None = None,
                 update_stats: bool = False) -> Array:
        if self.value not in ("kim", "free"):
            raise ValueError(f"L2Attention.value: expected 'kim' or 'free', got {self.value!r}")
        d_in = x.shape[-1]
        out_dim, d_h = self._dims(d_in)
        heads = self.num_heads
        ctx = x if context is None else context
        w = self._weight("query", (d_in, heads * d_h), update_stats)  # tied W_q = W_k
        w_v = self._weight("value", (d_in, heads * d_h), update_stats)
        w_o = self._weight("out", (heads * d_h, out_dim), update_stats)
        q = _split_heads(x @ w, heads)  # [..., H, N, d_h]
        k = _split_heads(ctx @ w, heads)  # [..., H, M, d_h]
        sq_dist = jnp.sum((q[..., :, None, :] - k[..., None, :, :]) ** 2, axis=-1)  # [..., H, N, M]
        attention = jax.nn.softmax(_masked(-sq_dist / math.sqrt(d_h), mask), axis=-1)
        v = self._values(ctx, k, w, w_v, d_h)
        y = _merge_heads(attention @ v) @ w_o
        return y + self.param("out_bias", nn.initializers.zeros, (out_dim,))

    def _values(self, ctx: Array, k: Array, w: Array, w_v: Array, d_h: int) -> Array:
        """[..., H, M, d_h]: Kim's C W (W)ᵀ/√d_h W_V per head, or plain C W_V."""
        heads = self.num_heads
        if self.value == "free":
            return _split_heads(ctx @ w_v, heads)
        w_heads = w.reshape(w.shape[0], heads, d_h)  # W^h = w_heads[:, h]
        wv_heads = w_v.reshape(w_v.shape[0], heads, d_h)
        back = jnp.einsum("...hmd,ehd->...hme", k, w_heads) / math.sqrt(d_h)  # C W^h (W^h)ᵀ/√d_h
        return jnp.einsum("...hme,ehf->...hmf", back, wv_heads)

    def lipschitz_bound(self, variables, num_tokens: int) -> float:
        """Upper bound on the layer's Lipschitz constant (Frobenius norms) as self-attention
        over `num_tokens` tokens, from its effective (normalised) weights."""
        if self.value == "free":
            return math.inf
        params = variables["params"]
        d_in = params["query"].shape[0]
        _, d_h = self._dims(d_in)
        w, w_v, w_o = (np.asarray(self._effective(variables, name)) for name in ("query", "value", "out"))
        per_head = []
        for h in range(self.num_heads):
            wh, wvh = w[:, h * d_h:(h + 1) * d_h], w_v[:, h * d_h:(h + 1) * d_h]
            per_head.append(np.linalg.norm(wh, 2) * np.linalg.norm(wh.T @ wvh, 2))
        heads = math.sqrt(sum(p**2 for p in per_head)) / math.sqrt(d_h)
        return l2_self_attention_constant(num_tokens) * heads * float(np.linalg.norm(w_o, 2))

    def _effective(self, variables, name: str) -> Array:
        kernel = variables["params"][name]
        if not self.spectral:
            return kernel
        sn = variables[SPECTRAL]
        return spectral_kernel(kernel, sn[f"{name}_u"], sn[f"{name}_sigma_init"], self.rescale)


# --- dot-product attention -----------------------------------------------------------------

class DotProductAttention(nn.Module):
    """Scaled dot-product multi-head attention (Vaswani et al. 2017), as MAT uses it.

    __call__(x [..., N, D], context [..., M, D] | None, mask [N, M] | None) → [..., N, out].
    softmax(Q Kᵀ/√d_h) V with Q = x W_q, K = context W_k, V = context W_v (self-attention
    when context is None); masked entries get −1e9 before the softmax.
    """

    num_heads: int = 1
    head_dim: int | None = None
    out_features: int | None = None

    @nn.compact
    def __call__(self, x: Array, context: Array | None = None, mask: Array | None = None,
                 update_stats: bool = False) -> Array:
        del update_stats  # no spectral normalisation here
        out_dim = self.out_features or x.shape[-1]
        d_h = self.head_dim or max(1, out_dim // self.num_heads)
        width = self.num_heads * d_h
        ctx = x if context is None else context
        q = _split_heads(nn.Dense(width, name="query")(x), self.num_heads)
        k = _split_heads(nn.Dense(width, name="key")(ctx), self.num_heads)
        v = _split_heads(nn.Dense(width, name="value")(ctx), self.num_heads)
        logits = q @ jnp.swapaxes(k, -1, -2) / math.sqrt(d_h)  # [..., H, N, M]
        attention = jax.nn.softmax(_masked(logits, mask), axis=-1)
        return nn.Dense(out_dim, name="out")(_merge_heads(attention @ v))


# --- blocks --------------------------------------------------------------------------------

class _BlockParts(nn.Module):
    """Shared fields of encoder and decoder blocks (not used on its own)."""

    d_model: int
    num_heads: int = 1
    lipschitz: bool = False  # L2Attention + SpectralDense (discriminator) | dot-product + Dense (MAT)
    pre_norm: bool = False  # True: x + f(LN(x)); False: LN(x + f(x)) (MAT's post-norm)
    layer_norm: bool = True  # False: no LayerNorm at all (LayerNorm is not Lipschitz)
    mlp_ratio: int = 1  # MLP hidden width = mlp_ratio · d_model (MAT: 1)
    rescale: bool = True  # spectral normalisation with ViTGAN's σ(W_init) rescaling
    l2_value: str = "kim"  # L2Attention.value

    def attention(self, name: str):
        if self.lipschitz:
            return L2Attention(self.num_heads, out_features=self.d_model, value=self.l2_value, spectral=True,
                               rescale=self.rescale, name=name)
        return DotProductAttention(self.num_heads, out_features=self.d_model, name=name)

    def norm(self, name: str):
        return nn.LayerNorm(name=name) if self.layer_norm else (lambda x: x)

    def residual(self, x: Array, fn: Callable[[Array], Array], norm) -> Array:
        """x + fn(norm(x)) (pre-norm) or norm(x + fn(x)) (post-norm)."""
        return x + fn(norm(x)) if self.pre_norm else norm(x + fn(x))

    def mlp(self, x: Array, update_stats: bool, name: str) -> Array:
        hidden = Linear(self.mlp_ratio * self.d_model, spectral=self.lipschitz, rescale=self.rescale,
                        name=f"{name}_in")(x, update_stats)
        return Linear(self.d_model, spectral=self.lipschitz, rescale=self.rescale, name=f"{name}_out")(
            nn.gelu(hidden), update_stats)


class EncoderBlock(_BlockParts):
    """Self-attention (unmasked, or causal with `causal`) + MLP, each with a residual and
    LayerNorm. x [..., N, d_model] → [..., N, d_model]."""

    causal: bool = False

    @nn.compact
    def __call__(self, x: Array, update_stats: bool = False) -> Array:
        mask = causal_mask(x.shape[-2]) if self.causal else None
        attn = self.attention("self_attn")
        x = self.residual(x, lambda h: attn(h, mask=mask, update_stats=update_stats), self.norm("ln_attn"))
        return self.residual(x, lambda h: self.mlp(h, update_stats, "mlp"), self.norm("ln_mlp"))


class DecoderBlock(_BlockParts):
    """Self-attention over the decoder stream x (causal with `causal`), cross-attention
    between x and the encoder output `enc`, and an MLP, each with residual and LayerNorm.

    mat_layout=True (Wen et al. 2022's MAT decoder block): the cross-attention's QUERIES
    are the encoder tokens and its keys/values the decoder stream (causally masked when
    `causal`), and the residual is the encoder stream: h = LN(enc + Attn(enc, x)). Token i
    thus starts from agent i's own encoded observation and sees only actions before it.
    mat_layout=False (standard transformer decoder): h = LN(x + Attn(x, enc)).
    x, enc [..., N, d_model] → [..., N, d_model].
    """

    causal: bool = False
    mat_layout: bool = True

    @nn.compact
    def __call__(self, x: Array, enc: Array, update_stats: bool = False) -> Array:
        mask = causal_mask(x.shape[-2]) if self.causal else None
        self_attn, cross_attn = self.attention("self_attn"), self.attention("cross_attn")
        x = self.residual(x, lambda h: self_attn(h, mask=mask, update_stats=update_stats), self.norm("ln_self"))
        if self.mat_layout:
            ln_x = self.norm("ln_cross_ctx") if self.pre_norm else (lambda h: h)
            ctx = ln_x(x)
            h = self.residual(enc, lambda e: cross_attn(e, context=ctx, mask=mask, update_stats=update_stats),
                              self.norm("ln_cross"))
        else:
            h = self.residual(x, lambda q: cross_attn(q, context=enc, update_stats=update_stats),
                              self.norm("ln_cross"))
        return self.residual(h, lambda t: self.mlp(t, update_stats, "mlp"), self.norm("ln_mlp"))
