"""The main example: the gradient of the GradBench GMM objective with gradjit.

    python examples/gmm.py [d k n]      (default: d=10, k=25, n=1000)

Prints the objective, the gradient norm, the max relative error against central
finite differences (all coordinates), and the timings: gradient / objective time,
speed-up over finite differences, and AD compile time vs Numba's compile time.
Single-threaded, like ``benchmarks/gmm.py``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.gmm import measure  # noqa: E402
from benchmarks.heap import keep_heap  # noqa: E402


def main():
    d, k, n = (int(a) for a in sys.argv[1:4]) if len(sys.argv) >= 4 else (10, 25, 1000)
    keep_heap()          # scratch arrays stay mapped between calls, as in a long run
    r = measure(d, k, n, max_coords=None)
    print(f"GMM objective (GradBench gmm, d={d}, k={k}, n={n}): {r['value']:.12g}")
    print(f"gradient wrt alpha, mu, q, l ({r['inputs']} inputs): norm {r['grad_norm']:.12g}")
    print(f"max relative error vs central finite differences ({r['fd_coords']} coordinates): "
          f"{r['fd_err']:.2e}")
    print(f"objective time      {r['primal'] * 1e3:9.3f} ms")
    print(f"gradient time       {r['grad'] * 1e3:9.3f} ms   (gradient / objective = {r['ratio']:.2f})")
    print(f"finite differences  {r['fd'] * 1e3:9.1f} ms   ({r['fd_speedup']:.0f}x slower than gradjit)")
    print(f"AD compile time     {r['ad_compile']:9.2f} s    (Numba compiles the objective in "
          f"{r['numba_compile']:.2f} s; ratio {r['compile_ratio']:.2f})")


if __name__ == "__main__":
    main()
