"""Benchmark scripts for gradjit (run them as ``python benchmarks/<name>.py``)."""
