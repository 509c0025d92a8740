"""gradjit as a GradBench tool: ``python -m benchmarks.gradbench`` speaks the
GradBench JSON protocol on stdin/stdout (see benchmarks/gradbench/__main__.py)."""
