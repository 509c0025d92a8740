"""Helpers shared by the GradBench kernels."""
import numpy as np


def replay_global_draws(seed, order, target, size_of):
    """The vector GradBench draws for size ``target`` in evals that seed NumPy's
    global RNG once and then draw ``np.random.rand(size_of(s))`` for every size
    ``s`` in ``order`` (lse, llsq, ode).  For a ``target`` not in ``order``: the
    first draw after seeding.  Float64, shape ``(size_of(target),)``."""
    np.random.seed(seed)
    if target in order:
        for key in order:
            x = np.random.rand(size_of(key))
            if key == target:
                return x
    return np.random.rand(size_of(target))
