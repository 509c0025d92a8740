"""Benchmark kernels: plain Numba ``@njit`` objectives that gradjit differentiates."""
