"""Bundle adjustment (GradBench ``ba``) in JAX, float64, ``jax.jit``; written from the
eval definition (evals/ba/README.md and the golden ``ba.hpp``).  The residual of one
observation is differentiated with ``jax.jacrev`` and ``jax.vmap``-ed over the
observations; ``derivative()`` assembles GradBench's CSR arrays from the blocks and
returns the Jacobian as ``kernels.ba.flat_derivative`` does."""
from __future__ import annotations

import numpy as np


def _residual_fn(jnp):
    def rotate(rot, v):
        sq = jnp.sum(rot * rot)
        nz = sq != 0.0
        theta = jnp.sqrt(jnp.where(nz, sq, 1.0))
        k = rot / theta
        rotated = (v * jnp.cos(theta) + jnp.cross(k, v) * jnp.sin(theta)
                   + k * jnp.dot(k, v) * (1.0 - jnp.cos(theta)))
        return jnp.where(nz, rotated, v + jnp.cross(rot, v))

    def residual(cam, x, w, feat):
        y = rotate(cam[0:3], x - cam[3:6])
        q = y[:2] / y[2]
        rsq = jnp.sum(q * q)
        q = q * (1.0 + cam[9] * rsq + cam[10] * rsq * rsq)
        return w * (q * cam[6] + cam[7:9] - feat)
    return residual


def make(prepared):
    """``(primal, derivative)`` for the tuple ``(cams, X, w, obs, feats)`` from
    ``kernels.ba.prepare``; ``primal()`` returns ``(reproj_err (2p,), w_err (p,))``."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from kernels.ba import N_CAM_PARAMS, jacobian_matrix

    cams, X, w, obs, feats = prepared
    n, m, p = cams.shape[0], X.shape[0], w.shape[0]
    residual = _residual_fn(jnp)
    jcams, jX, jw, jfeats = (jnp.asarray(a) for a in (cams, X, w, feats))
    ci, pi = jnp.asarray(obs[:, 0]), jnp.asarray(obs[:, 1])

    @jax.jit
    def objective(cams, X, w):
        r = jax.vmap(residual)(cams[ci], X[pi], w, jfeats)
        return r.reshape(-1), 1.0 - w * w

    @jax.jit
    def blocks(cams, X, w):
        jc, jx, jwr = jax.vmap(jax.jacrev(residual, argnums=(0, 1, 2)))(cams[ci], X[pi], w, jfeats)
        reproj = jnp.concatenate([jc, jx, jwr[:, :, None]], axis=2)     # (p, 2, 15)
        return reproj, -2.0 * w

    def primal():
        r, e = objective(jcams, jX, jw)
        return np.asarray(r), np.asarray(e)

    def derivative():
        reproj, dw = blocks(jcams, jX, jw)
        vals = np.concatenate([np.asarray(reproj).ravel(), np.asarray(dw)])
        rows, cols = _structure(n, m, p, obs)
        return jacobian_matrix(rows, cols, vals, (3 * p, N_CAM_PARAMS * n + 3 * m + p))
    return primal, derivative


def _structure(n, m, p, obs):
    """GradBench's CSR ``rows`` (3p + 1,) and ``cols`` (31p,), int32, for the BA Jacobian."""
    rows = np.empty(3 * p + 1, dtype=np.int32)
    rows[:2 * p + 1] = np.arange(0, 30 * p + 1, 15, dtype=np.int32)
    rows[2 * p + 1:] = np.arange(30 * p + 1, 31 * p + 1, dtype=np.int32)
    cols = np.empty(31 * p, dtype=np.int32)
    block = cols[:30 * p].reshape(p, 2, 15)
    block[:, :, :11] = (11 * obs[:, 0])[:, None, None] + np.arange(11, dtype=np.int32)
    block[:, :, 11:14] = (11 * n + 3 * obs[:, 1])[:, None, None] + np.arange(3, dtype=np.int32)
    wcols = np.arange(11 * n + 3 * m, 11 * n + 3 * m + p, dtype=np.int32)
    block[:, :, 14] = wcols[:, None]
    cols[30 * p:] = wcols
    return rows, cols
