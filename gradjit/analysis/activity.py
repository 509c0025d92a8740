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
from .calls import NRT_ALLOC, classify, math_name

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
        # stack slots likewise: active when an active value is stored or copied into
        # them or their address escapes (to a call, into memory), so a slot holding
        # only a Const array's struct (Numba's no-copy reshape / ravel) stays
        # inactive and its data pointer is not given the primal as its shadow
        self._slot_sources, self._escaped = _slot_sources(fn, defined)
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
            if not (carries(alloca_type(ins)) or alloca_type(ins).startswith(("[", "{"))):
                return False
            if ins.name in self._escaped:
                return True
            return self._any(self._slot_sources.get(ins.name, ())) or \
                self._any(self._slot_sources.get(None, ()))
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


def _users(fn) -> dict:
    """{value name: the instructions of ``fn`` using it} for instructions and
    arguments."""
    users = {}
    for ins in fn.instructions():
        for o in ins.operands:
            if o.kind == "inst" or o.kind == "arg":
                users.setdefault(o.name, []).append(ins)
    return users


def _reaches(users, start, follow, safe) -> bool:
    """Walk the uses of ``start`` (``users`` from :func:`_users`): through a user
    for which ``follow(user)`` holds, past one for which ``safe(user)`` does; True
    as soon as a user is neither."""
    seen, stack = set(), [start]
    while stack:
        v = stack.pop()
        for u in users.get(v.name, ()):
            if id(u) in seen:
                continue
            seen.add(id(u))
            if follow(u):
                stack.append(u)
            elif not safe(u):
                return True
    return False


_BIT_OPS = {"and", "or", "xor", "shl", "lshr", "ashr", "add", "sub", "mul", "trunc", "zext",
            "sext", "select", "phi", "freeze"}
_BIT_TESTS = {"icmp", "br", "switch", "ret"}


def float_bits_escape(fn, ins) -> bool:
    """Can the integer ``ins`` (a bit cast of a float to an integer) become a float
    again, or reach memory or a call?  Its integer uses are followed (``and``,
    shifts, ``select``, ``phi``, ...); only comparisons, branches and returns end a
    path safely (an int-to-float conversion of the bits is a float again).  When
    none escapes, the bits serve tests only (``np.nan_to_num``'s sign test,
    ``math.copysign`` lowered to an integer compare) and carry no derivative;
    otherwise reinterpreting them as a float again would need the derivative of a
    bit manipulation."""
    return _reaches(_users(fn), ins,
                    lambda u: u.opcode in _BIT_OPS and not T.has_float(u.type) and u.type != "ptr",
                    lambda u: u.opcode in _BIT_TESTS)


#: What the sweeps report for a :func:`mixed_data_merges` merge (an
#: ``UnsupportedError`` of kind ``"mixed_merge"``: the transforms recognise it and
#: give the Const arrays scratch shadows).
MIXED_MERGE = "an array chosen at run time between a differentiated one and a Const one"


def mixed_data_merges(fn, act) -> set:
    """Names of active pointer phis / selects that may also yield a pointer without
    a shadow (a Const array chosen at run time instead of a differentiated one) and
    whose result is used to reach data: loaded or stored through, copied, passed
    to a call or stored.  Their shadow would be the primal pointer on that path
    (derivatives read from and written into the Const array), so the sweeps report
    them.  Merges used only for reference counting are fine: the sweeps skip the
    counts of a shadow that is its primal."""
    users = _users(fn)

    def reaches_data(start):
        return _reaches(users, start, lambda u: u.opcode in _FOLLOW and u.has_value,
                        lambda u: u.opcode in _FOLLOW or u.opcode in ("icmp", "ptrtoint") or
                        (u.opcode == "call" and u.callee in _REFCOUNT_ONLY))

    out = set()
    for ins in fn.instructions():
        if ins.opcode not in ("phi", "select") or ins.type != "ptr" or not act.is_active(ins):
            continue
        ops = ins.operands[1:] if ins.opcode == "select" else [v for v, _ in ins.incoming]
        if any(_is_meminfo(o) for o in ops):
            continue        # meminfos merged (an argument's or a new copy's): not data
        if any(_const_argument_data(o, act) for o in ops) and reaches_data(ins):
            out.add(ins.name)
    return out


def _is_meminfo(o) -> bool:
    """Is ``o`` the meminfo an NRT allocation returned (not a pointer into its data)?"""
    return o.kind == "inst" and o.opcode == "call" and o.callee in NRT_ALLOC


def _const_argument_data(o, act) -> bool:
    """Is ``o`` an inactive pointer into a (Const) argument?  (Exception-info
    pointers to constant globals, also shadowless, are not data.)"""
    if o.kind not in ("arg", "inst") or act.is_active(o):
        return False
    r = root(o)
    return r is not None and r.kind == "arg"


# calls that only read the memory their pointer arguments point to, or write there
# what has no derivative (an external function: a random draw, say), or nothing: a
# stack slot passed to them does not escape
_NO_ESCAPE_KINDS = {"noop", "pure_int", "nrt_refct", "inactive_external", "math", "external"}


