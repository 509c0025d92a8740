"""LSTM objective (GradBench ``lstm``) in PyTorch, float64 on the CPU, eager mode;
written from the eval definition (evals/lstm/README.md and the golden ``lstm.hpp``):
a Python loop over the characters and layers, vectorised over the hidden units."""
from __future__ import annotations

import numpy as np


def make(prepared):
    """``(primal, derivative)`` for the tuple from ``kernels.lstm.prepare``;
    ``derivative()`` returns the flat gradient (row-major main_params, then extra_params)."""
    import torch

    main_params, extra_params, state, sequence = (
        torch.tensor(np.asarray(a), dtype=torch.float64) for a in prepared)
    n_layers = main_params.shape[0] // 2
    c, b = sequence.shape

    def loss(main_params, extra_params):
        W = main_params[0::2].reshape(n_layers, 4, b)
        B = main_params[1::2].reshape(n_layers, 4, b)
        hidden = [state[2 * i] for i in range(n_layers)]
        cell = [state[2 * i + 1] for i in range(n_layers)]
        total = torch.zeros((), dtype=torch.float64)
        for t in range(c - 1):
            inp = sequence[t] * extra_params[0]
            for i in range(n_layers):
                f = torch.sigmoid(inp * W[i, 0] + B[i, 0])
                ig = torch.sigmoid(hidden[i] * W[i, 1] + B[i, 1])
                o = torch.sigmoid(inp * W[i, 2] + B[i, 2])
                g = torch.tanh(hidden[i] * W[i, 3] + B[i, 3])
                cell[i] = cell[i] * f + ig * g
                hidden[i] = o * torch.tanh(cell[i])
                inp = hidden[i]
            ypred = inp * extra_params[1] + extra_params[2]
            lse = torch.log(torch.sum(torch.exp(ypred)) + 2.0)
            total = total + torch.sum(sequence[t + 1] * (ypred - lse))
        return -total / ((c - 1) * b)

    def primal():
        with torch.no_grad():
            return float(loss(main_params, extra_params))

    def derivative():
        mp = main_params.clone().requires_grad_(True)
        ep = extra_params.clone().requires_grad_(True)
        gm, ge = torch.autograd.grad(loss(mp, ep), (mp, ep))
        return np.concatenate([gm.numpy().ravel(), ge.numpy().ravel()])
    return primal, derivative
