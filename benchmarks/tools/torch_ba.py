"""Bundle adjustment (GradBench ``ba``) in PyTorch, float64 on the CPU; written from
the eval definition (evals/ba/README.md and the golden ``ba.hpp``), vectorised over the
observations.  The Jacobian blocks come from reverse mode on the residuals of the
gathered per-observation parameters: observations are independent given their own
copies of camera, point and weight, so one ``torch.autograd.grad`` per residual
component (seeding that component of every observation) gives that row of every
2 x 15 block.  ``derivative()`` assembles GradBench's CSR arrays from the blocks and
returns the Jacobian as ``kernels.ba.flat_derivative`` does."""
from __future__ import annotations

import numpy as np


def _residuals(torch, cam, x, w, feat):
    """Residuals (p, 2) of p observations: cam (p, 11), x (p, 3), w (p,), feat (p, 2)."""
    rot = cam[:, 0:3]
    v = x - cam[:, 3:6]
    sq = torch.sum(rot * rot, dim=1, keepdim=True)
    nz = sq != 0.0
    theta = torch.sqrt(torch.where(nz, sq, torch.ones_like(sq)))
    k = rot / theta
    cos, sin = torch.cos(theta), torch.sin(theta)
    rotated = (v * cos + torch.linalg.cross(k, v, dim=1) * sin
               + k * torch.sum(k * v, dim=1, keepdim=True) * (1.0 - cos))
    y = torch.where(nz, rotated, v + torch.linalg.cross(rot, v, dim=1))
    q = y[:, :2] / y[:, 2:3]
    rsq = torch.sum(q * q, dim=1, keepdim=True)
    q = q * (1.0 + cam[:, 9:10] * rsq + cam[:, 10:11] * rsq * rsq)
    return w[:, None] * (q * cam[:, 6:7] + cam[:, 7:9] - feat)


def make(prepared):
    """``(primal, derivative)`` for the tuple ``(cams, X, w, obs, feats)`` from
    ``kernels.ba.prepare``; ``primal()`` returns ``(reproj_err (2p,), w_err (p,))``."""
    import torch

    from benchmarks.tools.jax_ba import _structure
    from kernels.ba import N_CAM_PARAMS, jacobian_matrix

    cams, X, w, obs, feats = prepared
    n, m, p = cams.shape[0], X.shape[0], w.shape[0]
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    tcams, tX, tw, tfeats = t(cams), t(X), t(w), t(feats)
    ci = torch.tensor(obs[:, 0].astype(np.int64))
    pi = torch.tensor(obs[:, 1].astype(np.int64))

    def primal():
        with torch.no_grad():
            r = _residuals(torch, tcams[ci], tX[pi], tw, tfeats)
            return r.reshape(-1).numpy(), (1.0 - tw * tw).numpy()

    def derivative():
        cam = tcams[ci].requires_grad_(True)
        x = tX[pi].requires_grad_(True)
        wv = tw.clone().requires_grad_(True)
        r = _residuals(torch, cam, x, wv, tfeats)
        rows_ = []
        for comp in range(2):
            seed = torch.zeros_like(r)
            seed[:, comp] = 1.0
            gc, gx, gw = torch.autograd.grad(r, (cam, x, wv), seed, retain_graph=comp == 0)
            rows_.append(torch.cat([gc, gx, gw[:, None]], dim=1))       # (p, 15)
        w_err = (1.0 - wv * wv).sum()
        (gww,) = torch.autograd.grad(w_err, (wv,))
        reproj = torch.stack(rows_, dim=1)                              # (p, 2, 15)
        vals = np.concatenate([reproj.numpy().ravel(), gww.numpy()])
        rows, cols = _structure(n, m, p, obs)
        return jacobian_matrix(rows, cols, vals, (3 * p, N_CAM_PARAMS * n + 3 * m + p))
    return primal, derivative
