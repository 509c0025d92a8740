"""Activity analysis: which SSA values carry derivatives.

A float (or float-holding aggregate) value is *active* when it depends on an
active input; a pointer is active when it may point to memory that has a shadow
(it derives from an active pointer argument, a shadowed allocation, or is loaded
from shadowed memory).  Integer and boolean code is never active.  The analysis
is a forward fixpoint over the SSA graph (monotone, so it ends after at most
loop-depth + 1 sweeps), in the spirit of Enzyme's activity analysis (Moses &
Churavy, NeurIPS 2020, section 3.2) restricted to forward dependence.
"""
from __future__ import annotations

import re

from ..ir import types as T
from .calls import classify, math_name

_PTR_DERIVED = {"getelementptr", "bitcast", "addrspacecast", "phi", "select", "freeze"}
_FLOAT_OPS = {"fadd", "fsub", "fmul", "fdiv", "frem", "fneg", "fpext", "fptrunc", "phi",
              "select", "freeze", "extractvalue", "insertvalue"}
_ALLOCA = re.compile(r"=\s*alloca\s+(?:inalloca\s+)?(.+?)(?:,\s*(?:i\d+\s+[^,]+|align\s+\d+|addrspace\(\d+\)))*\s*$")


def alloca_type(ins) -> str:
    """The allocated type text of an ``alloca`` instruction."""
    m = _ALLOCA.search(ins.text)
    return m.group(1).strip() if m else "i8"


def carries(ty: str) -> bool:
    """Can a value of this LLVM type carry a derivative or a shadow?"""
    return ty == "ptr" or T.has_float(ty)


class Activity:
    """``active`` holds the names of active values (arguments and instructions).

    ``defined`` is the set of function names defined in the module (calls to them
    are differentiated recursively).
    """

    def __init__(self, fn, active_args, defined, slots=None):
        self.fn = fn
        self.active = set(active_args)
        self.defined = defined
        # {argument name: byte offsets of its active pointer slots}: the gufunc
        # ``args`` array of a prange body, whose entries are active one by one
        self.slots = slots or {}
        # raw temporaries (``NRT_Allocate``, Numba's buffer for a slice copy whose
        # source may overlap its destination): active only when an active value or
        # active memory is copied into them, so a copy of a Const array stays
        # inactive (and a phi choosing between that array and its copy too)
        self._raw_sources = _raw_sources(fn, defined)
        changed = True
        while changed:
            changed = False
            for ins in fn.instructions():
                if ins.has_value and ins.name not in self.active and self._is_active(ins):
                    self.active.add(ins.name)
                    changed = True

    def is_active(self, v) -> bool:
        if v.kind in ("const", "global") and v.type == "ptr":
            return shared_global(v) is not None
        return v.kind in ("arg", "inst") and v.name in self.active

    def _any(self, ops):
        return any(self.is_active(o) for o in ops)

    def _is_active(self, ins) -> bool:
        op, ty = ins.opcode, ins.type
        if not carries(ty):
            return False
        if op == "alloca":
            return carries(alloca_type(ins)) or alloca_type(ins).startswith(("[", "{"))
        if op == "load":
            if self.slots:
                off = slot_offset(ins.operands[0], self.slots)
                if off is not None:
                    return off[1] in self.slots[off[0]]
            return self.is_active(ins.operands[0])
        if ty == "ptr" and op in _PTR_DERIVED:
            ops = ins.operands[1:] if op == "select" else ins.operands
            if op == "getelementptr":
                ops = ins.operands[:1]
            return self._any(ops)
        if op in _FLOAT_OPS:
            ops = ins.operands[1:] if op == "select" else ins.operands
            return self._any(ops)
        if op == "call":
            kind = classify(ins.callee, ins.callee in self.defined)
            if kind == "nrt_alloc":
                return True
            if kind == "raw_alloc":
                return self._any(self._raw_sources.get(ins.name, ()))
            if kind in ("math", "defined"):
                return self._any(ins.operands[:-1])
        return False


_REFCOUNT_ONLY = {"NRT_incref", "NRT_decref", "NRT_MemInfo_call_dtor", "NRT_Free"}
_FOLLOW = {"getelementptr", "bitcast", "addrspacecast", "freeze", "phi", "select"}


def mixed_data_merges(fn, act) -> set:
    """Names of active pointer phis / selects that may also yield a pointer without
    a shadow (a Const array chosen at run time instead of a differentiated one) and
    whose result is used to reach data: loaded or stored through, copied, passed
    to a call or stored.  Their shadow would be the primal pointer on that path
    (derivatives read from and written into the Const array), so the sweeps report
    them.  Merges used only for reference counting are fine: the sweeps skip the
    counts of a shadow that is its primal."""
    users = {}
    for ins in fn.instructions():
        for o in ins.operands:
            if o.kind == "inst" or o.kind == "arg":
                users.setdefault(o.name, []).append(ins)

    def reaches_data(start):
        seen, stack = set(), [start]
        while stack:
            v = stack.pop()
            for u in users.get(v.name, ()):
                if id(u) in seen:
                    continue
                seen.add(id(u))
                op = u.opcode
                if op in _FOLLOW:
                    if u.has_value:
                        stack.append(u)
                elif op == "load":
                    return True
                elif op == "store":
                    return True
                elif op == "call":
                    if u.callee not in _REFCOUNT_ONLY:
                        return True
                elif op in ("icmp", "ptrtoint"):
                    continue
                else:
                    return True
        return False

    out = set()
    for ins in fn.instructions():
        if ins.opcode not in ("phi", "select") or ins.type != "ptr" or not act.is_active(ins):
            continue
        ops = ins.operands[1:] if ins.opcode == "select" else [v for v, _ in ins.incoming]
        if any(_const_argument_data(o, act) for o in ops) and reaches_data(ins):
            out.add(ins.name)
    return out


