"""Which memory of a CUDA kernel is private to a thread.

Under the kernel-launch parallel marker the reverse sweep's ``+=`` into shadow
memory must be atomic where threads may share an address (Moses et al., SC'21,
sec. 4).  An access is provably private when its array is only ever indexed, in
the whole kernel, by the global thread id ``blockIdx * blockDim + threadIdx`` of
one axis with unit stride, and the kernel reads no thread or block index of another
axis (a 2-D launch has many threads with the same x id): then no two threads touch
the same element.
"""
from __future__ import annotations

from .activity import root

_SREG = "llvm.nvvm.read.ptx.sreg."


def _strip(v):
    while v.kind == "inst" and v.opcode in ("zext", "sext", "trunc", "freeze"):
        v = v.operands[0]
    return v


def _sreg(v):
    v = _strip(v)
    if v.kind == "inst" and v.opcode == "call" and v.callee.startswith(_SREG):
        return v.callee[len(_SREG):]          # e.g. "tid.x"
    return None


def is_global_id(v):
    """The axis ``A`` when ``v`` computes ``ctaid.A * ntid.A + tid.A`` (any operand
    order, any casts), else None."""
    v = _strip(v)
    if v.kind != "inst" or v.opcode != "add":
        return None
    for a, b in (v.operands, v.operands[::-1]):
        t = _sreg(a)
        if t is None or not t.startswith("tid."):
            continue
        axis = t[-1]
        m = _strip(b)
        if m.kind == "inst" and m.opcode == "mul":
            regs = {_sreg(o) for o in m.operands}
            if regs == {f"ctaid.{axis}", f"ntid.{axis}"}:
                return axis
    return None


def _axes_read(fn) -> set:
    """Axes (x, y, z) of the thread / block indices the kernel reads."""
    return {ins.callee[-1] for ins in fn.instructions()
            if ins.opcode == "call" and ins.callee.startswith(_SREG)
            and ins.callee[len(_SREG):].split(".")[0] in ("tid", "ctaid")}


def private_roots(fn) -> set:
    """ids of the roots (arguments) every access to which is ``base[global id]``,
    the global id of the only axis whose indices the kernel reads."""
    uses = {}
    axes = _axes_read(fn)
    for ins in fn.instructions():
        if ins.opcode in ("load", "store", "atomicrmw"):
            ptr = ins.operands[1] if ins.opcode == "store" else ins.operands[0]
            r = root(ptr)
            if r is None:
                continue
            ok = (ptr.kind == "inst" and ptr.opcode == "getelementptr" and len(ptr.operands) == 2
                  and ptr.operands[0] is r and ins.opcode != "atomicrmw"
                  and axes <= {is_global_id(ptr.operands[1])})
            uses.setdefault(id(r), []).append(ok)
    return {k for k, oks in uses.items() if all(oks)}


# prange bodies ------------------------------------------------------------------
# A parfor gufunc reads its arrays from the entries of its ``args`` array; its
# loop runs an induction variable over the work item's ``[start, end]`` range
# read from the schedule (entry 0).  Work items have disjoint ranges, so an
# array every access of which is ``base[iv]``, with one ``base``, is written by
# one iteration per element: its shadow needs no atomic add.

def slot_of(ptr, args_name, _seen=None):
    """Byte offset of the ``args`` entry the pointer ``ptr`` derives from (through
    geps, casts, phis and selects that agree), or None."""
    from .activity import slot_offset
    seen = _seen if _seen is not None else set()
    v, steps = ptr, 0
    while v.kind == "inst" and v.opcode in ("getelementptr", "bitcast", "addrspacecast",
                                            "freeze") and steps < 64:
        v, steps = v.operands[0], steps + 1
    if v.kind != "inst" or id(v) in seen:
        return None
    if v.opcode == "load" and v.type == "ptr":
        off = slot_offset(v.operands[0], {args_name: None})
        return off[1] if off else None
    if v.opcode in ("phi", "select"):
        seen.add(id(v))
        ops = v.operands[1:] if v.opcode == "select" else v.operands
        offs = {slot_of(o, args_name, seen) for o in ops if o.kind != "const"}
        return offs.pop() if len(offs) == 1 else None
    return None


def prange_ivs(fn, args_name) -> set:
    """Names of the induction variables that run over a work item's range: phis
    ``[start, pre], [iv + 1, latch]`` whose start is read from the schedule."""
    out = set()
    for ins in fn.instructions():
        if ins.opcode != "phi" or len(ins.incoming) != 2:
            continue
        vals = [v for v, _ in ins.incoming]
        for start, step in (vals, vals[::-1]):
            if not (step.kind == "inst" and step.opcode == "add" and
                    any(o is ins for o in step.operands) and
                    any(o.kind == "const" and o.text == "1" for o in step.operands)):
                continue
            if start.kind == "inst" and start.opcode == "load" and \
                    slot_of(start.operands[0], args_name) == 0:
                out.add(ins.name)
    return out


def prange_private_slots(fn) -> set:
    """Byte offsets of the ``args`` entries of a prange gufunc ``fn`` whose every
    access is ``base[iv]`` with one ``base`` and ``iv`` a work-item induction
    variable."""
    args_name = fn.args[0].name
    ivs = prange_ivs(fn, args_name)
    seen = {}
    for ins in fn.instructions():
        if ins.opcode not in ("load", "store", "atomicrmw"):
            continue
        ptr = ins.operands[1] if ins.opcode == "store" else ins.operands[0]
        off = slot_of(ptr, args_name)
        if off is None:
            continue
        base = is_iv_indexed(ptr, ivs) if ins.opcode != "atomicrmw" else None
        seen.setdefault(off, []).append(id(base) if base is not None else None)
    return {off for off, bases in seen.items() if None not in bases and len(set(bases)) == 1}


def is_iv_indexed(ptr, ivs):
    """The base of ``ptr`` when it is ``getelementptr T, base, iv`` with ``iv`` in ``ivs``."""
    if ptr.kind == "inst" and ptr.opcode == "getelementptr" and len(ptr.operands) == 2:
        idx = _strip(ptr.operands[1])
        if idx.kind == "inst" and idx.name in ivs:
            return ptr.operands[0]
    return None


def iv_dependent_slots(body) -> set:
    """Entries of a prange body some access of which has an address depending on a
    work-item induction variable."""
    base = body.args[0].name
    ivs = prange_ivs(body, base)

    def depends(v, depth=0, seen=None):
        seen = seen if seen is not None else set()
        if v.kind != "inst" or id(v) in seen or depth > 24:
            return False
        if v.name in ivs:
            return True
        seen.add(id(v))
        if v.opcode == "load":
            return False
        return any(depends(o, depth + 1, seen) for o in v.operands if o.kind == "inst")

    out = set()
    for b in body.instructions():
        if b.opcode in ("load", "store", "atomicrmw"):
            ptr = b.operands[1] if b.opcode == "store" else b.operands[0]
            off = slot_of(ptr, base)
            if off is not None and off not in out and depends(ptr):
                out.add(off)
    return out


def slot_element_types(body) -> dict:
    """Byte offset of an ``args`` entry of a prange body -> scalar types loaded or
    stored through it."""
    from .activity import element_types
    base = body.args[0].name
    return element_types(body, key=lambda ptr: slot_of(ptr, base))
