"""Small Numba CUDA kernels used by the GPU tests and benchmarks/gpu.py:
an elementwise map, a 3-point stencil, an atomic reduction and a per-thread loop
(float64)."""
import math

from numba import cuda


@cuda.jit
def axpy_sin(a, x, y, out):
    """Elementwise: ``out[i] = a sin(x[i]) + y[i] x[i]`` (x, y, out: shape (n,))."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = a * math.sin(x[i]) + y[i] * x[i]


@cuda.jit
def stencil(u, v):
    """Stencil: ``v[i] = u[i-1]/4 + u[i]/2 + u[i+1]/4 + u[i]**3`` for interior i."""
    i = cuda.grid(1)
    if i >= 1 and i < u.shape[0] - 1:
        v[i] = 0.25 * u[i - 1] + 0.5 * u[i] + 0.25 * u[i + 1] + u[i] ** 3


@cuda.jit
def dot(x, y, out):
    """Reduction: ``out[0] += sum_i x[i] y[i]`` with ``cuda.atomic.add``."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        cuda.atomic.add(out, 0, x[i] * y[i])


@cuda.jit
def iterate(x, out, steps):
    """Loop: ``out[i]`` = ``steps`` steps of ``s = 1.01 sin(s)`` from ``x[i]``; the
    reverse sweep records one value per step (a per-thread tape)."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        s = x[i]
        for _ in range(steps):
            s = math.sin(s) * 1.01
        out[i] = s
