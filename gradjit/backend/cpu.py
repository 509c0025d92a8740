"""CPU backend: turn derivative module text into something Numba can call.

The module is parsed and verified by llvmlite, put in a Numba ``CodeLibrary``
(whose ``finalize`` runs the post-AD O3 pipeline with unrolling and
vectorization) and exposed through a Numba ``@intrinsic`` that emits a call to
the entry function and links the library into the caller.  So the derivative is
callable from Python (through a ``@njit`` wrapper) and from any ``@njit``
function, and Numba caches it per argument-type signature like any dispatcher.
"""
from __future__ import annotations

import itertools
import os
import weakref

import llvmlite.binding as llvm
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.registry import cpu_target
from numba.extending import intrinsic

from . import vecmath

_ids = itertools.count()


def context():
    return cpu_target.target_context


def flat_param_types(sig_args) -> list:
    """LLVM types (opaque-pointer text) of the flattened parameters of ``sig_args``."""
    from ..frontend.typetree import flat_llvm_types
    return [_opaque(t) for t in flat_llvm_types(sig_args)]


def return_llvm(restype):
    """LLVM type Numba stores through ``retptr`` for ``restype`` (None for none)."""
    if restype is types.none:
        return None
    return _opaque(context().get_return_type(restype))


def meminfo_offsets(ty, base=0) -> tuple:
    """Byte offsets of the meminfo pointers of the arrays in a value of Numba type
    ``ty`` as Numba stores it through ``retptr`` (an array: its struct's first
    field; tuples: their members, nested), in the CPU target's data layout."""
    if isinstance(ty, types.Array):
        return (base,)
    if not isinstance(ty, (types.BaseTuple,)):
        return ()
    ctx = context()
    td = ctx.target_data
    out, off = [], base
    for member in ty:
        lty = ctx.get_value_type(member)
        align = lty.get_abi_alignment(td)
        off = (off + align - 1) // align * align
        out += meminfo_offsets(member, off)
        off += lty.get_abi_size(td)
    return tuple(out)


def _opaque(t) -> str:
    """Text of an llvmlite ``ir`` type with opaque pointers."""
    if isinstance(t, ir.PointerType):
        return "ptr"
    if isinstance(t, (ir.LiteralStructType,)):
        return "{ " + ", ".join(_opaque(e) for e in t.elements) + " }"
    if isinstance(t, ir.ArrayType):
        return f"[{t.count} x {_opaque(t.element)}]"
    return str(t)


def new_entry_name(tag: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in tag)[:40]
    return f"gradjit_entry_{safe}_{next(_ids)}"


#: A derivative of a function without loops (a per-element function such as BA's
#: residual, called once per observation) of at most this many instructions (as
#: generated, before optimization) is inlined into its ``@njit`` callers: its entry
#: and every function of it called once (the augmented primal, the reverse sweep)
#: are marked ``alwaysinline``, so the caller's O3 flattens the derivative into each
#: call site.  The arguments (an array is 5 + 2 * ndim scalars) are then not
#: marshalled through two calls, and what the caller knows (a local array's shape and
#: strides, constant seeds) reaches the derivative: the BA Jacobian (~2100
#: instructions per observation) gets ~13 % faster.  A derivative with loops does
#: enough work per call that the call costs little, while the caller's O3 would
#: optimize it a second time (GMM: +0.5 s of compile time), so it stays a call; so
#: does the derivative behind a call from Python (its wrapper only passes arguments).
INLINE_LIMIT = 4000


def instruction_count(text: str) -> int:
    """Instructions in LLVM module ``text`` (the indented lines of function bodies)."""
    return sum(1 for line in text.splitlines()
               if line.startswith("  ") and not line.lstrip().startswith(";"))


