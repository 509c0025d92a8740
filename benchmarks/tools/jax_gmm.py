"""GMM objective (GradBench ``gmm``) in JAX, float64, ``jax.jit``; written from the
eval definition (evals/gmm/README.md), vectorized the way a JAX user writes it."""
from __future__ import annotations

import math

import numpy as np


def make(prepared):
    """``(primal, derivative)`` zero-argument callables for the prepared GMM input
    (the tuple from ``kernels.gmm.prepare``); ``derivative()`` returns the flat
    gradient with respect to (alpha, mu, q, l)."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp, multigammaln

    alpha, mu, q, l, x, gamma, m = prepared
    k, d = mu.shape
    n = x.shape[0]
    rows, cols = np.triu_indices(d, 1)       # (col, row) pairs of the strict lower part
    diag = np.arange(d)

    def objective(alpha, mu, q, l):
        Q = jnp.zeros((k, d, d)).at[:, diag, diag].set(jnp.exp(q)).at[:, cols, rows].set(l)
        xc = x[None, :, :] - mu[:, None, :]                      # (k, n, d)
        Qxc = jnp.einsum("kij,knj->kni", Q, xc)
        beta = alpha[:, None] + q.sum(axis=1)[:, None] - 0.5 * jnp.sum(Qxc ** 2, axis=2)
        loglik = -n * (0.5 * d * math.log(2 * math.pi) + logsumexp(alpha)) + \
            jnp.sum(logsumexp(beta, axis=0))
        dof = d + m + 1
        logprior = k * (dof * d * jnp.log(gamma / jnp.sqrt(2.0)) - multigammaln(0.5 * dof, d)) \
            - 0.5 * gamma ** 2 * jnp.sum(Q ** 2) + m * jnp.sum(q)
        return loglik + logprior

    args = tuple(jnp.asarray(a) for a in (alpha, mu, q, l))
    f = jax.jit(objective)
    g = jax.jit(jax.grad(objective, argnums=(0, 1, 2, 3)))

    def primal():
        return float(f(*args).block_until_ready())

    def derivative():
        gs = g(*args)
        return np.concatenate([np.asarray(a).ravel() for a in gs])
    return primal, derivative
