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
    raise UnsupportedError(f"arguments of type {ty}")


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
