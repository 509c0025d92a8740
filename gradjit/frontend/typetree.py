"""TypeTrees for Numba argument types (seed document 004): for every LLVM
argument a Numba type flattens to, what it holds.

A leaf is one of

* ``("float", "double" | "float")`` - a float scalar;
* ``("data", "double" | "float" | None)`` - an array's data pointer and the
  float type of its elements (None for integer or bool arrays);
* ``("int",)`` - an integer, bool or index (never active);
* ``("opaque",)`` - a pointer that holds no float data (meminfo, parent object).

Numba's CPU calling convention flattens an array to ``meminfo, parent, nitems,
itemsize, data, shape[0..ndim), strides[0..ndim)`` and a tuple to its members.
"""
from __future__ import annotations

from numba.core import types

from ..errors import UnsupportedError

_FLOAT = {types.float64: "double", types.float32: "float"}


def float_llvm(ty):
    """LLVM float type name of a Numba float type, or None."""
    return _FLOAT.get(ty)


def leaves(ty) -> list:
    """The TypeTree leaves of Numba type ``ty``, in flattened argument order.

    Raises :class:`~gradjit.UnsupportedError` for types gradjit does not model
    (complex numbers, records, lists, dicts, ...).
    """
    if ty in _FLOAT:
        return [("float", _FLOAT[ty])]
    if isinstance(ty, (types.Integer, types.Boolean)):
        return [("int",)]
    if isinstance(ty, types.Array):
        if not isinstance(ty.dtype, (types.Float, types.Integer, types.Boolean)) or \
                (isinstance(ty.dtype, types.Float) and ty.dtype not in _FLOAT):
            raise UnsupportedError(f"arrays of {ty.dtype}")
        return ([("opaque",), ("opaque",), ("int",), ("int",), ("data", _FLOAT.get(ty.dtype))]
                + [("int",)] * (2 * ty.ndim))
    if isinstance(ty, types.BaseTuple):
        return [leaf for t in ty for leaf in leaves(t)]
    if isinstance(ty, types.NoneType):
        return [("opaque",)]             # Numba passes None as a null pointer
    if isinstance(ty, types.Omitted):
        return []
    return _opaque_leaves(ty)


def flat_llvm_types(sig_args) -> list:
    """llvmlite types of the parameters Numba's CPU calling convention flattens
    the Numba types ``sig_args`` to."""
    from numba.core.registry import cpu_target
    ctx = cpu_target.target_context
    try:
        return list(ctx.get_arg_packer(list(sig_args)).argument_types)
    except KeyError:          # a type whose data model Numba registers on first use
        ctx.refresh()
        return list(ctx.get_arg_packer(list(sig_args)).argument_types)


def modeled(ty) -> bool:
    """Does gradjit know what ``ty`` holds (float and int scalars, arrays, tuples of
    those, None)?  Other types (strings, typed lists and dicts, jitclass
    instances, functions, complex numbers) can only be held constant, as
    :func:`_opaque_leaves` describes them."""
    if ty in _FLOAT or isinstance(ty, (types.Integer, types.Boolean, types.Array,
                                       types.NoneType, types.Omitted)):
        return True
    if isinstance(ty, types.BaseTuple):
        return all(modeled(t) for t in ty)
    return False


def _opaque_leaves(ty) -> list:
    """Leaves of a type gradjit does not model, from the LLVM parameters Numba
    flattens it to: pointers are opaque, integers ints, floats float scalars.
    Fit for an argument held constant only (its activity is checked by the
    caller; derivatives stored into it are reported after AD).

    Raises :class:`~gradjit.UnsupportedError` when a parameter is of another kind."""
    from llvmlite import ir
    try:
        params = flat_llvm_types([ty])
    except Exception:                     # a type Numba cannot pass
        raise UnsupportedError(f"arguments of type {ty}") from None
    out = []
    for p in params:
        if isinstance(p, ir.PointerType):
            out.append(("opaque",))
        elif isinstance(p, ir.IntType):
            out.append(("int",))
        elif isinstance(p, ir.DoubleType):
            out.append(("float", "double"))
        elif isinstance(p, ir.FloatType):
            out.append(("float", "float"))
        else:
            raise UnsupportedError(f"arguments of type {ty}")
    return out


def describe(ty) -> str:
    """Readable TypeTree, e.g. ``{[-1]:Pointer, [-1,-1]:Float@double}`` style text."""
    parts = []
    for k, leaf in enumerate(leaves(ty)):
        if leaf[0] == "float":
            parts.append(f"[{k}]:Float@{leaf[1]}")
        elif leaf[0] == "data":
            parts.append(f"[{k}]:Pointer,[{k},-1]:" + (f"Float@{leaf[1]}" if leaf[1] else "Integer"))
        elif leaf[0] == "int":
            parts.append(f"[{k}]:Integer")
        else:
            parts.append(f"[{k}]:Pointer")
    return "{" + ", ".join(parts) + "}"
