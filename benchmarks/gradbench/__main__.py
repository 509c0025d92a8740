"""gradjit as a GradBench tool.

Reads one JSON message per line on stdin and answers one JSON object per line on
stdout (GradBench's protocol, ``js/common/protocol.ts`` in gradbench/gradbench):

* ``start``   -> ``{"id", "tool": "gradjit"}``
* ``define``  -> ``{"id", "success"}`` (false, with ``error``, for unknown modules)
* ``evaluate``-> ``{"id", "success", "output", "timings"}``: the call is repeated until
  both the input's ``min_runs`` and ``min_seconds`` are met; each run is one
  ``{"name": "evaluate", "nanoseconds": N}`` timing, and the first call's
  compilation (Numba + AD) is reported separately as ``"compile"``.
* ``analysis``-> ``{"id"}``
* ``end``     -> exit

Modules are the kernels in ``kernels/`` that implement the interface of
benchmarks/README.md.  Errors are answered with ``success: false`` and a message,
never a crash.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

EVALS = ("gmm", "lse", "llsq", "ode", "lstm", "ba", "ht")


def load(module: str):
    """The kernel module for GradBench module ``module`` (ImportError if none)."""
    if module not in EVALS:
        raise ImportError(f"gradjit has no GradBench module {module!r} (known: {', '.join(EVALS)})")
    return importlib.import_module(f"kernels.{module}")


class Tool:
    def __init__(self):
        self.modules = {}
        self.compiled = set()

    def handle(self, msg: dict) -> dict:
        kind = msg.get("kind")
        mid = msg.get("id")
        try:
            if kind == "start":
                return {"id": mid, "tool": "gradjit"}
            if kind == "define":
                return self.define(mid, msg.get("module"))
            if kind == "evaluate":
                return self.evaluate(mid, msg)
            if kind == "analysis":
                return {"id": mid}
            return {"id": mid, "success": False, "error": f"unknown message kind {kind!r}"}
        except Exception as e:          # never crash: report
            return {"id": mid, "success": False,
                    "error": "".join(traceback.format_exception_only(type(e), e)).strip()}

    def define(self, mid, module):
        try:
            self.modules[module] = load(module)
        except ImportError as e:
            return {"id": mid, "success": False, "error": str(e)}
        return {"id": mid, "success": True}

    def evaluate(self, mid, msg):
        module, function = msg.get("module"), msg.get("function")
        mod = self.modules.get(module)
        if mod is None:
            try:
                mod = self.modules[module] = load(module)
            except ImportError as e:
                return {"id": mid, "success": False, "error": str(e)}
        if function not in (mod.PRIMAL, mod.DERIVATIVE):
            return {"id": mid, "success": False,
                    "error": f"module {module} has no function {function!r}"}
        inp = msg.get("input") or {}
        min_runs = int(inp.get("min_runs", 1))
        min_seconds = float(inp.get("min_seconds", 0))
        prepared = mod.prepare(function, inp)
        timings = []
        # a module whose compiled code depends on more than the types (ht: the
        # number of tangent lanes its coloring needs) says so in ``compile_key``
        extra = getattr(mod, "compile_key", None)
        key = (module, function, _signature(prepared),
               extra(function, prepared) if extra else None)
        if key not in self.compiled:
            t = time.perf_counter_ns()
            result = mod.evaluate(function, prepared)
            timings.append({"name": "compile", "nanoseconds": time.perf_counter_ns() - t})
            self.compiled.add(key)
        runs = 0
        start = time.perf_counter()
        while runs < max(1, min_runs) or time.perf_counter() - start < min_seconds:
            t = time.perf_counter_ns()
            result = mod.evaluate(function, prepared)
            timings.append({"name": "evaluate", "nanoseconds": time.perf_counter_ns() - t})
            runs += 1
        return {"id": mid, "success": True, "output": mod.output(function, result),
                "timings": timings}


def _signature(obj):
    """What decides whether a call compiles anew: the types, ranks and layouts of
    the prepared arguments and any strings among them (e.g. an eval's variant)."""
    if isinstance(obj, (list, tuple)):
        return tuple(_signature(o) for o in obj)
    if isinstance(obj, dict):
        return tuple((k, _signature(v)) for k, v in sorted(obj.items()))
    if isinstance(obj, str):
        return obj
    if hasattr(obj, "dtype") and hasattr(obj, "ndim"):
        return (str(obj.dtype), obj.ndim, bool(getattr(obj, "flags", None) is None or obj.flags.c_contiguous))
    return type(obj).__name__


def main(stdin=sys.stdin, stdout=sys.stdout):
    from benchmarks.heap import keep_heap
    keep_heap()
    tool = Tool()
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError as e:
            print(json.dumps({"id": None, "success": False, "error": f"bad JSON: {e}"}),
                  file=stdout, flush=True)
            continue
        if msg.get("kind") == "end":
            break
        print(json.dumps(tool.handle(msg)), file=stdout, flush=True)


if __name__ == "__main__":
    main()
