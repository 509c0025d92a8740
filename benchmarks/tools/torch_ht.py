"""Hand tracking residuals (GradBench ``ht``) in PyTorch, float64 on the CPU,
vectorized; written from the eval definition (evals/ht/README.md and the docstring
of kernels/ht.py).  The Jacobian is ``torch.func.jacfwd`` (forward mode, vmapped
over the 26 or 28 input directions), eager."""
from __future__ import annotations

import numpy as np


def make(prepared):
    """``(primal, derivative)`` zero-argument callables for a prepared ``ht`` input
    (``kernels.ht.HTProblem``); ``derivative()`` returns the eval's Jacobian as
    ``kernels.ht.flat_derivative`` does."""
    import torch
    from torch.func import jacfwd

    dt = torch.float64
    p = prepared
    parents = [int(b) for b in p.parents]
    n_bones = len(parents)
    base_rel = torch.as_tensor(p.base_relatives, dtype=dt)
    inv_base_abs = torch.as_tensor(p.inverse_base_absolutes, dtype=dt)
    base_pos = torch.as_tensor(p.base_positions, dtype=dt)
    weights = torch.as_tensor(p.weights, dtype=dt)
    points = torch.as_tensor(p.points, dtype=dt)
    corr = torch.as_tensor(p.correspondences)
    tri = torch.as_tensor(p.triangles[p.correspondences]) if p.complicated else None
    mirror = torch.tensor([-1.0 if p.is_mirrored else 1.0, 1.0, 1.0], dtype=dt)
    # theta[6:] -> rows/cols of the 3 x (B + 3) pose matrix; as one-hot scatter matrices
    # (functorch-friendly: no in-place writes into a tensor created inside the function)
    scatter = torch.zeros(3, n_bones + 3, 20, dtype=dt)
    for f in range(5):
        c = 5 + 4 * f
        for k, (r, cc) in enumerate([(0, c), (1, c), (0, c + 1), (0, c + 2)]):
            scatter[r, cc, 4 * f + k] = 1.0
    eye3 = torch.eye(3, dtype=dt)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dt)

    def rodrigues(w):
        norm = torch.sqrt(torch.sum(w * w))
        small = norm < 1e-4
        safe = torch.where(small, torch.ones_like(norm), norm)
        k = w / safe
        z = torch.zeros_like(k[0])
        K = torch.stack([z, -k[2], k[1], k[2], z, -k[0], -k[1], k[0], z]).reshape(3, 3)
        R = eye3 + torch.sin(safe) * K + (1.0 - torch.cos(safe)) * (K @ K)
        return torch.where(small, eye3, R)

    def euler_zyx(x, z, y):  # Rz(z) @ Ry(y) @ Rx(x), batched
        cx, sx, cy, sy, cz, sz = x.cos(), x.sin(), y.cos(), y.sin(), z.cos(), z.sin()
        one, zero = torch.ones_like(x), torch.zeros_like(x)
        Rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(-1, 3, 3)
        Ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
        Rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(-1, 3, 3)
        return Rz @ Ry @ Rx

    def vertices(theta):
        pose = scatter @ theta[6:]                                        # (3, B + 3)
        rot = euler_zyx(pose[0, 3:], pose[1, 3:], pose[2, 3:])           # (B, 3, 3)
        top = torch.cat([rot, torch.zeros(n_bones, 3, 1, dtype=dt)], dim=2)
        block = torch.cat([top, bottom.expand(n_bones, 1, 4)], dim=1)   # (B, 4, 4)
        relatives = base_rel @ block
        absolutes = []
        for b, q in enumerate(parents):
            absolutes.append(relatives[b] if q < 0 else absolutes[q] @ relatives[b])
        transforms = torch.stack(absolutes) @ inv_base_abs
        blend = (weights @ transforms[:, :3, :].reshape(n_bones, 12)).reshape(-1, 3, 4)
        x = torch.einsum("vij,vj->vi", blend, base_pos) * mirror
        return x @ rodrigues(theta[0:3]).T + theta[3:6]

    def residuals(theta, us):
        y = vertices(theta)
        if tri is None:
            hand = y[corr]
        else:
            bary = torch.stack([us[:, 0], us[:, 1], 1.0 - us[:, 0] - us[:, 1]], dim=1)
            hand = torch.einsum("nk,nkj->nj", bary, y[tri])
        return (points - hand).reshape(-1)

    theta = torch.as_tensor(p.theta, dtype=dt)
    us = torch.as_tensor(p.us, dtype=dt)
    if tri is None:
        jac = jacfwd(lambda t: residuals(t, us))
        x0 = theta
    else:
        # us shifted by (s0, s1) on every row: the eval's compressed us columns
        jac = jacfwd(lambda x: residuals(x[2:], us + x[:2]))
        x0 = torch.cat([torch.zeros(2, dtype=dt), theta])

    def primal():
        with torch.no_grad():
            return residuals(theta, us).numpy()

    def derivative():
        return jac(x0).numpy()
    return primal, derivative
