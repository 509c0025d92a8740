"""GMM objective (GradBench ``gmm``) in PyTorch, float64 on the CPU, vectorized;
written from the eval definition (evals/gmm/README.md)."""
from __future__ import annotations

import math

import numpy as np


def make(prepared):
    """``(primal, derivative)`` zero-argument callables; ``derivative()`` returns
    the flat gradient with respect to (alpha, mu, q, l) from ``backward()``."""
    import torch

    alpha, mu, q, l, x, gamma, m = prepared
    k, d = mu.shape
    n = x.shape[0]
    rows, cols = np.triu_indices(d, 1)
    diag = torch.arange(d)
    rows_t, cols_t = torch.as_tensor(rows), torch.as_tensor(cols)
    X = torch.as_tensor(x)
    dof = d + m + 1
    const = k * (dof * d * math.log(gamma / math.sqrt(2.0)) -
                 float(torch.special.multigammaln(torch.tensor(0.5 * dof, dtype=torch.float64), d)))

    def objective(alpha, mu, q, l):
        Q = torch.zeros((k, d, d), dtype=torch.float64)
        Q[:, diag, diag] = torch.exp(q)
        Q[:, cols_t, rows_t] = l
        xc = X[None, :, :] - mu[:, None, :]
        Qxc = torch.einsum("kij,knj->kni", Q, xc)
        beta = alpha[:, None] + q.sum(dim=1)[:, None] - 0.5 * (Qxc ** 2).sum(dim=2)
        loglik = -n * (0.5 * d * math.log(2 * math.pi) + torch.logsumexp(alpha, 0)) + \
            torch.logsumexp(beta, dim=0).sum()
        logprior = const - 0.5 * gamma ** 2 * (Q ** 2).sum() + m * q.sum()
        return loglik + logprior

    params = [torch.tensor(a, dtype=torch.float64) for a in (alpha, mu, q, l)]

    def primal():
        with torch.no_grad():
            return float(objective(*params))

    def derivative():
        ps = [p.detach().requires_grad_(True) for p in params]
        objective(*ps).backward()
        return np.concatenate([p.grad.numpy().ravel() for p in ps])
    return primal, derivative
