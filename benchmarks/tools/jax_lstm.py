"""LSTM objective (GradBench ``lstm``) in JAX, float64, ``jax.jit``; written from the
eval definition (evals/lstm/README.md and the golden ``lstm.hpp``): ``lax.scan`` over
the characters, the layers unrolled, vectorised over the hidden units."""
from __future__ import annotations

import numpy as np


def make(prepared):
    """``(primal, derivative)`` for the tuple from ``kernels.lstm.prepare``;
    ``derivative()`` returns the flat gradient (row-major main_params, then extra_params)."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    main_params, extra_params, state, sequence = (jnp.asarray(a) for a in prepared)
    n_layers = main_params.shape[0] // 2
    c, b = sequence.shape

    def loss(main_params, extra_params):
        W = main_params[0::2].reshape(n_layers, 4, b)
        B = main_params[1::2].reshape(n_layers, 4, b)

        def step(carry, xy):
            hidden, cell = carry                     # (n_layers, b) each
            x, y = xy
            inp = x * extra_params[0]
            hs, cs = [], []
            for i in range(n_layers):
                f = jax.nn.sigmoid(inp * W[i, 0] + B[i, 0])
                ig = jax.nn.sigmoid(hidden[i] * W[i, 1] + B[i, 1])
                o = jax.nn.sigmoid(inp * W[i, 2] + B[i, 2])
                g = jnp.tanh(hidden[i] * W[i, 3] + B[i, 3])
                s = cell[i] * f + ig * g
                h = o * jnp.tanh(s)
                hs.append(h)
                cs.append(s)
                inp = h
            ypred = inp * extra_params[1] + extra_params[2]
            lse = jnp.log(jnp.sum(jnp.exp(ypred)) + 2.0)
            return (jnp.stack(hs), jnp.stack(cs)), jnp.sum(y * (ypred - lse))

        _, totals = jax.lax.scan(step, (state[0::2], state[1::2]), (sequence[:-1], sequence[1:]))
        return -jnp.sum(totals) / ((c - 1) * b)

    f = jax.jit(loss)
    g = jax.jit(jax.grad(loss, argnums=(0, 1)))

    def primal():
        return float(f(main_params, extra_params).block_until_ready())

    def derivative():
        gm, ge = g(main_params, extra_params)
        return np.concatenate([np.asarray(gm).ravel(), np.asarray(ge).ravel()])
    return primal, derivative
