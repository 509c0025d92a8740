"""Backends: compile derivative modules for the CPU (llvmlite JIT through Numba)."""
