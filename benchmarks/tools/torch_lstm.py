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
        # split the parameters once per call (not per time step): fewer autograd nodes
        W = [[main_params[2 * i, k * b:(k + 1) * b] for k in range(4)] for i in range(n_layers)]
        B = [[main_params[2 * i + 1, k * b:(k + 1) * b] for k in range(4)]
             for i in range(n_layers)]
        in_w, out_w, out_b = extra_params[0], extra_params[1], extra_params[2]
        hidden = [state[2 * i] for i in range(n_layers)]
        cell = [state[2 * i + 1] for i in range(n_layers)]
        total = torch.zeros((), dtype=torch.float64)
        for t in range(c - 1):
            inp = sequence[t] * in_w
            for i in range(n_layers):
                (wf, wi, wo, wc), (bf, bi, bo, bc) = W[i], B[i]
                f = torch.sigmoid(inp * wf + bf)
                ig = torch.sigmoid(hidden[i] * wi + bi)
                o = torch.sigmoid(inp * wo + bo)
                g = torch.tanh(hidden[i] * wc + bc)
                cell[i] = cell[i] * f + ig * g
                hidden[i] = o * torch.tanh(cell[i])
                inp = hidden[i]
            ypred = inp * out_w + out_b
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