def _slot_sources(fn, defined):
    """({alloca name: values stored or copied into it, or the other operands of a
    call it is passed to; None: values stored through pointers of unknown root},
    names of allocas whose address escapes into memory or an integer)."""
    allocas = {ins.name for ins in fn.instructions() if ins.opcode == "alloca"}
    out, escaped = {}, set()
    if not allocas:
        return out, escaped

    def slot(p):
        """(alloca name or None, whether the root of ``p`` is known)"""
        r = root(p)
        if r is None:
            return None, False
        return (r.name if r.kind == "inst" and r.name in allocas else None), True

    for ins in fn.instructions():
        op = ins.opcode
        if op == "store":
            name, known = slot(ins.operands[1])
            if name is not None or not known:
                out.setdefault(name, []).append(ins.operands[0])
            if ins.operands[0].type == "ptr":
                name, _ = slot(ins.operands[0])
                if name is not None:
                    escaped.add(name)          # a slot's address stored into memory
        elif op == "call":
            memcpy = ins.callee.startswith(("llvm.memcpy.", "llvm.memmove."))
            if memcpy:
                name, known = slot(ins.operands[0])
                if name is not None or not known:
                    out.setdefault(name, []).append(ins.operands[1])
                continue
            kind = classify(ins.callee, ins.callee in defined)
            if kind in _NO_ESCAPE_KINDS or ins.callee.startswith("llvm.memset."):
                continue
            # a compiled callee (or BLAS, a launch) can store into the slot only what
            # derives from its other operands: the slot is active when one of them is
            ops = ins.operands[:-1]
            for k, o in enumerate(ops):
                if o.type == "ptr":
                    name, _ = slot(o)
                    if name is not None:
                        out.setdefault(name, []).extend(ops[:k] + ops[k + 1:])
        elif op in ("atomicrmw", "cmpxchg"):
            name, known = slot(ins.operands[0])
            if name is not None or not known:
                out.setdefault(name, []).extend(ins.operands[1:])
        elif op in ("ptrtoint", "insertvalue", "ret") and any(
                o.type == "ptr" and slot(o)[0] is not None for o in ins.operands):
            for o in ins.operands:
                if o.type == "ptr" and slot(o)[0] is not None:
                    escaped.add(slot(o)[0])
    return out, escaped


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


def _root_key(ptr):
    r = root(ptr)
    return id(r) if r is not None else None


def held_pointers(fn, key=_root_key) -> dict:
    """Key of a memory -> keys of the pointers stored in it, directly, copied in
    with memcpy/memmove, or held by memory those point to (closure); ``key(ptr)``
    groups pointers (by :func:`root` by default).

    A pointer loaded back from memory has that memory as its root (:func:`root`);
    the accesses through it reach whatever pointers were stored there.  Numba
    keeps an array struct in a stack slot around calls that take the address of
    its fields (``reshape``'s ``numba_attempt_nocopy_reshape``), and reads the data
    pointer back from the slot."""
    direct = {}
    for ins in fn.instructions():
        if ins.opcode == "store" and ins.operands[0].type == "ptr":
            src, dst = [key(ins.operands[0])], key(ins.operands[1])
        elif ins.opcode == "call" and ins.callee.startswith(("llvm.memcpy.", "llvm.memmove.")):
            src, dst = [("held", key(ins.operands[1]))], key(ins.operands[0])
        else:
            continue
        direct.setdefault(dst, set()).update(src)
    closed = {}
    for start in direct:
        held, expanded, todo = set(), {start}, [start]
        while todo:
            for k in direct.get(todo.pop(), ()):
                copied = isinstance(k, tuple) and k[0] == "held"
                if copied:
                    k = k[1]
                else:
                    held.add(k)
                if k not in expanded and k in direct:
                    expanded.add(k)
                    todo.append(k)
        held.discard(start)
        closed[start] = held
    return closed


def element_types(fn, key=None):
    """Map root id -> set of scalar types loaded or stored through pointers with
    that root (the type analysis used for ``memcpy`` adjoints); an access through
    a pointer loaded from memory counts for the pointers stored there too
    (:func:`held_pointers`).  ``key(ptr)`` replaces "root id" by another grouping
    of pointers (None: not counted)."""
    key = key or _root_key
    held = held_pointers(fn, key)
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
            if loaded_pointer(ptr):
                for h in held.get(k, ()):
                    if h is not None:
                        out.setdefault(h, set()).add(ty)
    return out


def loaded_pointer(ptr) -> bool:
    """Is ``ptr`` (through geps and casts) a pointer loaded from memory, so that it
    reaches the memory of a pointer stored there rather than the memory it was
    loaded from (whose own fields :func:`root` also names)?"""
    seen = 0
    while ptr.kind == "inst" and seen < 64:
        if ptr.opcode == "load":
            return True
        if ptr.opcode not in ("getelementptr", "bitcast", "addrspacecast", "freeze"):
            return ptr.opcode in ("phi", "select")      # unknown: count it for both
        ptr = ptr.operands[0]
        seen += 1
    return False


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
