"""Transformer blocks (teamsift.nets.transformer): spectral normalisation converges and
bounds the dense layer's Lipschitz constant, L2 attention stays within its Lipschitz bound
while dot-product attention's local Lipschitz constant grows with the input scale, and
causal blocks never look ahead."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from teamsift.nets.transformer import (
    DecoderBlock, DotProductAttention, EncoderBlock, L2Attention, SpectralDense, l2_self_attention_constant,
)

N, D = 4, 8  # tokens, width


def _init(module, key, *args):
    """Initialise under jit (one compilation instead of one per operation)."""
    return jax.jit(module.init)(key, *args)


def _pair_ratios(fn, key, shape, scale, num_pairs=512, local=False):
    """‖f(x) − f(y)‖ / ‖x − y‖ over random pairs (y = x + a small step when `local`);
    `fn` acts on one input of `shape` and is batched here."""
    kx, ky = jax.random.split(key)
    x = scale * jax.random.normal(kx, (num_pairs,) + shape)
    step = jax.random.normal(ky, (num_pairs,) + shape)
    y = x + 1e-2 * step if local else scale * step
    return np.asarray(_ratios(fn, x, y))


@jax.jit(static_argnums=0)
def _ratios(fn, x, y):
    fx, fy = jax.vmap(fn)(x), jax.vmap(fn)(y)
    axes = tuple(range(1, x.ndim))
    return jnp.sqrt(jnp.sum((fx - fy) ** 2, axes)) / jnp.sqrt(jnp.sum((x - y) ** 2, axes))


def _jacobians(fn, xs):
    """Local Lipschitz constants at each x in xs: spectral norms of the Jacobians of vec f."""
    shape = xs.shape[1:]
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda v: fn(v.reshape(shape)).reshape(-1))))(xs.reshape(len(xs), -1))
    return np.linalg.norm(np.asarray(jac, np.float64), 2, axis=(1, 2))


# --- spectral normalisation ----------------------------------------------------------------

def _random_kernel(variables, key, scale=3.0):
    params = dict(variables["params"])
    params["kernel"] = scale * jax.random.normal(key, params["kernel"].shape)
    return {**variables, "params": params}


def test_spectral_dense_plain_converges_and_is_1_lipschitz():
    layer = SpectralDense(12, rescale=False)
    x0 = jnp.zeros((D,))
    variables = _random_kernel(_init(layer, jax.random.key(0), x0), jax.random.key(1))
    kernel = np.asarray(variables["params"]["kernel"])
    true_sigma = np.linalg.norm(kernel, 2)
    assert true_sigma > 3.0  # a kernel far from normalised, with a stale u from init
    for _ in range(50):  # power iteration: one step per call with update_stats=True
        _, state = layer.apply(variables, x0, update_stats=True, mutable=["spectral"])
        variables = {**variables, **state}
    u = variables["spectral"]["kernel_u"]
    estimate = float(jnp.linalg.norm(kernel @ u))
    assert abs(estimate - true_sigma) / true_sigma < 1e-4
    apply = jax.jit(lambda v: layer.apply(variables, v))  # deterministic, no key
    effective = np.asarray(jax.jacfwd(apply)(x0)).T  # [D, 12]: x ↦ x W̄
    assert np.linalg.norm(effective, 2) == pytest.approx(1.0, abs=1e-3)
    ratios = _pair_ratios(apply, jax.random.key(2), (D,), 5.0, num_pairs=4096)
    assert ratios.max() <= 1.0 + 1e-3
    assert layer.lipschitz_bound(variables) == 1.0
    np.testing.assert_array_equal(np.asarray(apply(jnp.ones(D))), np.asarray(apply(jnp.ones(D))))


def test_spectral_dense_vitgan_rescaling_keeps_the_initial_scale():
    layer = SpectralDense(6)  # rescale=True: W σ(W_init)/σ(W)
    x = jax.random.normal(jax.random.key(3), (32, D))
    variables = _init(layer, jax.random.key(4), x)
    kernel = variables["params"]["kernel"]
    sigma_init = float(variables["spectral"]["kernel_sigma_init"])
    assert sigma_init == pytest.approx(float(np.linalg.norm(np.asarray(kernel), 2)), rel=1e-5)
    # At initialisation W̄ = W: the layer is an ordinary dense layer.
    np.testing.assert_allclose(np.asarray(layer.apply(variables, x)), np.asarray(x @ kernel), atol=1e-5)
    # Scaling the kernel up (as training might) does not change the normalised layer.
    scaled = {**variables, "params": {**variables["params"], "kernel": 10.0 * kernel}}
    np.testing.assert_allclose(np.asarray(layer.apply(scaled, x)), np.asarray(x @ kernel), atol=1e-4)
    bound = layer.lipschitz_bound(variables)
    ratios = _pair_ratios(lambda v: layer.apply(scaled, v), jax.random.key(5), (D,), 3.0, num_pairs=4096)
    assert ratios.max() <= bound * (1 + 1e-3)
    # Gradients reach the raw kernel through the normalisation.
    grad = jax.grad(lambda p: jnp.sum(layer.apply({**variables, "params": p}, x) ** 2))(variables["params"])
    assert np.all(np.isfinite(np.asarray(grad["kernel"]))) and float(jnp.abs(grad["kernel"]).sum()) > 0


# --- L2 attention --------------------------------------------------------------------------

@pytest.mark.parametrize("spectral", [False, True])
def test_l2_attention_within_its_lipschitz_bound(spectral):
    layer = L2Attention(num_heads=2, spectral=spectral, rescale=False)  # spectral: ‖W‖, ‖W_V‖, ‖W_O‖ ≈ 1
    variables = _init(layer, jax.random.key(6), jnp.zeros((N, D)))
    bound = layer.lipschitz_bound(variables, N)
    assert np.isfinite(bound) and bound > 0
    apply = jax.jit(lambda x: layer.apply(variables, x))
    worst = 0.0
    for i, scale in enumerate([0.1, 1.0, 3.0, 10.0, 100.0]):
        for local in (False, True):
            worst = max(worst, _pair_ratios(apply, jax.random.key(10 + i), (N, D), scale, local=local).max())
        xs = scale * jax.random.normal(jax.random.key(20 + i), (8, N, D))
        worst = max(worst, _jacobians(apply, xs).max())
    assert worst <= bound
    print(f"L2 attention (spectral={spectral}): worst empirical Lipschitz ratio {worst:.3f} <= bound {bound:.2f}")


def test_l2_self_attention_constant_is_increasing():
    values = [l2_self_attention_constant(n) for n in range(1, 6)]
    assert values[0] == pytest.approx(1.0 + 2.0 / np.e)
    assert all(a < b for a, b in zip(values, values[1:]))


def _spread_tokens(scale, key):
    """Kim et al.'s example: one token at 0, the others at ±scale·v. Dot-product attention
    is uniform at the zero token and its Jacobian grows like scale²."""
    v = jax.random.normal(key, (D,))
    return jnp.stack([jnp.zeros(D), scale * v, -scale * v, 0.5 * scale * v])


def test_dot_product_attention_is_not_lipschitz_but_l2_attention_is():
    x0 = jnp.zeros((N, D))
    dot = DotProductAttention(num_heads=2)
    dot_vars = _init(dot, jax.random.key(7), x0)
    kim = L2Attention(num_heads=2)
    free = L2Attention(num_heads=2, value="free")
    kim_vars, free_vars = _init(kim, jax.random.key(7), x0), _init(free, jax.random.key(7), x0)
    scales = [1.0, 4.0, 16.0]
    xs = jnp.stack([_spread_tokens(s, jax.random.key(30 + i)) for s in scales for i in range(4)])
    fns = {"dot": lambda z: dot.apply(dot_vars, z), "kim": lambda z: kim.apply(kim_vars, z),
           "free": lambda z: free.apply(free_vars, z)}
    lips = {name: _jacobians(fn, xs).reshape(len(scales), 4).max(axis=1).tolist() for name, fn in fns.items()}
    print("local Lipschitz constants at scales", scales, {k: np.round(v, 2).tolist() for k, v in lips.items()})
    # Dot-product: grows roughly like scale² (here at least ×50 from scale 1 to 16).
    assert lips["dot"][-1] > 50 * lips["dot"][0]
    assert lips["dot"][-1] > 10 * kim.lipschitz_bound(kim_vars, N)
    # L2 (tied W_q = W_k): bounded, within the layer's bound for Kim's value map.
    assert max(lips["kim"]) <= kim.lipschitz_bound(kim_vars, N)
    assert lips["free"][-1] <= 2 * max(lips["free"][0], 1.0)
    assert free.lipschitz_bound(free_vars, N) == np.inf


def test_l2_attention_masks_and_cross_attention():
    layer = L2Attention(num_heads=1)
    x = jax.random.normal(jax.random.key(8), (2, N, D))
    ctx = jax.random.normal(jax.random.key(9), (2, 6, D))
    variables = _init(layer, jax.random.key(10), x)
    apply = jax.jit(layer.apply)
    assert apply(variables, x, context=ctx).shape == (2, N, D)
    # With a causal mask, tokens 0…2 do not see token 3: changing it leaves them alone.
    mask = jnp.tril(jnp.ones((N, N), bool))
    a = apply(variables, x, mask=mask)
    b = apply(variables, x.at[:, 3].add(5.0), mask=mask)
    np.testing.assert_allclose(np.asarray(a[:, :3]), np.asarray(b[:, :3]), atol=1e-6)


# --- blocks --------------------------------------------------------------------------------

@pytest.mark.parametrize("lipschitz", [False, True])
def test_causal_blocks_never_look_ahead(lipschitz):
    x = jax.random.normal(jax.random.key(11), (3, N, 16))
    enc = jax.random.normal(jax.random.key(12), (3, N, 16))
    changed = x.at[:, 2:].add(jax.random.normal(jax.random.key(13), (3, N - 2, 16)))
    encoder = EncoderBlock(16, 2, lipschitz=lipschitz, causal=True)
    ev = _init(encoder, jax.random.key(14), x)
    apply = jax.jit(encoder.apply)
    a, b = apply(ev, x), apply(ev, changed)
    np.testing.assert_allclose(np.asarray(a[:, :2]), np.asarray(b[:, :2]), atol=1e-5)
    assert not np.allclose(np.asarray(a[:, 2:]), np.asarray(b[:, 2:]))
    for layout in (True, False):
        decoder = DecoderBlock(16, 2, lipschitz=lipschitz, causal=True, mat_layout=layout)
        dv = _init(decoder, jax.random.key(15), x, enc)
        apply = jax.jit(decoder.apply)
        a, b = apply(dv, x, enc), apply(dv, changed, enc)
        np.testing.assert_allclose(np.asarray(a[:, :2]), np.asarray(b[:, :2]), atol=1e-5)
        assert not np.allclose(np.asarray(a[:, 2:]), np.asarray(b[:, 2:]))


def test_lipschitz_blocks_update_their_power_iteration_state():
    x = jax.random.normal(jax.random.key(16), (2, N, 16))
    block = DecoderBlock(16, 1, lipschitz=True, causal=False, pre_norm=True, layer_norm=False)
    variables = _init(block, jax.random.key(17), x, x)
    assert "spectral" in variables and "ln_self" not in variables["params"]
    variables = {**variables, "params": jax.tree.map(lambda p: 2.0 * p, variables["params"])}
    before = jax.tree.leaves(variables["spectral"])
    out, state = block.apply(variables, x, x, update_stats=True, mutable=["spectral"])
    after = jax.tree.leaves(state["spectral"])
    assert out.shape == x.shape and all(np.all(np.isfinite(np.asarray(leaf))) for leaf in after)
    # Doubling a kernel keeps its singular vectors, so u is unchanged up to rounding.
    for b, a in zip(before, after):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-4)
