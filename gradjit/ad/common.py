"""Pieces shared by the forward sweep (forward mode and augmented primal) and the
reverse sweep: parameter lists of derivative versions, placeholder resolution,
and the classification of memory by element type."""
from __future__ import annotations

import re

from ..analysis.activity import element_types, root
from ..ir.model import local_ref

TAPE = "%gj.tape"
_PLACEHOLDER = re.compile("\x01([^\x02]*)\x02")


def shadow_name(name: str, lane: int = 0) -> str:
    """The shadow (tangent) of value ``name``; in vector mode one per lane."""
    return local_ref(name + ".s" + (str(lane) if lane else ""))


def lane_key(name: str, lane: int = 0) -> str:
    """Key of the shadow of ``name`` in lane ``lane`` in a sweep's shadow table."""
    return name if not lane else f"{name}\x03{lane}"


def shadow_kind(lane: int = 0) -> str:
    """Record kind of the shadow of a value in lane ``lane`` ('s', 's1', ...)."""
    return "s" if not lane else f"s{lane}"


def placeholder(name: str, lane: int = 0) -> str:
    """A stand-in for the shadow of ``name``, resolved once the function is done
    (phis refer to shadows defined later in the block order)."""
    return f"\x01{lane_key(name, lane)}\x02"


def resolve(text: str, table: dict) -> str:
    """Replace placeholders by the table's refs (which may be placeholders too:
    the tangent of ``x + 1.0`` is the tangent of ``x``)."""
    def sub(m):
        ref = table[m.group(1)]
        seen = 0
        while ref.startswith("\x01") and seen < 10000:
            ref = table[ref[1:-1]]
            seen += 1
        return ref
    return _PLACEHOLDER.sub(sub, text)


class LaneSweep:
    """Lanes of vector mode (``width`` N), shared by the forward and reverse sweeps:
    ``self.lanes`` and the current ``self.lane``, which the shadow / adjoint naming
    of a sweep reads."""

    lanes = range(1)
    lane = 0

    def per_lane(self, f) -> list:
        """``[f() for each lane]`` with ``self.lane`` set to that lane."""
        out = []
        for k in self.lanes:
            self.lane = k
            out.append(f())
        self.lane = 0
        return out


def shadow_params(version, sweep: str):
    """(arg, is_float) pairs of the arguments that get a shadow parameter.

    Forward mode: every active argument (tangents of floats, shadows of pointers).
    Augmented primal and reverse sweep: active pointers only (float adjoints are
    returned through ``out`` pointers by the reverse sweep).
    """
    out = []
    for a, m in zip(version.fn.args, version.mask):
        if not m:
            continue
        if sweep == "forward" or a.type == "ptr":
            out.append(a)
    return out


def float_outs(version):
    """Active float arguments: the reverse sweep adds their adjoints to ``out`` pointers."""
    return [a for a, m in zip(version.fn.args, version.mask) if m and a.type != "ptr"]


def out_name(a, lane: int = 0) -> str:
    return local_ref(a.name + ".out" + (str(lane) if lane else ""))


class MemoryTypes:
    """Element type of the memory a pointer addresses (TypeTree of the argument it
    comes from, else the loads and stores made through the same allocation)."""

    def __init__(self, ctx, fn, version=None):
        self.ctx, self.fn = ctx, fn
        self._by_root = None
        # a prange body: element types of its arrays, by entry of ``args``, as the
        # launching function knows them
        self.slot_types = dict(getattr(version, "slot_types", None) or ())

    def kind(self, ptr) -> str:
        """'double' / 'float' for float memory, 'ptr' for pointer slots, 'int', or
        'unknown'."""
        if self.slot_types:
            from ..analysis.parallel import slot_of
            off = slot_of(ptr, self.fn.args[0].name)
            if off in self.slot_types:
                return self.slot_types[off]
        r = root(ptr)
        return "unknown" if r is None else self._of_root(r)

    def _of_root(self, r, depth=0) -> str:
        """:meth:`kind` of memory reached from root ``r`` (an argument or an
        allocation): the argument's TypeTree, else the loads and stores through it,
        else its uses (:meth:`_through_uses`)."""
        if r.kind == "arg":
            t = self.ctx.arg_elem_types.get((self.fn.name, r.name))
            if t:
                return t
        if self._by_root is None:
            self._by_root = element_types(self.fn)
            from .parallel_for import launched_element_types
            for k, tys in launched_element_types(self.ctx, self.fn).items():
                self._by_root.setdefault(k, set()).update(tys)
        tys = self._by_root.get(id(r), set())
        floats = [t for t in tys if t in ("double", "float")]
        if floats:
            return "double" if "double" in floats else floats[0]
        # the root of a data pointer is its meminfo, whose header is read as
        # pointers and integers: memory only copied or handed on gets its type there
        t = self._through_uses(r, depth)
        if t in ("double", "float") or not tys:
            return t
        return "ptr" if "ptr" in tys else "int"

    def _through_uses(self, r, depth=0) -> str:
        """Element type of memory this function never loads or stores itself (say a
        ``v.copy()`` only handed to a callee): from the other side of a ``memcpy``
        it takes part in, or from the callee argument it is passed as."""
        key = (self.fn.name, id(r))
        memo = self.ctx.__dict__.setdefault("_elem_through_uses", {})
        if key in memo:
            return memo[key]
        memo[key] = "unknown"                  # a recursion guard
        found = "unknown"
        for ins in self.fn.instructions():
            if found != "unknown" or depth > 8:
                break
            if ins.opcode != "call":
                continue
            args = ins.operands[:-1]
            mine = [k for k, a in enumerate(args) if a.type == "ptr" and root(a) is r]
            if not mine:
                continue
            if ins.callee.startswith(("llvm.memcpy.", "llvm.memmove.")):
                other = args[1] if 0 in mine else args[0]
                ro = root(other)
                if ro is not None and ro is not r:
                    t = self.kind(other)
                    found = t if t != "unknown" else found
            elif ins.callee in self.ctx.defined:
                callee = self.ctx.module.functions[ins.callee]
                mt = MemoryTypes(self.ctx, callee)
                for k in mine:
                    if k < len(callee.args):
                        t = mt.kind_of_arg(callee.args[k], depth + 1)
                        if t != "unknown":
                            found = t
                            break
        memo[key] = found
        return found

    def kind_of_arg(self, arg, depth=0) -> str:
        """:meth:`kind` of the memory argument ``arg`` of this function points to."""
        return self._of_root(arg, depth)
