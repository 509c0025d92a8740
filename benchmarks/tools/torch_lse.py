"""LogSumExp (GradBench ``lse``) in PyTorch, float64 on the CPU; written from the eval
definition (evals/lse/README.md): a maximum and a sum, differentiated by ``backward()``."""
from __future__ import annotations

import numpy as np


def make(prepared):
    """``(primal, derivative)`` zero-argument callables for the prepared input
    ``(x,)`` of ``kernels.lse.prepare``; ``derivative()`` returns the gradient
    (shape ``(n,)``, float64)."""
    import torch

    (x,) = prepared
    xt = torch.tensor(x, dtype=torch.float64)

    def lse(x):
        a = torch.max(x)
        return a + torch.log(torch.sum(torch.exp(x - a)))

    def primal():
        with torch.no_grad():
            return float(lse(xt))

    def derivative():
        xg = xt.detach().requires_grad_(True)
        lse(xg).backward()
        return xg.grad.numpy()
    return primal, derivative