def _const_argument_data(o, act) -> bool:
    """Is ``o`` an inactive pointer into a (Const) argument?  (Exception-info
    pointers to constant globals, also shadowless, are not data.)"""
    if o.kind not in ("arg", "inst") or act.is_active(o):
        return False
    r = root(o)
    return r is not None and r.kind == "arg"


def _raw_sources(fn, defined):
    """{raw allocation name: values written into it}: the sources of ``memcpy`` /
    ``memmove`` calls and the values of stores whose destination derives from it."""
    raws = {ins.name for ins in fn.instructions()
            if ins.opcode == "call" and classify(ins.callee, ins.callee in defined) == "raw_alloc"}
    out = {}
    if not raws:
        return out
    for ins in fn.instructions():
        if ins.opcode == "store":
            dst, val = ins.operands[1], ins.operands[0]
        elif ins.opcode == "call" and ins.callee.startswith(("llvm.memcpy.", "llvm.memmove.")):
            dst, val = ins.operands[0], ins.operands[1]
        else:
            continue
        r = root(dst)
        if r is not None and r.kind == "inst" and r.name in raws:
            out.setdefault(r.name, []).append(val)
    return out


_GEP_CONST = re.compile(r"getelementptr (?:inbounds |nuw |nusw )*(i8|ptr|i64), ptr %[-\w.$\"]+, i64 (-?\d+)$")


def slot_offset(p, slots):
    """(base name, byte offset) when pointer ``p`` is an argument or alloca named
    in ``slots`` or a constant ``getelementptr`` of one; else None."""
    if p.kind == "arg" or (p.kind == "inst" and p.opcode == "alloca"):
        return (p.name, 0) if p.name in slots else None
    if p.kind == "inst" and p.opcode == "getelementptr" and len(p.operands) == 2:
        base = p.operands[0]
        if base.kind in ("arg", "inst") and base.name in slots:
            m = _GEP_CONST.search(p.text)
            if m:
                scale = 1 if m.group(1) == "i8" else 8
                return base.name, int(m.group(2)) * scale
    return None


def root(v, seen=None):
    """The allocation or argument a pointer value derives from (through geps,
    casts, phis and selects), or None when there are several or none."""
    seen = seen if seen is not None else set()
    while True:
        if v.kind == "arg":
            return v
        if v.kind != "inst" or id(v) in seen:
            return None
        seen.add(id(v))
        if v.opcode in ("getelementptr", "bitcast", "addrspacecast", "freeze"):
            v = v.operands[0]
            continue
        if v.opcode in ("phi", "select"):
            ops = v.operands[1:] if v.opcode == "select" else v.operands
            roots = {id(r): r for r in (root(o, seen) for o in ops if o.kind != "const") if r}
            return next(iter(roots.values())) if len(roots) == 1 else None
        if v.opcode == "load" and v.type == "ptr":
            base = root(v.operands[0], seen)
            return v if base is None else base      # a meminfo's data pointer: its meminfo
        return v


def element_types(fn, key=None):
    """Map root id -> set of scalar types loaded or stored through pointers with
    that root (the type analysis used for ``memcpy`` adjoints).  ``key(ptr)``
    replaces "root id" by another grouping of pointers (None: not counted)."""
    if key is None:
        def key(ptr):
            r = root(ptr)
            return id(r) if r is not None else None
    out = {}
    for ins in fn.instructions():
        if ins.opcode == "load":
            ptr, ty = ins.operands[0], ins.type
        elif ins.opcode == "store":
            ptr, ty = ins.operands[1], ins.operands[0].type
        else:
            continue
        k = key(ptr)
        if k is not None:
            out.setdefault(k, set()).add(ty)
    return out


_SHARED = re.compile(r"ptr addrspace\(3\) @(\"[^\"]+\"|[-\w.$]+)")


def shared_global(v):
    """The name of the CUDA shared-memory global (address space 3) a constant
    pointer expression refers to, or None.  Shared arrays get shadow arrays."""
    if v.kind == "global":
        return None
    m = _SHARED.search(v.text or "")
    return m.group(1) if m else None


def shadow_const(text: str) -> str:
    """The shadow of a constant pointer expression into shared memory."""
    return _SHARED.sub(lambda m: "ptr addrspace(3) @" + _shadow_global(m.group(1)), text)


def _shadow_global(name: str) -> str:
    if name.startswith('"'):
        return name[:-1] + '.s"'
    return '"' + name + '.s"' if not re.match(r"^[-\w.$]+$", name + ".s") else name + ".s"
