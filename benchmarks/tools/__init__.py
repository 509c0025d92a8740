"""JAX and PyTorch implementations of the GradBench objectives (for the suite)."""
