"""Linear least squares (GradBench ``llsq``) in JAX, float64, ``jax.jit``; written from
the eval definition (evals/llsq/README.md), vectorised with a Vandermonde matrix."""
from __future__ import annotations

import numpy as np


def make(prepared):
    """``(primal, derivative)`` zero-argument callables for the prepared input
    ``(x, n)`` of ``kernels.llsq.prepare``; ``derivative()`` returns the gradient
    with respect to ``x`` (shape ``(m,)``, float64)."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    x, n = prepared
    m = x.shape[0]

    def objective(x):
        t = -1.0 + jnp.arange(n, dtype=jnp.float64) * 2.0 / (n - 1)
        V = jnp.vander(t, m, increasing=True)          # V[i, j] = t_i ** j
        r = jnp.sign(t) - V @ x
        return 0.5 * jnp.dot(r, r)

    xj = jnp.asarray(x, dtype=jnp.float64)
    f = jax.jit(objective)
    g = jax.jit(jax.grad(objective))

    def primal():
        return float(f(xj).block_until_ready())

    def derivative():
        return np.asarray(g(xj).block_until_ready())
    return primal, derivative
