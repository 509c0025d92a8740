"""The benchmark suite: every GradBench eval in ``kernels/``, side by side.

    python benchmarks/run.py                  # all kernels, default sizes
    python benchmarks/run.py --quick          # small sizes only
    python benchmarks/run.py --kernels gmm lse --sizes default

For each kernel and size, on the same inputs: primal time; gradjit derivative time
and derivative/primal ratio; central finite differences (time and max relative
error vs gradjit); our JAX (CPU, float64, jit) and PyTorch (CPU, float64)
implementations (benchmarks/tools/), each checked against gradjit's derivative
before it is timed.  A tool that is not installed is skipped.

Times are medians of repeated runs after a warm-up.  Every tool runs single-threaded:
the thread-count variables of OpenMP/MKL/OpenBLAS/Numba are set to 1 before any of
them is imported, XLA gets ``--xla_cpu_multi_thread_eigen=false``, and PyTorch
``torch.set_num_threads(1)``.  Finite differences need 2 evaluations per input; for
large inputs they are timed and checked on a random subset of coordinates and the
time is scaled to all coordinates (the table says how many were evaluated).
Large blocks stay mapped between calls for every tool (``benchmarks/heap.py``:
glibc's mmap and trim thresholds are raised), so no tool pays page faults for
its scratch arrays on every call.

Writes ``benchmarks/results/<date>-<machine>.md`` (the table) and a PNG plot (time
vs size per kernel, one line per tool, log scales), and prints the table.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.threads import single_threaded  # noqa: E402

single_threaded()

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.heap import keep_heap  # noqa: E402

KERNELS = ("gmm", "lse", "llsq", "ode", "lstm", "ba", "ht")


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), else the architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_time(f, min_runs=5, min_seconds=0.2, max_runs=200, slow=2.0):
    """Median wall time of ``f()`` in seconds, after one warm-up call (a call slower
    than ``slow`` seconds is repeated only twice more)."""
    t = time.perf_counter()
    f()
    if time.perf_counter() - t > slow:
        min_runs = 2
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < min_seconds and len(times) < max_runs):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    scale = max(np.max(np.abs(b)), 1e-300) if b.size else 1.0
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3 * scale))) if b.size else 0.0


def finite_differences(f, theta0, deriv, max_coords=200, eps=1e-6, seed=0):
    """Central differences of ``f`` on (a subset of) the coordinates of ``theta0``.

    Returns ``(seconds for all coordinates, max rel error vs deriv, coords used)``.
    ``deriv`` is gradjit's derivative, shape (n,) or (m, n), dense or sparse; the
    comparison is made column by column (memory stays one column).
    """
    n = theta0.size
    rng = np.random.default_rng(seed)
    coords = np.arange(n) if n <= max_coords else np.sort(rng.choice(n, max_coords, replace=False))
    theta = theta0.copy()
    scale = _max_abs(deriv)
    err, elapsed = 0.0, 0.0
    for i in coords:
        old = theta[i]
        t = time.perf_counter()
        theta[i] = old + eps
        fp = np.asarray(f(theta), dtype=np.float64)
        theta[i] = old - eps
        fm = np.asarray(f(theta), dtype=np.float64)
        elapsed += time.perf_counter() - t
        theta[i] = old
        fd = (fp - fm) / (2 * eps)
        if _sparse(deriv):
            want = deriv[:, i].toarray().ravel()
        else:
            want = deriv[i] if deriv.ndim == 1 else deriv[:, i]
        err = max(err, float(np.max(np.abs(fd - want) / np.maximum(np.abs(want), 1e-3 * scale),
                                    initial=0.0)))
    return elapsed * n / len(coords), err, len(coords)


def _max_abs(a):
    if _sparse(a):
        return max(float(abs(a).max()), 1e-300)
    return max(float(np.max(np.abs(a))), 1e-300) if np.size(a) else 1.0


def _sparse(a) -> bool:
    try:
        import scipy.sparse
        return scipy.sparse.issparse(a)
    except ImportError:
        return False


def as_derivative(a):
    """A kernel's flat derivative: dense float64 array or a SciPy sparse matrix."""
    return a.tocsr().astype(np.float64) if _sparse(a) else np.asarray(a, dtype=np.float64)


