"""A GPU training loop: fit a damped oscillator's parameters with gradients from a
CUDA kernel differentiated by gradjit.

The forward pass is a hand-written Numba CUDA kernel (per sample: model value,
squared residual, ``cuda.atomic.add`` into the loss); ``gradjit.autodiff`` makes its
reverse-mode kernel, which writes the loss and adds its gradient into ``dparams``.
Parameters, data and optimizer state stay on the GPU as CuPy arrays and an Adam step
runs per iteration.  With no GPU (or no CuPy) the same code runs on gradjit's CPU
grid emulator with NumPy arrays at a small size, which is what CI runs.

    python examples/gpu_fit.py [--steps N] [--samples N] [--emulate]
"""
import argparse
import math
import time

import numpy as np
from numba import cuda

import gradjit
from gradjit import Const, Duplicated


@cuda.jit
def oscillator_loss(params, t, y, loss):
    """loss[0] += mean over samples of (A exp(-g t) cos(w t + p) - y)^2;
    params = (A, w, g, p)."""
    i = cuda.grid(1)
    if i < t.shape[0]:
        m = params[0] * math.exp(-params[2] * t[i]) * math.cos(params[1] * t[i] + params[3])
        r = m - y[i]
        cuda.atomic.add(loss, 0, r * r / t.shape[0])


dloss = gradjit.autodiff(oscillator_loss, "reverse", Duplicated, Const, Const, Duplicated)


def backend(emulate):
    """(array module, launcher factory, description)."""
    if not emulate and gradjit.backend.cuda.have_device():
        try:
            import cupy
            return cupy, (lambda g, b: dloss[g, b]), "GPU (CuPy arrays)"
        except ImportError:
            pass
    return np, (lambda g, b: dloss.emulate[g, b]), "CPU grid emulator (NumPy arrays)"


def fit(steps=300, samples=256, lr=0.05, emulate=False, log=print):
    xp, launcher, where = backend(emulate)
    rng = np.random.default_rng(0)
    true = np.array([1.3, 2.0, 0.3, 0.4])
    t_h = np.linspace(0.0, 6.0, samples)
    y_h = true[0] * np.exp(-true[2] * t_h) * np.cos(true[1] * t_h + true[3]) + 0.01 * rng.normal(size=samples)
    t, y = xp.asarray(t_h), xp.asarray(y_h)
    params = xp.asarray(np.array([1.0, 1.8, 0.1, 0.0]))
    grad, loss, seed = xp.zeros(4), xp.zeros(1), xp.ones(1)
    m, v = xp.zeros(4), xp.zeros(4)
    threads = 128
    launch = launcher((samples + threads - 1) // threads, threads)
    history = []
    start = t0 = time.perf_counter()
    first = None
    for k in range(1, steps + 1):
        if k == 2:                                       # step 1 compiles the derivative
            start = time.perf_counter()
            first = start - t0
        grad[:] = 0.0
        loss[:] = 0.0
        seed[:] = 1.0
        launch(params, grad, t, y, loss, seed)          # loss and d loss / d params
        m = 0.9 * m + 0.1 * grad                         # Adam, on the device
        v = 0.999 * v + 0.001 * grad * grad
        params -= lr * (m / (1 - 0.9 ** k)) / (xp.sqrt(v / (1 - 0.999 ** k)) + 1e-8)
        history.append(float(loss[0]))
        if log and (k == 1 or k % max(1, steps // 10) == 0):
            log(f"step {k:5d}  loss {history[-1]:.6f}")
    elapsed = time.perf_counter() - start
    if log and first is not None:
        log(f"{where}: first step (compiles the derivative) {first:.2f} s, then "
            f"{(steps - 1) / elapsed:.1f} steps/s; fitted (A, w, g, p) = "
            f"{np.round(np.asarray(params.get() if hasattr(params, 'get') else params), 3)} "
            f"(true {true})")
    return history, params


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--emulate", action="store_true", help="use the CPU grid emulator")
    a = p.parse_args()
    gpu = not a.emulate and gradjit.backend.cuda.have_device()
    fit(a.steps, a.samples or (1 << 16 if gpu else 256), emulate=a.emulate)


if __name__ == "__main__":
    main()
