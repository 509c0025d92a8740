"""Emit LLVM instruction text: fresh temporaries, typed float constants and the
declarations of the math functions the derivative code calls."""
from __future__ import annotations

import struct

from ..ir.model import local_ref

# intrinsics LLVM 22 has for these math functions (name -> llvm.NAME.<ty>)
_INTRINSIC = {"sin", "cos", "tan", "exp", "exp2", "log", "log2", "log10", "sqrt", "fabs",
              "floor", "ceil", "trunc", "pow", "copysign", "minnum", "maxnum", "asin",
              "acos", "atan", "atan2", "sinh", "cosh", "tanh", "powi"}
_SUFFIX = {"double": "f64", "float": "f32"}


def fconst(value: float, ty: str) -> str:
    """Exact LLVM text of ``value`` as a constant of float type ``ty`` (rounded
    to float32 first for ``float``)."""
    if ty == "float":
        value = struct.unpack("<f", struct.pack("<f", value))[0]
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", value))[0]


def _vector(ty: str):
    """``(N, element type)`` of a vector type ``<N x ty>``, else None."""
    if not ty.startswith("<"):
        return None
    n, elem = ty[1:-1].split(" x ")
    return int(n), elem.strip()


# intrinsics the NVPTX backend lowers to instructions; other math goes to libdevice
_NVPTX_INTRINSIC = {"fabs", "sqrt", "copysign", "floor", "ceil", "trunc", "minnum", "maxnum",
                    "fma", "rint"}


class Builder:
    """Accumulates instruction lines; ``decls`` (shared per module) collects the
    ``declare`` lines needed by calls it emits.  ``target`` "cuda" calls libdevice
    (``__nv_sin``) for the math the NVPTX backend cannot lower."""

    def __init__(self, prefix: str, decls: dict, counter=None, target="cpu"):
        self.prefix = prefix
        self.decls = decls
        self.lines = []
        self._n = counter if counter is not None else [0]
        self.target = target

    def tmp(self) -> str:
        self._n[0] += 1
        return local_ref(f"{self.prefix}{self._n[0]}")

    def emit(self, line: str):
        self.lines.append(line)

    def assign(self, rhs: str) -> str:
        r = self.tmp()
        self.lines.append(f"{r} = {rhs}")
        return r

    # arithmetic -----------------------------------------------------------
    def binop(self, op, ty, a, b):
        return self.assign(f"{op} {ty} {a}, {b}")

    def fadd(self, ty, a, b):
        return self.binop("fadd", ty, a, b)

    def fsub(self, ty, a, b):
        return self.binop("fsub", ty, a, b)

    def fmul(self, ty, a, b):
        return self.binop("fmul", ty, a, b)

    def fdiv(self, ty, a, b):
        return self.binop("fdiv", ty, a, b)

    def fneg(self, ty, a):
        return self.assign(f"fneg {ty} {a}")

    def const(self, value, ty):
        """``value`` as a constant of float type ``ty``, or of every element of the
        float vector type ``ty`` (``<N x double>``)."""
        vec = _vector(ty)
        if vec is None:
            return fconst(value, ty)
        n, elem = vec
        if value == 0.0 and str(value)[0] != "-":
            return "zeroinitializer"
        return "<" + ", ".join([f"{elem} {fconst(value, elem)}"] * n) + ">"

    def select(self, cond, ty, a, b):
        """``cond ? a : b``; for a vector ``ty`` the condition is a vector of i1
        (element-wise), as ``fcmp`` on vectors gives."""
        vec = _vector(ty)
        cty = "i1" if vec is None else f"<{vec[0]} x i1>"
        return self.assign(f"select {cty} {cond}, {ty} {a}, {ty} {b}")

    def splat(self, value, ty, n):
        """The vector ``<n x ty>`` with every element ``value`` (a scalar ref)."""
        vt = f"<{n} x {ty}>"
        one = self.assign(f"insertelement {vt} poison, {ty} {value}, i64 0")
        return self.assign(f"shufflevector {vt} {one}, {vt} poison, <{n} x i32> zeroinitializer")

    def fcmp(self, pred, ty, a, b):
        return self.assign(f"fcmp {pred} {ty} {a}, {b}")

    # calls ----------------------------------------------------------------
    def call(self, fname: str, ret: str, args, cc: str = "") -> str:
        """Call ``@fname`` with ``args`` = [(type, ref)]; declares it if needed."""
        sig = ", ".join(t for t, _ in args)
        self.decls.setdefault(fname, f"declare {ret} @{fname}({sig})")
        argtext = ", ".join(f"{t} {v}" for t, v in args)
        cc = cc + " " if cc else ""
        if ret == "void":
            self.lines.append(f"call {cc}void @{fname}({argtext})")
            return ""
        return self.assign(f"call {cc}{ret} @{fname}({argtext})")

    def math(self, name: str, ty: str, *args) -> str:
        """Call math function ``name`` (an intrinsic when LLVM has one, else libm)."""
        if self.target == "cuda" and name not in _NVPTX_INTRINSIC:
            fname = f"__nv_{name}" + ("f" if ty == "float" else "")
            if name == "powi":
                return self.call(f"__nv_powi" + ("f" if ty == "float" else ""), ty,
                                 [(ty, args[0]), ("i32", args[1])])
            return self.call(fname, ty, [(ty, a) for a in args])
        if name in _INTRINSIC:
            fname = f"llvm.{name}.{_SUFFIX[ty]}"
            if name == "powi":
                fname += ".i32"
                return self.call(fname, ty, [(ty, args[0]), ("i32", args[1])])
        else:
            fname = name if ty == "double" else name + "f"
        return self.call(fname, ty, [(ty, a) for a in args])
