"""Runge-Kutta ODE solution (GradBench ``ode``) in JAX, float64, ``jax.jit``; written
from the eval definition (evals/ode/README.md): ``s`` RK4 steps in a
``lax.fori_loop``; the derivative is the gradient of the last element of the
solution with respect to ``x`` (``jax.grad``)."""
from __future__ import annotations

import numpy as np


def make(prepared):
    """``(primal, derivative)`` zero-argument callables for the prepared input
    ``(x, s)`` of ``kernels.ode.prepare``; ``primal()`` returns ``y(2)`` and
    ``derivative()`` the gradient of ``y(2)[-1]`` (both shape ``(n,)``, float64)."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    x, s = prepared
    h = 2.0 / s

    def solve(x):
        def f(y):
            return jnp.concatenate([x[:1], x[1:] * y[:-1]])

        def step(_, y):
            k1 = f(y)
            k2 = f(y + (h / 2) * k1)
            k3 = f(y + (h / 2) * k2)
            k4 = f(y + h * k3)
            return y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)

        return jax.lax.fori_loop(0, s, step, jnp.zeros_like(x))

    xj = jnp.asarray(x, dtype=jnp.float64)
    f = jax.jit(solve)
    g = jax.jit(jax.grad(lambda x: solve(x)[-1]))

    def primal():
        return np.asarray(f(xj).block_until_ready())

    def derivative():
        return np.asarray(g(xj).block_until_ready())
    return primal, derivative
