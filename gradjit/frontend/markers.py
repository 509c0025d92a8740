"""Parallel markers of CPU code: the ``prange`` loops of ``@njit(parallel=True)``.

Numba lowers a parfor to a *gufunc* ``G(char **args, intp *dims, intp *steps,
void *data)`` run by its threading layer through
``numba_parallel_for(G, args, dims, steps, data, inner_ndim, array_count,
num_threads)``.  ``args[0]`` is the schedule (one ``[start, end]`` range of the
loop per work item), the other entries point at the arrays and scalars the loop
body uses.  The threading layer hands each thread a run of work items by offsetting
every ``args[j]`` by ``steps[j]`` per item and lowering ``dims[0]``.

Capture rewrites each such call into ``%gj.par.K = call ptr @gj.parallel_for(...)``
(same operands) so the AD sees the launch as one instruction with a value: the
augmented primal returns there the handle of the launch's per-item tapes, which the
reverse sweep needs (:mod:`gradjit.ad.parallel_for`).  The primal meaning is
unchanged: ``gj.parallel_for`` runs ``numba_parallel_for`` and returns null.
"""
from __future__ import annotations

import re

import llvmlite.binding as llvm

PARALLEL_FOR = "gj.parallel_for"
SIGNATURE = "(ptr, ptr, ptr, ptr, ptr, i64, i64, i64)"

_CALL = re.compile(r"^(\s*)(?:(?:tail|notail|musttail)\s+)?call\s+void\s+@numba_parallel_for\(",
                   re.M)


def mark_prange(mod: "llvm.ModuleRef") -> "llvm.ModuleRef":
    """``mod`` with every ``numba_parallel_for`` call turned into a
    ``gj.parallel_for`` call with a result (see the module docstring); ``mod``
    itself when it has no parallel region."""
    text = str(mod)
    if "@numba_parallel_for(" not in text:
        return mod
    count = [0]

    def sub(m):
        k = count[0]
        count[0] += 1
        return f"{m.group(1)}%gj.par.{k} = call ptr @{PARALLEL_FOR}("

    text = _CALL.sub(sub, text)
    text += f"\ndeclare ptr @{PARALLEL_FOR}{SIGNATURE}\n"
    out = llvm.parse_assembly(text)
    out.verify()
    return out


PRIMAL = f"""define internal ptr @{PARALLEL_FOR}(ptr %fn, ptr %args, ptr %dims, ptr %steps, ptr %data, i64 %ndim, i64 %narrays, i64 %nthreads) {{
entry:
  call void @numba_parallel_for(ptr %fn, ptr %args, ptr %dims, ptr %steps, ptr %data, i64 %ndim, i64 %narrays, i64 %nthreads)
  ret ptr null
}}"""
