"""Run a benchmark program in a fresh Python process (so an environment switch such
as ``GRADJIT_UNROLL_TRIPS`` or ``GRADJIT_VECTOR_MATH`` applies from its start and
nothing compiled earlier is shared) and read the JSON object it prints last."""
from __future__ import annotations

import json
import os
import subprocess
import sys


#: The start of a child program: the repository importable (``ROOT`` is replaced by
#: its path), one thread for every library, NumPy / Numba / gradjit imported, large
#: blocks kept mapped, ``median_time`` at hand.
PRELUDE = r'''
import importlib, json, math, sys, time
sys.path.insert(0, ROOT)
from benchmarks.threads import single_threaded
single_threaded()
import numpy as np
from numba import njit
import gradjit
from gradjit import Active, Duplicated
from benchmarks.gmm import median_time
from benchmarks.heap import keep_heap
keep_heap()
'''


def run_child(src: str, env: dict, what: str) -> dict:
    """Run Python source ``src`` with ``env`` added to this environment; returns the
    JSON object on its last stdout line.  Raises ``RuntimeError`` (with the end of
    its stderr) naming ``what`` if it fails."""
    got = subprocess.run([sys.executable, "-c", src], env=dict(os.environ, **env),
                         capture_output=True, text=True, check=False)
    if got.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{got.stderr[-2000:]}")
    return json.loads(got.stdout.strip().splitlines()[-1])


def write_table(kind: str, lines: list) -> str:
    """Write the table ``lines`` to ``benchmarks/results/<date>-<kind>-<machine>.md``,
    print it, and return the path."""
    import datetime
    import platform
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    machine = f"{platform.machine()}-{os.cpu_count()}cpu"
    table = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(root, "benchmarks", "results"), exist_ok=True)
    path = os.path.join(root, "benchmarks", "results",
                        f"{datetime.date.today().isoformat()}-{kind}-{machine}.md")
    with open(path, "w") as f:
        f.write(table)
    print(table)
    print(f"wrote {path}")
    return path


def off_and_on(run, tag: str):
    """Run a program twice, switched off then on: ``run(on, out)`` runs it and makes
    it save its result array at path ``out``.  Returns ``(off, on, result off,
    result on)`` (the two run reports and arrays) and prints the gradient times."""
    import numpy as np
    outs = [f"/tmp/gradjit-{tag}-{os.getpid()}-{k}.npy" for k in (0, 1)]
    reports = [run(k, outs[k]) for k in (0, 1)]
    results = [np.load(f) for f in outs]
    for f in outs:
        os.remove(f)
    print(f"{tag}: gradient {reports[0]['grad'] * 1e3:.3f} -> {reports[1]['grad'] * 1e3:.3f} ms",
          flush=True)
    return reports[0], reports[1], results[0], results[1]
