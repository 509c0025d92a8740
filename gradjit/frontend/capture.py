"""Capture a Numba function's LLVM IR *before* Numba's final optimization.

Numba lowers each compiled function to an ``llvmlite.ir`` module and hands it to
``CPUCodeLibrary.add_ir_module``; afterwards it runs function passes and, on
``finalize``, the full O3 pipeline with unrolling and vectorization.  gradjit
records the raw text at ``add_ir_module`` (a hook installed on import), links the
raw modules of the function's library and of every library it links (callees,
``@overload`` implementations such as ``np.sum``), internalizes everything but
the target and runs its own pre-AD pipeline (:func:`gradjit.ir.pipeline.pre_ad`).
Libraries compiled before gradjit was imported have no raw IR: the top-level
function is then recompiled, and a callee falls back to its optimized module.
"""
from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass

import llvmlite.binding as llvm
import numba
from numba.core import cgutils, codegen

from ..ir import pipeline
from ..ir.aggregate_phis import split_aggregate_merges
from ..ir.aggregate_stores import split_aggregate_stores
from ..ir.constructors import inline_array_constructors
from ..ir.unroll import unroll_small_loops
from .markers import mark_prange

_lock = threading.RLock()
_installed = False


def install_hook():
    """Record the raw IR of every Numba CPU library compiled from now on."""
    global _installed
    if _installed:
        return
    orig = codegen.CPUCodeLibrary.add_ir_module

    def add_ir_module(self, ir_module):
        raw = self.__dict__.setdefault("_gradjit_raw_ir", [])
        raw.append(cgutils.normalize_ir_text(str(ir_module)))
        return orig(self, ir_module)

    add_ir_module.__wrapped__ = orig
    codegen.CPUCodeLibrary.add_ir_module = add_ir_module
    _installed = True


@dataclass
class Captured:
    """A captured function: pre-AD-optimized LLVM module and Numba metadata."""
    module: "llvm.ModuleRef"
    name: str                 # LLVM symbol of the function
    argtypes: tuple           # numba types of the arguments
    restype: object           # numba return type
    py_func: object
    context: object           # numba target context
    debug: bool = False


def _collect(lib, seen, out, root=None):
    if id(lib) in seen:
        return
    seen.add(id(lib))
    raw = getattr(lib, "_gradjit_raw_ir", None)
    if raw:
        out.extend(raw)
    else:
        fresh = _recompiled(lib, root) if root is not None else None
        if fresh is not None:
            # the callee's IR before Numba's final optimization, under the name callers use
            flib, old, new = fresh
            more = []
            _collect(flib, seen, more, root)
            out.extend(t.replace(new, old) for t in more)
            return
        out.append(str(lib._get_module_for_linking()))
    for sub in getattr(lib, "_linking_libraries", ()):
        _collect(sub, seen, out, root)


def _reachable_overloads(py_func, depth=3):
    """(dispatcher, compile result) of the Numba dispatchers reachable from
    ``py_func``'s globals (callees, their callees, ...)."""
    seen, todo = set(), [(py_func, 0)]
    while todo:
        f, d = todo.pop()
        if id(f) in seen or d > depth:
            continue
        seen.add(id(f))
        for v in list(getattr(f, "__globals__", {}).values()):
            if isinstance(v, numba.core.registry.CPUDispatcher):
                for cr in list(v.overloads.values()):
                    yield v, cr
                todo.append((v.py_func, d + 1))


def _recompiled(lib, root):
    """A callee library compiled before gradjit's hook has no raw IR: compile its
    function again with a fresh dispatcher (hook on).  Returns (library, symbol
    callers use, symbol of the fresh copy) or None."""
    for disp, cr in _reachable_overloads(root):
        if cr.library is lib:
            opts = {k: v for k, v in disp.targetoptions.items() if k != "nopython"}
            fresh = numba.njit(**opts)(disp.py_func)
            fresh.compile(cr.signature.args)
            fc = fresh.overloads[cr.signature.args]
            return fc.library, cr.fndesc.llvm_func_name, fc.fndesc.llvm_func_name
    return None


def dispatcher_of(fn):
    """The Numba dispatcher of ``fn`` (compiled with ``numba.njit`` if it is a plain function)."""
    if isinstance(fn, numba.core.registry.CPUDispatcher):
        return fn
    if hasattr(fn, "py_func") and hasattr(fn, "overloads"):
        return fn
    if getattr(fn, "_gradjit_transform", False):
        from ..errors import UnsupportedError
        raise UnsupportedError("a function made by a gradjit transform (grad of grad: "
                               "higher-order derivatives are not supported; a derivative "
                               "made by gradjit.autodiff can be called inside @njit code)",
                               function=getattr(fn, "__name__", None))
    cached = _plain.get(fn)
    if cached is None:
        cached = _plain[fn] = numba.njit(fn)
    return cached


_plain = {}


def compile_overload(disp, argtypes, debug=False):
    """Compile ``disp`` for ``argtypes``; return Numba's compile result.

    With ``debug`` (or when the existing overload predates the hook) a fresh
    dispatcher of the same Python function is compiled so its raw IR is recorded.
    """
    argtypes = tuple(argtypes)
    if not debug:
        cres = disp.overloads.get(argtypes)
        if cres is None:
            disp.compile(argtypes)
            cres = disp.overloads[argtypes]
        if getattr(cres.library, "_gradjit_raw_ir", None):
            return cres
    opts = {k: v for k, v in disp.targetoptions.items() if k != "nopython"}
    if debug:
        opts.update(debug=True, boundscheck=False)
    fresh = numba.njit(**opts)(disp.py_func)
    with warnings.catch_warnings():
        # the debug compile (for file:line of an error) warns about generated code
        # (array expressions) that has no source; not the user's concern
        warnings.simplefilter("ignore", numba.NumbaDebugInfoWarning)
        fresh.compile(argtypes)
    return fresh.overloads[argtypes]


