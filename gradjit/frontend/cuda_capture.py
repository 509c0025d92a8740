"""Capture a numba-cuda kernel's NVVM IR for gradjit.

``numba.cuda.compiler.compile_cuda`` lowers the kernel body as a device function
(``i32 f(ptr retptr, <flattened args>)``) in unoptimized, typed-pointer NVVM IR;
LLVM 22 parses and upgrades it.  gradjit internalizes everything but the body and
runs the pre-AD pipeline with the NVPTX target machine.  No GPU is needed.
"""
from __future__ import annotations

from dataclasses import dataclass

import llvmlite.binding as llvm
from numba.core import types

from ..ir import pipeline
from ..ir.aggregate_phis import split_aggregate_merges
from ..ir.unroll import unroll_small_loops

DEFAULT_CC = (8, 0)


@dataclass
class CapturedKernel:
    module: "llvm.ModuleRef"
    name: str
    argtypes: tuple
    py_func: object
    cc: tuple


def kernel_py_func(kernel):
    """The Python function of a ``numba.cuda.jit`` dispatcher (or the function itself)."""
    return getattr(kernel, "py_func", kernel)


def is_cuda_kernel(fn) -> bool:
    try:
        from numba.cuda.dispatcher import CUDADispatcher
    except Exception:            # numba-cuda not installed
        return False
    return isinstance(fn, CUDADispatcher)


def capture_kernel(kernel, argtypes, cc=DEFAULT_CC, debug=False) -> CapturedKernel:
    """Capture the body of ``kernel`` for Numba types ``argtypes`` (compute
    capability ``cc``, a (major, minor) tuple)."""
    from numba.cuda.compiler import compile_cuda
    py_func = kernel_py_func(kernel)
    cres = compile_cuda(py_func, types.void, tuple(argtypes), debug=debug, lineinfo=debug,
                        cc=tuple(cc))
    lib = cres.library
    texts = [str(m) for m in getattr(lib, "modules", [])] or [lib.get_llvm_str()]
    for sub in getattr(lib, "_linking_libraries", ()):
        texts.extend(str(m) for m in getattr(sub, "modules", []))
    mod = llvm.parse_assembly(texts[0])
    for t in texts[1:]:
        mod.link_in(llvm.parse_assembly(t))
    name = cres.fndesc.llvm_func_name
    for f in mod.functions:
        if not f.is_declaration:
            f.linkage = "external" if f.name == name else "internal"
    sm = f"sm_{cc[0]}{cc[1]}"
    tm = pipeline.nvptx_target_machine(sm, 2)
    pipeline.pre_ad(mod, tm)
    mod = unroll_small_loops(mod, tm)
    mod = split_aggregate_merges(mod, tm)
    return CapturedKernel(mod, name, tuple(argtypes), py_func, tuple(cc))
