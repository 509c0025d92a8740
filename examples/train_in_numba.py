"""A training loop written in Numba that calls a gradjit derivative.

Fits y = a * sin(b * x) + c to noisy data by gradient descent; the loop, the loss
and the update all run inside ``@numba.njit`` and call the reverse-mode
derivative ``dloss`` like any jitted function.

    python examples/train_in_numba.py
"""
import math

import numba
import numpy as np

import gradjit
from gradjit import Const, Duplicated


@numba.njit
def loss(theta, x, y):
    """Mean squared error of ``theta[0] * sin(theta[1] * x) + theta[2]`` (theta: (3,))."""
    s = 0.0
    for i in range(x.shape[0]):
        r = theta[0] * math.sin(theta[1] * x[i]) + theta[2] - y[i]
        s += r * r
    return s / x.shape[0]


dloss = gradjit.autodiff(loss, "reverse", Duplicated, Const, Const)


@numba.njit
def train(theta, x, y, steps, lr):
    g = np.zeros_like(theta)
    history = np.empty(steps)
    for k in range(steps):
        g[:] = 0.0
        history[k] = dloss(theta, g, x, y, 1.0)      # value; gradient added to g
        for j in range(theta.shape[0]):
            theta[j] -= lr * g[j]
    return history


def main():
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, 400)
    y = 1.5 * np.sin(0.8 * x) + 0.3 + 0.05 * rng.normal(size=x.size)
    theta = np.array([1.0, 1.0, 0.0])
    history = train(theta, x, y, 2000, 0.05)
    for k in (0, 10, 100, 500, 1999):
        print(f"step {k:5d}  loss {history[k]:.6f}")
    print("fitted a, b, c =", np.round(theta, 3), "(true 1.5, 0.8, 0.3)")


if __name__ == "__main__":
    main()
