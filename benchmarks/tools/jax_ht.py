"""Hand tracking residuals (GradBench ``ht``) in JAX, float64, ``jax.jit``; written
from the eval definition (evals/ht/README.md and the docstring of kernels/ht.py),
vectorized the way a JAX user writes it.  The Jacobian is ``jax.jacfwd`` (26 or 28
input directions, many more outputs)."""
from __future__ import annotations

import numpy as np


def make(prepared):
    """``(primal, derivative)`` zero-argument callables for a prepared ``ht`` input
    (``kernels.ht.HTProblem``).  ``derivative()`` returns the eval's Jacobian,
    ``(3N, 26)`` (simple) or ``(3N, 28)`` (complicated: the two compressed ``us``
    columns first), as ``kernels.ht.flat_derivative`` does."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    p = prepared
    parents = [int(b) for b in p.parents]
    n_bones = len(parents)
    base_rel = jnp.asarray(p.base_relatives)
    inv_base_abs = jnp.asarray(p.inverse_base_absolutes)
    base_pos = jnp.asarray(p.base_positions)
    weights = jnp.asarray(p.weights)
    points = jnp.asarray(p.points)
    corr = jnp.asarray(p.correspondences)
    tri = jnp.asarray(p.triangles[p.correspondences]) if p.complicated else None
    mirrored = bool(p.is_mirrored)
    # theta index -> (row, column) of the 3 x (B + 3) pose-parameter matrix
    finger_rows, finger_cols = [], []
    for f in range(5):
        c = 5 + 4 * f
        finger_rows += [0, 1, 0, 0]
        finger_cols += [c, c, c + 1, c + 2]
    finger_rows, finger_cols = np.array(finger_rows), np.array(finger_cols)

    def rodrigues(w):
        norm = jnp.sqrt(jnp.sum(w * w))
        small = norm < 1e-4
        safe = jnp.where(small, 1.0, norm)
        k = w / safe
        K = jnp.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
        R = jnp.eye(3) + jnp.sin(safe) * K + (1.0 - jnp.cos(safe)) * (K @ K)
        return jnp.where(small, jnp.eye(3), R)

    def euler_zyx(x, z, y):  # Rz(z) @ Ry(y) @ Rx(x), batched
        cx, sx, cy, sy, cz, sz = jnp.cos(x), jnp.sin(x), jnp.cos(y), jnp.sin(y), jnp.cos(z), jnp.sin(z)
        one, zero = jnp.ones_like(x), jnp.zeros_like(x)
        Rx = jnp.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(-1, 3, 3)
        Ry = jnp.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
        Rz = jnp.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(-1, 3, 3)
        return Rz @ Ry @ Rx

    def vertices(theta):
        pose = jnp.zeros((3, n_bones + 3)).at[finger_rows, finger_cols].set(theta[6:])
        rot = euler_zyx(pose[0, 3:], pose[1, 3:], pose[2, 3:])           # (B, 3, 3)
        block = jnp.zeros((n_bones, 4, 4)).at[:, :3, :3].set(rot).at[:, 3, 3].set(1.0)
        relatives = base_rel @ block
        absolutes = []
        for b, q in enumerate(parents):
            absolutes.append(relatives[b] if q < 0 else absolutes[q] @ relatives[b])
        transforms = jnp.stack(absolutes) @ inv_base_abs                  # (B, 4, 4)
        blend = (weights @ transforms[:, :3, :].reshape(n_bones, 12)).reshape(-1, 3, 4)
        x = jnp.einsum("vij,vj->vi", blend, base_pos)                     # (V, 3)
        if mirrored:
            x = x.at[:, 0].multiply(-1.0)
        return x @ rodrigues(theta[0:3]).T + theta[3:6]

    def residuals(theta, us):
        y = vertices(theta)
        if tri is None:
            hand = y[corr]
        else:
            bary = jnp.stack([us[:, 0], us[:, 1], 1.0 - us[:, 0] - us[:, 1]], axis=1)
            hand = jnp.einsum("nk,nkj->nj", bary, y[tri])
        return (points - hand).reshape(-1)

    theta = jnp.asarray(p.theta)
    us = jnp.asarray(p.us)
    f = jax.jit(residuals)
    if tri is None:
        jac = jax.jit(jax.jacfwd(lambda t, u: residuals(t, u)))
        x0 = theta
    else:
        # us shifted by (s0, s1) on every row: residual i depends on us[i] only,
        # so d/ds is the eval's compressed us Jacobian.
        jac = jax.jit(jax.jacfwd(lambda x, u: residuals(x[2:], u + x[:2])))
        x0 = jnp.concatenate([jnp.zeros(2), theta])

    def primal():
        return np.asarray(f(theta, us).block_until_ready())

    def derivative():
        return np.asarray(jac(x0, us).block_until_ready())
    return primal, derivative
