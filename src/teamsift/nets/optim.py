"""The learners' gradient optimisers, by name (a config's `optimizer` field).

Three RMSProps are in use, and they differ where gradients are small, through where ε goes:

* "rmsprop": optax's defaults (decay 0.9, ε = 1e-8 under the root: g / √(ν + ε)); BC's.
* "rmsprop_pymarl": PyMARL's, the code ICQ and SIT were published with (PyTorch's RMSprop,
  decay 0.99, ε = 1e-5 added to the root: g / (√ν + ε)); ARDNEM's too.
* "rmsprop_eps_in_root": decay 0.99 and ε = 1e-5 under the root, as optax places it. This is
  what ICQ, SIT, MABCQ and MACQL have used so far, meant as PyMARL's. It is not the same
  optimiser: a parameter whose root-mean-square gradient is below √ε ≈ 3·10⁻³ moves by about
  that RMS / 3·10⁻³ of PyMARL's step, and it slows learning where gradients are small
  (benchmarks/results/overcooked-offline-rl-cpu.md measures BC and ICQ under each). It stays
  their default until their recorded tables are rerun, so that those results reproduce and
  their run directories resume.
"""

from __future__ import annotations

import functools

import optax

OPTIMIZERS = {
    "rmsprop": optax.rmsprop,
    "rmsprop_pymarl": functools.partial(optax.rmsprop, decay=0.99, eps=1e-5, eps_in_sqrt=False),
    "rmsprop_eps_in_root": functools.partial(optax.rmsprop, decay=0.99, eps=1e-5),
    "adam": optax.adam,
}


def clipped(name: str, learning_rate: float, max_grad_norm: float) -> optax.GradientTransformation:
    """`OPTIMIZERS[name]` after global-norm gradient clipping (none when `max_grad_norm` is 0)."""
    optimizer = OPTIMIZERS[name](learning_rate)
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optimizer) if max_grad_norm > 0 else optimizer
