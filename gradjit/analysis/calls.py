"""Classification of call targets: math with derivative rules, NRT runtime,
memory intrinsics, no-op intrinsics, Numba-compiled callees, unknown externals."""
from __future__ import annotations

import re

NRT_ALLOC = {"NRT_MemInfo_alloc_aligned", "NRT_MemInfo_alloc_safe_aligned",
             "NRT_MemInfo_alloc", "NRT_MemInfo_alloc_safe"}
NRT_REFCT = {"NRT_incref", "NRT_decref"}
# raw buffers (no meminfo): Numba's temporaries, e.g. for overlapping slice copies
RAW_ALLOC = {"NRT_Allocate"}
RAW_FREE = "NRT_Free"
NOOP_INTRINSICS = ("llvm.lifetime.", "llvm.assume", "llvm.experimental.noalias.scope.decl",
                   "llvm.dbg.", "llvm.prefetch", "llvm.invariant.", "llvm.sideeffect",
                   "llvm.stacksave", "llvm.stackrestore", "llvm.trap", "llvm.debugtrap")
BARRIERS = ("llvm.nvvm.barrier",)
PURE_INT_INTRINSICS = ("llvm.nvvm.read.ptx.sreg.", "llvm.smax.", "llvm.smin.", "llvm.umax.", "llvm.umin.", "llvm.abs.",
                       "llvm.ctpop.", "llvm.ctlz.", "llvm.cttz.", "llvm.bswap.", "llvm.fshl.",
                       "llvm.fshr.", "llvm.sadd.with.overflow.", "llvm.uadd.with.overflow.",
                       "llvm.ssub.with.overflow.", "llvm.usub.with.overflow.",
                       "llvm.smul.with.overflow.", "llvm.umul.with.overflow.",
                       "llvm.expect.", "llvm.is.fpclass.", "llvm.sadd.sat.", "llvm.uadd.sat.")
MEMORY = ("llvm.memcpy.", "llvm.memmove.", "llvm.memset.")
# exception/GIL/runtime helpers that touch no floating-point data
INACTIVE_EXTERNALS = {"NRT_MemInfo_call_dtor", "numba_gil_ensure", "numba_gil_release",
                      "NRT_decref", "NRT_incref", "numba_do_raise", "NRT_Free",
                      "numba_unpickle", "PyErr_SetString", "puts", "printf",
                      # new strides of a reshape (integers only)
                      "numba_attempt_nocopy_reshape",
                      # the parfor runtime: scheduling of work items on integers only
                      "get_sched_size", "do_scheduling_signed", "do_scheduling_unsigned",
                      "allocate_sched", "deallocate_sched", "get_num_threads",
                      "get_parallel_chunksize", "set_parallel_chunksize", "get_thread_id",
                      "PyEval_SaveThread", "PyEval_RestoreThread"}

# the reverse sweep calls these again instead of recording their result: a
# parfor's reduction slot is the one of the thread that runs the adjoint
# (Numba indexes per-thread reduction arrays by ``get_thread_id()``)
RECOMPUTE_CALLS = {"get_thread_id"}
PARALLEL = "gj.parallel_for"
# Numba's BLAS / LAPACK entry points (numba/_lapack.c) differentiated by gradjit.ad.linalg
LINALG = {"numba_xxdot", "numba_xxgemv", "numba_xxgemm", "numba_xxnrm2", "numba_xgesv",
          "numba_xxgetrf", "numba_ez_xxgetri", "numba_xxpotrf", "numba_ez_xxxevd",
          "numba_ez_gesdd"}

_SUFFIX = re.compile(r"\.(f32|f64|f80|f128|i32|i64|v\d+f\d+)$")


def math_name(callee: str):
    """Canonical math name of an intrinsic or libm callee ('llvm.sin.f64' -> 'sin',
    'sinf' -> 'sin'), or None."""
    if callee.startswith("llvm."):
        base = callee[5:]
        while True:
            nb = _SUFFIX.sub("", base)
            if nb == base:
                break
            base = nb
        return base
    if callee.startswith("__nv_"):
        callee = callee[5:]
    if callee.endswith("f") and callee[:-1] in LIBM_F:
        return callee[:-1]
    return callee


LIBM_F = {"sin", "cos", "tan", "exp", "log", "log1p", "expm1", "sqrt", "tanh", "sinh", "cosh",
          "asin", "acos", "atan", "atan2", "hypot", "floor", "ceil", "fabs", "copysign", "erf",
          "erfc", "pow", "log10", "log2", "exp2", "asinh", "acosh", "atanh", "cbrt", "fmod",
          "trunc", "round", "rint", "fmin", "fmax", "lgamma", "tgamma", "powi"}


def classify(callee: str, defined: bool) -> str:
    """One of 'math', 'nrt_alloc', 'raw_alloc', 'nrt_refct', 'memory', 'noop', 'pure_int',
    'barrier', 'parallel', 'linalg', 'defined', 'inactive_external', 'external'."""
    from ..ad.rules import has_rule
    if callee == PARALLEL:
        return "parallel"
    if callee in LINALG:
        return "linalg"
    if callee in NRT_ALLOC:
        return "nrt_alloc"
    if callee in RAW_ALLOC:
        return "raw_alloc"
    if callee in NRT_REFCT:
        return "nrt_refct"
    if callee.startswith(MEMORY):
        return "memory"
    if callee.startswith(BARRIERS):
        return "barrier"
    if callee.startswith(NOOP_INTRINSICS):
        return "noop"
    if callee.startswith(PURE_INT_INTRINSICS):
        return "pure_int"
    name = math_name(callee)
    if name and has_rule(name):
        return "math"
    if defined:
        return "defined"
    if callee in INACTIVE_EXTERNALS:
        return "inactive_external"
    return "external"
