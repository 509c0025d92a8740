"""Single-threaded timing: every library's thread count set to 1.

Import this module and call :func:`single_threaded` before NumPy, Numba, JAX or
PyTorch is imported: the thread pools of OpenMP, MKL, OpenBLAS and Numba read these
variables once, when they start.  Small matrix products (the GMM kernel's
``(1000, 20) @ (20, 500)``) are slower on two OpenBLAS threads than on one.
"""
from __future__ import annotations

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def single_threaded() -> None:
    """Set every thread-count variable to 1 and tell XLA not to use its thread pool
    (``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()
