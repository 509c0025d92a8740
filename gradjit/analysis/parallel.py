"""Which memory of a CUDA kernel is private to a thread.

Under the kernel-launch parallel marker the reverse sweep's ``+=`` into shadow
memory must be atomic where threads may share an address (Moses et al., SC'21,
sec. 4).  An access is provably private when its array is only ever indexed, in
the whole kernel, by the global thread id ``blockIdx * blockDim + threadIdx`` of
one axis with unit stride: then no two threads touch the same element.
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


def is_global_id(v) -> bool:
    """``v`` computes ``ctaid.A * ntid.A + tid.A`` (any operand order, any casts)."""
    v = _strip(v)
    if v.kind != "inst" or v.opcode != "add":
        return False
    for a, b in (v.operands, v.operands[::-1]):
        t = _sreg(a)
        if t is None or not t.startswith("tid."):
            continue
        axis = t[-1]
        m = _strip(b)
        if m.kind == "inst" and m.opcode == "mul":
            regs = {_sreg(o) for o in m.operands}
            if regs == {f"ctaid.{axis}", f"ntid.{axis}"}:
                return True
    return False


def private_roots(fn) -> set:
    """ids of the roots (arguments) every access to which is ``base[global id]``."""
    uses = {}
    for ins in fn.instructions():
        if ins.opcode in ("load", "store", "atomicrmw"):
            ptr = ins.operands[1] if ins.opcode == "store" else ins.operands[0]
            r = root(ptr)
            if r is None:
                continue
            ok = (ptr.kind == "inst" and ptr.opcode == "getelementptr" and len(ptr.operands) == 2
                  and ptr.operands[0] is r and is_global_id(ptr.operands[1])
                  and ins.opcode != "atomicrmw")
            uses.setdefault(id(r), []).append(ok)
    return {k for k, oks in uses.items() if all(oks)}