def _mark_inline(mod, text: str, entry: str) -> None:
    """Mark ``alwaysinline`` the ``entry`` of ``mod`` and its other functions with a
    single call site (by the text: ``@name(`` once besides the definition), except
    the tape runtime (``gj.tape.*``, whose slow paths are ``noinline``)."""
    for f in mod.functions:
        if f.is_declaration or f.name.startswith("gj.tape."):
            continue
        attrs = {a.decode() if isinstance(a, bytes) else str(a) for a in f.attributes}
        if "noinline" in attrs or "alwaysinline" in attrs:
            continue
        uses = text.count(f"@{f.name}(") + text.count(f'@"{f.name}"(') - 1
        if f.name == entry or uses == 1:
            f.add_function_attribute("alwaysinline")


class DerivativeModule:
    """Verified LLVM text of a derivative module, linked into every Numba
    library that calls it (so it is optimized and compiled once, together with
    its caller, by the caller's post-AD O3 pipeline).  With ``inline`` (the
    differentiated code has no loops) and at most :data:`INLINE_LIMIT` instructions
    it is inlined into ``@njit`` callers."""

    def __init__(self, text: str, name: str, inline: bool = False):
        self.text, self.name = text, name
        self.inlinable = inline and instruction_count(text) <= INLINE_LIMIT
        self._linked = weakref.WeakKeyDictionary()     # library -> entry symbol there

    def link_into(self, library, inline: bool = False) -> str:
        """Add a copy to ``library`` (once: the call sites of one compiled function
        share it; a copy per call site made a function with 16 calls compile 3x
        slower); returns the symbol of its entry there (unique per copy, so callers
        compiled separately never clash in the JIT).  ``inline``: the caller is
        user code, into which a small loop-free derivative is inlined."""
        try:
            name = self._linked.get(library)
        except TypeError:                # a library without weak references
            name = None
        if name is not None:
            return name
        name = f"{self.name}_{next(_ids)}"
        text = self.text.replace(self.name, name)
        mod = llvm.parse_assembly(text)
        mod.name = name
        if inline and self.inlinable:
            _mark_inline(mod, text, name)
        library.add_llvm_module(mod)
        vecmath.ordered_reductions(library)
        try:
            self._linked[library] = name
        except TypeError:
            pass
        return name


def build_library(text: str, name: str, debug_dir: str = None,
                  inline: bool = False, vector_math: bool = True) -> DerivativeModule:
    """Parse and verify derivative module ``text``; ``inline``: the differentiated
    code has no loops (see :data:`INLINE_LIMIT`); ``vector_math``: let its math
    calls vectorize (:func:`vecmath.annotate`; CPU code only).

    Raises ``RuntimeError`` (without the IR, which goes to ``debug_dir`` or the
    ``GRADJIT_DEBUG_DIR`` directory when set) if LLVM rejects the module.
    """
    if vector_math:
        text = vecmath.annotate(text)
    debug_dir = debug_dir or os.environ.get("GRADJIT_DEBUG_DIR")
    if debug_dir:
        os.makedirs(debug_dir, exist_ok=True)
        with open(os.path.join(debug_dir, name + ".ll"), "w") as f:
            f.write(text)
    try:
        mod = llvm.parse_assembly(text)
        mod.verify()
    except RuntimeError as e:
        msg = " ".join(str(e).split())[:300] if str(e) else "invalid IR"
        raise RuntimeError(
            f"gradjit generated an invalid derivative module ({msg}); this is a gradjit bug. "
            "Set GRADJIT_DEBUG_DIR to a directory to keep the IR for a report.") from None
    return DerivativeModule(text, name, inline)


def descriptor_type(ty):
    """Numba type of the descriptor of an array of Numba type ``ty`` handed to
    entry checks: ``(address, shape, strides, itemsize)``, address and sizes in
    bytes, a 0-d array described as shape ``(1,)``."""
    nd = max(ty.ndim, 1)
    return types.Tuple((types.intp, types.UniTuple(types.intp, nd),
                        types.UniTuple(types.intp, nd), types.intp))


