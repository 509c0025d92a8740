"""Runge-Kutta ODE solution (GradBench ``ode``) in PyTorch, float64 on the CPU;
written from the eval definition (evals/ode/README.md): ``s`` vectorised RK4 steps;
the derivative is the gradient of the last element of the solution with respect
to ``x`` (``backward()``)."""
from __future__ import annotations

import numpy as np


def make(prepared):
    """``(primal, derivative)`` zero-argument callables for the prepared input
    ``(x, s)`` of ``kernels.ode.prepare``; ``primal()`` returns ``y(2)`` and
    ``derivative()`` the gradient of ``y(2)[-1]`` (both shape ``(n,)``, float64)."""
    import torch

    x, s = prepared
    h = 2.0 / s
    xt = torch.tensor(x, dtype=torch.float64)

    def solve(x):
        def f(y):
            return torch.cat([x[:1], x[1:] * y[:-1]])

        y = torch.zeros_like(x)
        for _ in range(s):
            k1 = f(y)
            k2 = f(y + (h / 2) * k1)
            k3 = f(y + (h / 2) * k2)
            k4 = f(y + h * k3)
            y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
        return y

    def primal():
        with torch.no_grad():
            return solve(xt).numpy()

    def derivative():
        xg = xt.detach().requires_grad_(True)
        solve(xg)[-1].backward()
        return xg.grad.numpy()
    return primal, derivative