def derivative_error(got, want) -> float:
    if _sparse(want) or _sparse(got):
        diff = abs(as_derivative(got) - as_derivative(want))
        scale = max(abs(as_derivative(want)).max(), 1e-300)
        return float(diff.max() / scale)
    return rel_err(np.asarray(got).reshape(want.shape), want)


def available_tools():
    tools = {}
    for name in ("jax", "torch"):
        try:
            importlib.import_module(name)
            tools[name] = True
        except Exception:
            tools[name] = False
    if tools.get("torch"):
        import torch
        torch.set_num_threads(1)
    return tools


def size_label(size):
    return ",".join(f"{k}={v}" for k, v in size.items())


def size_measure(size):
    """A scalar 'problem size' for the plot's x axis: the product of the sizes."""
    return float(np.prod([v for v in size.values() if isinstance(v, (int, float)) and v > 0]))


def run_case(mod, name, size, tools, progress):
    inp = mod.generate(**size)
    prep_p = mod.prepare(mod.PRIMAL, inp)
    prep_d = mod.prepare(mod.DERIVATIVE, inp)
    row = {"kernel": name, "size": size_label(size), "x": size_measure(size)}
    progress(f"{name} {row['size']}: primal")
    row["primal"] = median_time(lambda: mod.evaluate(mod.PRIMAL, prep_p))
    progress(f"{name} {row['size']}: gradjit")
    t = time.perf_counter()
    result = mod.evaluate(mod.DERIVATIVE, prep_d)
    row["compile"] = time.perf_counter() - t
    row["gradjit"] = median_time(lambda: mod.evaluate(mod.DERIVATIVE, prep_d))
    row["ratio"] = row["gradjit"] / row["primal"]
    deriv = as_derivative(mod.flat_derivative(result))
    f, theta0 = mod.flat_problem(prep_d)
    row["inputs"] = int(theta0.size)
    progress(f"{name} {row['size']}: finite differences")
    row["fd"], row["fd_err"], row["fd_coords"] = finite_differences(f, theta0, deriv)
    for tool in ("jax", "torch"):
        if not tools.get(tool):
            continue
        try:
            impl = importlib.import_module(f"benchmarks.tools.{tool}_{name}")
        except ImportError:
            continue
        progress(f"{name} {row['size']}: {tool}")
        primal, derivative = impl.make(prep_d)
        row[f"{tool}_err"] = derivative_error(derivative(), deriv)
        row[f"{tool}_primal"] = median_time(primal)
        row[f"{tool}"] = median_time(derivative)
    return row


COLUMNS = [("kernel", "kernel", "{}"), ("size", "size", "{}"), ("inputs", "inputs", "{}"),
           ("primal", "primal ms", "ms"), ("gradjit", "gradjit ms", "ms"),
           ("ratio", "gradjit/primal", "{:.2f}"), ("compile", "compile s", "{:.2f}"),
           ("fd", "FD ms", "ms"), ("fd_err", "FD rel err (coords)", "fd"),
           ("jax", "JAX ms", "ms"), ("jax_err", "JAX rel err", "{:.1e}"),
           ("torch", "PyTorch ms", "ms"), ("torch_err", "PyTorch rel err", "{:.1e}")]


