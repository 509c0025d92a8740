"""Linear least squares (GradBench ``llsq``) in PyTorch, float64 on the CPU; written
from the eval definition (evals/llsq/README.md), vectorised with a Vandermonde matrix."""
from __future__ import annotations

import numpy as np


def make(prepared):
    """``(primal, derivative)`` zero-argument callables for the prepared input
    ``(x, n)`` of ``kernels.llsq.prepare``; ``derivative()`` returns the gradient
    with respect to ``x`` (shape ``(m,)``, float64, from ``backward()``)."""
    import torch

    x, n = prepared
    m = x.shape[0]
    xt = torch.tensor(x, dtype=torch.float64)

    def objective(x):
        t = -1.0 + torch.arange(n, dtype=torch.float64) * 2.0 / (n - 1)
        V = torch.vander(t, N=m, increasing=True)      # V[i, j] = t_i ** j
        r = torch.sign(t) - V @ x
        return 0.5 * torch.dot(r, r)

    def primal():
        with torch.no_grad():
            return float(objective(xt))

    def derivative():
        xg = xt.detach().requires_grad_(True)
        objective(xg).backward()
        return xg.grad.numpy()
    return primal, derivative
