"""LogSumExp (GradBench ``lse``) in JAX, float64, ``jax.jit``; written from the eval
definition (evals/lse/README.md): a maximum and a sum, differentiated by ``jax.grad``."""
from __future__ import annotations

import numpy as np


def make(prepared):
    """``(primal, derivative)`` zero-argument callables for the prepared input
    ``(x,)`` of ``kernels.lse.prepare``; ``derivative()`` returns the gradient
    (shape ``(n,)``, float64)."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    (x,) = prepared

    def lse(x):
        a = jnp.max(x)
        return a + jnp.log(jnp.sum(jnp.exp(x - a)))

    xj = jnp.asarray(x, dtype=jnp.float64)
    f = jax.jit(lse)
    g = jax.jit(jax.grad(lse))

    def primal():
        return float(f(xj).block_until_ready())

    def derivative():
        return np.asarray(g(xj).block_until_ready())
    return primal, derivative