def table(rows):
    out = ["| " + " | ".join(c[1] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            v = r.get(key)
            if v is None:
                cells.append("–")
            elif fmt == "ms":
                cells.append(f"{v * 1e3:.3f}")
            elif fmt == "fd":
                cells.append(f"{v:.1e} ({r['fd_coords']})")
            else:
                cells.append(fmt.format(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    kernels = sorted({r["kernel"] for r in rows})
    fig, axes = plt.subplots(1, len(kernels), figsize=(4.2 * len(kernels), 3.6), squeeze=False)
    for ax, k in zip(axes[0], kernels):
        rs = sorted([r for r in rows if r["kernel"] == k], key=lambda r: r["x"])
        xs = [r["x"] for r in rs]
        for key, label in (("primal", "primal (Numba)"), ("gradjit", "gradjit"), ("fd", "finite diff."),
                           ("jax", "JAX"), ("torch", "PyTorch")):
            ys = [r.get(key) for r in rs]
            if any(y is not None for y in ys):
                ax.plot([x for x, y in zip(xs, ys) if y is not None],
                        [y for y in ys if y is not None], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(k)
        ax.set_xlabel("problem size (product of dimensions)")
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def rows_from_table(path):
    """Rows (as ``run_case`` makes them) read back from a results table."""
    keys = {c[1]: (c[0], c[2]) for c in COLUMNS}
    rows, header = [], None
    for line in open(path):
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        r = {}
        for name, cell in zip(header, cells):
            key, fmt = keys.get(name, (None, None))
            if key is None or cell == "–":
                continue
            if fmt == "ms":
                r[key] = float(cell) / 1e3
            elif fmt == "{}":
                r[key] = cell
            else:
                try:
                    r[key] = float(cell.split()[0])
                except ValueError:
                    pass
        sizes = [float(v.split("=")[1]) for v in r["size"].split(",")
                 if v.split("=")[1].replace(".", "").isdigit()]
        r["x"] = float(np.prod(sizes)) if sizes else 1.0
        rows.append(r)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=KERNELS)
    p.add_argument("--sizes", choices=("quick", "default"), default="default")
    p.add_argument("--quick", action="store_true", help="same as --sizes quick")
    p.add_argument("--no-jax", action="store_true")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--plot-only", metavar="TABLE.md",
                   help="only draw the PNG plot of an existing results table")
    opts = p.parse_args(argv)
    if opts.plot_only:
        png = plot(rows_from_table(opts.plot_only), opts.plot_only[:-3] + ".png")
        print(f"written: {png}")
        return None
    sizes_key = "quick" if opts.quick else opts.sizes
    heap = keep_heap()
    tools = available_tools()
    if opts.no_jax:
        tools["jax"] = False
    if opts.no_torch:
        tools["torch"] = False
    cases = []
    for name in opts.kernels:
        try:
            mod = importlib.import_module(f"kernels.{name}")
        except ImportError as e:
            print(f"skipping {name}: {e}", file=sys.stderr)
            continue
        cases += [(mod, name, s) for s in mod.SIZES[sizes_key]]
    try:
        from tqdm import tqdm
        bar = tqdm(total=len(cases), file=sys.stderr)
        progress = lambda text: bar.set_description(text[:60])  # noqa: E731
    except ImportError:
        bar = None
        progress = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    rows = []
    machine = f"{platform.machine()}-{os.cpu_count()}cpu"
    stamp = datetime.date.today().isoformat()
    os.makedirs(opts.out, exist_ok=True)
    partial = os.path.join(opts.out, f"{stamp}-{machine}-{sizes_key}.partial.md")
    for mod, name, size in cases:
        try:
            rows.append(run_case(mod, name, size, tools, progress))
            with open(partial, "w") as f:             # keep what is measured so far
                f.write(table([r for r in rows if "error" not in r]) + "\n")
        except Exception as e:           # keep going; the row says what failed
            rows.append({"kernel": name, "size": size_label(size), "x": size_measure(size),
                         "error": f"{type(e).__name__}: {e}"})
            print(f"{name} {size_label(size)} failed: {e}", file=sys.stderr)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    ok = [r for r in rows if "error" not in r]
    text = table(ok)
    if os.path.exists(partial):
        os.remove(partial)
    base = os.path.join(opts.out, f"{stamp}-{machine}-{sizes_key}")
    png = plot(ok, base + ".png")
    installed = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in tools.items())
    with open(base + ".md", "w") as f:
        f.write(f"# gradjit benchmark suite ({sizes_key} sizes), {stamp}\n\n")
        f.write(f"Machine: {cpu_model()}, {os.cpu_count()} cores; "
                f"single-threaded; heap kept mapped between calls: {'yes' if heap else 'no'}; "
                f"tools installed: {installed}.\n\n")
        f.write(text + "\n")
        for r in rows:
            if "error" in r:
                f.write(f"\n* {r['kernel']} {r['size']}: failed: {r['error']}\n")
        if png:
            f.write(f"\n![time vs size]({os.path.basename(png)})\n")
    print(text)
    print(f"\nwritten: {base}.md" + (f", {png}" if png else ""))
    return rows


if __name__ == "__main__":
    main()