_UNRESOLVED = re.compile(r'^(@"\.numba\.unresolved\$([^"]+)") = [^\n]*global ptr[^\n]*$', re.M)


def _defines(mod, name) -> bool:
    try:
        return not mod.get_function(name).is_declaration
    except NameError:
        return False


# linkages whose definitions the linker drops when nothing in the destination
# module refers to them yet
_DISCARDABLE = {"linkonce_any", "linkonce_odr", "weak_any", "weak_odr",
                "available_externally"}


def _link(mod, text):
    """Link the library text ``text`` into ``mod``.  Numba libraries each carry
    copies of shared helpers (``__excinfo_unwrap_args...`` constants, callees
    compiled into several libraries): symbols ``mod`` already defines become
    ``linkonce_odr`` in the incoming copy, so the linker keeps one.  A function
    ``mod`` does not define yet is kept whatever its linkage: an optimized
    library (compiled before gradjit's hook) shares its functions as
    ``linkonce_odr``, which the linker would drop when the module that calls
    them comes later in the link order (:func:`capture` internalizes every
    function but the target afterwards).  Global variables keep their linkage:
    they are not internalized, and an external copy in every library a
    derivative is linked into would be defined twice."""
    other = llvm.parse_assembly(text)
    for f in other.functions:
        if f.is_declaration:
            continue
        if _defines(mod, f.name):
            f.linkage = "linkonce_odr"
        elif f.linkage.name in _DISCARDABLE:
            f.linkage = "external"
    for g in other.global_variables:
        if g.is_declaration:
            continue
        try:
            mine = mod.get_global_variable(g.name)
        except NameError:
            continue
        if not mine.is_declaration:
            g.linkage = "linkonce_odr"
    mod.link_in(other)


def _unresolved(mod) -> set:
    """Symbols called through ``.numba.unresolved$`` pointers and not defined in ``mod``."""
    out = set()
    for g in mod.global_variables:
        if g.name.startswith(".numba.unresolved$"):
            target = g.name[len(".numba.unresolved$"):]
            if not _defines(mod, target):
                out.add(target)
    return out


def _libraries_defining(py_func, symbols, depth=3):
    """Code libraries of Numba overloads (of dispatchers reachable from
    ``py_func``'s globals) whose function symbol is in ``symbols``."""
    if not symbols:
        return []
    found, seen = [], set()
    todo = [(py_func, 0)]
    while todo:
        f, d = todo.pop()
        if id(f) in seen or d > depth:
            continue
        seen.add(id(f))
        for v in getattr(f, "__globals__", {}).values():
            if isinstance(v, numba.core.registry.CPUDispatcher):
                for cr in list(v.overloads.values()):
                    if cr.fndesc.llvm_func_name in symbols:
                        found.append(cr.library)
                todo.append((v.py_func, d + 1))
    return found


def _resolve_recursion(mod):
    """Numba calls a function recursively through a pointer it fills in when the
    library is finalized (``.numba.unresolved$NAME``); point it at ``NAME`` so the
    pre-AD pipeline turns those calls into direct ones the AD can follow."""
    text = str(mod)
    if ".numba.unresolved$" not in text:
        return mod
    defined = {f.name for f in mod.functions if not f.is_declaration}

    def fix(m):
        target = m.group(2)
        if target in defined:
            return f'{m.group(1)} = internal constant ptr @{target}'
        return m.group(0)
    return llvm.parse_assembly(_UNRESOLVED.sub(fix, text))


def capture(fn, argtypes, debug=False) -> Captured:
    """Capture ``fn`` (dispatcher or Python function) for numba ``argtypes``.

    Returns a :class:`Captured` whose module holds the target, external, plus
    its callees, internal, after the pre-AD pipeline.
    Raises ``numba.core.errors.TypingError`` if Numba cannot compile ``fn``.
    """
    install_hook()
    disp = dispatcher_of(fn)
    with _lock:
        cres = compile_overload(disp, argtypes, debug)
        texts = []
        seen = set()
        _collect(cres.library, seen, texts, disp.py_func)
        mod = llvm.parse_assembly(texts[0])
        for t in texts[1:]:
            _link(mod, t)
        # recursive callees are reached through pointers numba fills at run time:
        # bring in the libraries that define them
        for _ in range(8):
            missing = _unresolved(mod)
            libs = [lib for lib in _libraries_defining(disp.py_func, missing) if id(lib) not in seen]
            if not libs:
                break
            for lib in libs:
                more = []
                _collect(lib, seen, more, disp.py_func)
                for t in more:
                    _link(mod, t)
    mod = _resolve_recursion(mod)
    name = cres.fndesc.llvm_func_name
    for f in mod.functions:
        if f.is_declaration:
            continue
        if f.name == name:
            f.linkage = "external"
        else:
            f.linkage = "internal"
    pipeline.pre_ad(mod)
    mod = unroll_small_loops(mod)
    mod = inline_array_constructors(mod, keep={name})
    mod = split_aggregate_merges(mod)
    mod = split_aggregate_stores(mod)
    mod = mark_prange(mod)
    return Captured(mod, name, tuple(argtypes), cres.signature.return_type,
                    disp.py_func, cres.target_context, debug)