def _descriptor(ctx, builder, ty, value):
    """``(type, value)`` of the descriptor (:func:`descriptor_type`) of array
    ``value``: integers only, so the checks take no reference to the array (an
    atomic increment and decrement per array and call)."""
    ary = ctx.make_array(ty)(ctx, builder, value=value)
    item = ctx.get_constant(types.intp, ctx.get_abi_sizeof(ctx.get_data_type(ty.dtype)))
    addr = builder.ptrtoint(ary.data, ctx.get_value_type(types.intp))
    dty = descriptor_type(ty)
    if ty.ndim == 0:
        one = types.UniTuple(types.intp, 1)
        shape = ctx.make_tuple(builder, one, [ctx.get_constant(types.intp, 1)])
        strides = ctx.make_tuple(builder, one, [item])
    else:
        shape, strides = ary.shape, ary.strides
    return dty, ctx.make_tuple(builder, dty, [addr, shape, strides, item])


def _propagate_as_raise(ctx, builder, status):
    """Return ``status`` to the caller when it is an error, as Numba's
    ``return_status_propagate`` does, with the store of the exception marked as a
    raise (``!numba_exception_output``, what Numba's ``raise`` emits).  Numba's
    reference-count pruning then pairs the caller's increments before the call
    with its decrements after it across this error branch ("fan-out with raise"):
    without the mark, every array view passed to a derivative from ``@njit`` code
    (``d(cams[i], ...)`` in a loop) kept an atomic increment and decrement per call,
    ~30 % of the BA residual's derivative call.  Like a Numba ``raise``, the error
    path then leaves those references to the exception's caller."""
    with cgutils.if_unlikely(builder, status.is_error):
        cc = ctx.call_conv
        trystatus = cc.check_try_status(builder)
        store = builder.store(status.excinfoptr, cc._get_excinfo_argument(builder.function))
        store.set_metadata("numba_exception_output",
                           builder.module.add_metadata([ir.IntType(1)(1)]))
        with builder.if_then(builder.not_(trystatus.in_try)):
            cc._return_errcode_raw(builder, status.code)


def make_intrinsic(resolve, entry_check=None, star=False, name=None):
    """An intrinsic ``call(args_tuple)`` (with ``star``: ``call(*args)``, so that a
    call from ``@njit`` code passes its arguments without building a tuple of new
    references, whose increments and decrements cost more than the derivative of
    a small function): ``resolve(arg_types)`` returns ``(signature_return_type,
    library, entry_name)`` for the members' types.  ``entry_check(arg_types)``, if
    given, returns a list of ``(indices, check)``: Python functions ``check`` of
    the members at ``indices`` compiled in before the call, which raise on
    arguments the derivative cannot take; an array member reaches them as its
    descriptor (:func:`descriptor_type`), any other member as it is.  ``name``
    names the intrinsic in Numba's messages."""

    def typer(args):
        argtys = tuple(args)
        restype, lib, entry = resolve(argtys)
        checks = entry_check(argtys) if entry_check is not None else []
        sig = restype(types.StarArgTuple.from_types(argtys) if star else args)

        def codegen(ctx, builder, signature, llargs):
            entry_name = lib.link_into(ctx.active_code_library, inline=star)
            values = cgutils.unpack_tuple(builder, llargs[0], len(argtys))
            desc = {}
            for idx, fn in checks:
                for i in idx:
                    if i not in desc:
                        desc[i] = (_descriptor(ctx, builder, argtys[i], values[i])
                                   if isinstance(argtys[i], types.Array) else (argtys[i], values[i]))
                csig = types.none(*[desc[i][0] for i in idx])
                cres = ctx.compile_subroutine(builder, fn, csig)
                status, _ = ctx.call_internal_no_propagate(builder, cres.fndesc, csig,
                                                           [desc[i][1] for i in idx])
                _propagate_as_raise(ctx, builder, status)
            fnty = ctx.call_conv.get_function_type(restype, argtys)
            fn = cgutils.get_or_insert_function(builder.module, fnty, entry_name)
            status, res = ctx.call_conv.call_function(builder, fn, restype, argtys, values)
            _propagate_as_raise(ctx, builder, status)
            return res if restype is not types.none else ctx.get_dummy_value()

        return sig, codegen

    if star:
        def call_derivative(typingctx, *args):
            return typer(args)
    else:
        def call_derivative(typingctx, args):
            return typer(args)
    if name:
        call_derivative.__name__ = call_derivative.__qualname__ = name
    return intrinsic(call_derivative)
